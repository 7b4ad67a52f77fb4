/**
 * A near miss of a route's field is a 400 (issue 9, item 11), end to end:
 * `logs/list {"job_id": ...}` listed every job's lines; it now names `jobId`
 * and lists nothing. Other unknown fields stay ignored (API.md), and every
 * field the libretto CLI sends is one the route knows, so no CLI request is
 * refused. The shared suite (bad-input.test.ts) checks every route.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { uploadBase64 } from "../deployments/upload";
import { addTenant, snapshotDb, startTestServer, uniqueName, type TestServer } from "../helpers";
import { envelop, expectError, expectOk } from "./wire";

const noop = workflow("near-miss-noop", () => null);

let server: TestServer;
beforeAll(async () => {
  // Paused: jobs stay queued; their log lines are the notes written at creation.
  server = await startTestServer({ workflows: [noop], runnerPaused: true });
});
afterAll(async () => server.close());

describe("logs/list with job_id instead of jobId", () => {
  test("is a 400 naming jobId, in both body forms, and lists nothing; jobId lists that job's lines only", async () => {
    const { key } = await addTenant(server, uniqueName("logs"));
    // Each hosted-only option is noted in the job's log at creation.
    const a = expectOk(await server.post("/v1/jobs/create", { workflow: noop.name, gpu: true }, { key }), false).job_id;
    const b = expectOk(await server.post("/v1/jobs/create", { workflow: noop.name, gpu: true, disable_default_proxy: true }, { key }), false).job_id;
    expect(expectOk(await server.post("/v1/logs/list", {}, { key }), false).logs).toHaveLength(3);

    for (const [field, body] of [
      ["job_id", { job_id: a }],
      ["job_id", envelop({ job_id: a })],
      ["JobId", { JobId: a }],
      ["job-id", { "job-id": a, level: "info" }],
    ] as const) {
      const enveloped = "json" in body;
      const response = await server.post("/v1/logs/list", body, { key });
      const error = expectError(response, 400, "BAD_REQUEST", enveloped);
      expect(error.message).toBe(`Unknown field "${field}"; did you mean "jobId"?`);
      expect(error.data.issues).toEqual([{ path: [field], message: 'is not a field of this route; did you mean "jobId"?' }]);
      expect(response.text).not.toContain("Hosted");
    }

    const lines = expectOk(await server.post("/v1/logs/list", envelop({ jobId: a }), { key }), true).logs;
    expect(lines.map((l: { jobId: string }) => l.jobId)).toEqual([a]);
    expect(expectOk(await server.post("/v1/logs/list", { jobId: b }, { key }), false).logs).toHaveLength(2);
  });

  test("a near miss in a write changes nothing (jobs/create with Workflow_Name... is refused before it runs)", async () => {
    const { key } = await addTenant(server, uniqueName("writes"));
    const before = await snapshotDb(server.db);
    const error = expectError(
      await server.post("/v1/jobs/create", { workflow: noop.name, timeoutSeconds: 5, skipCallbacks: true }, { key }),
      400,
      "BAD_REQUEST",
      false,
    );
    expect(error.message).toBe('Unknown field "timeoutSeconds"; did you mean "timeout_seconds"? Unknown field "skipCallbacks"; did you mean "skip_callbacks"?');
    expect(error.data.issues.map((i: { path: string[] }) => i.path)).toEqual([["timeoutSeconds"], ["skipCallbacks"]]);
    expect(await snapshotDb(server.db)).toEqual(before);
  });

  test("other unknown fields stay ignored and are never stored", async () => {
    const { key } = await addTenant(server, uniqueName("ignored"));
    const created = expectOk(
      await server.post("/v1/jobs/create", envelop({ workflow: noop.name, future_option: "from-a-newer-cli-7f3a", jobId: "x" }), { key }),
      true,
    );
    const row = await server.db.selectFrom("jobs").selectAll().where("id", "=", created.job_id).executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain("from-a-newer-cli-7f3a");
    expect(expectOk(await server.post("/v1/logs/list", { jobId: created.job_id, workflowId: "ignored" }, { key }), false).logs).toEqual([]);
  });
});

/**
 * What the libretto CLI sends (saffron-health/libretto at 41ab782c:
 * packages/libretto/src/cli/commands/cloud-jobs.ts, cloud-schedules.ts,
 * deploy.ts, cloud-credentials.ts, cloud-job-status.ts, cloud-settings.ts;
 * orpcCall wraps every input as {"json": input}), each with every option
 * the command can set. None may be refused for its field names.
 */
describe("every field the libretto CLI sends", () => {
  test("is accepted on every route the CLI calls", async () => {
    const { key } = await addTenant(server, uniqueName("cli"));
    const call = async (path: string, input: Record<string, unknown>) => expectOk(await server.post(path, envelop(input), { key }), true);
    const callback = { callback_url: "https://hooks.example.com/cli", callback_secret: "cli-callback-secret-32-bytes...." };
    const browser = { timeout_seconds: 60, start_url: "https://portal.example.com/", gpu: true, viewport: { width: 1280, height: 800 } };

    // cloud-jobs.ts: --residential-proxy and --disable-default-proxy are exclusive.
    const job = await call("/v1/jobs/create", {
      workflow: noop.name,
      params: { a: 1 },
      credential_id: "cred-1",
      headless: false,
      ...browser,
      ...callback,
      skip_callbacks: true,
      residential_proxy: { country: "us" },
    });
    await call("/v1/jobs/create", { workflow: noop.name, params: {}, headless: true, disable_default_proxy: true });
    await call("/v1/jobs/get", { id: job.job_id });

    // cloud-schedules.ts
    const schedule = { workflow: noop.name, cron_expr: "0 0 29 2 *", timezone: "UTC", params: {}, enabled: false, ...browser, ...callback, skip_callbacks: true };
    await call("/v1/schedules/create", { ...schedule, residential_proxy: { country: "us" } });
    await call("/v1/schedules/create", { ...schedule, disable_default_proxy: true });

    // cloud-credentials.ts, cloud-settings.ts
    await call("/v1/credentials/upsert", { name: "openai_api_key", value: "sk-cli" });
    await call("/v1/tenant/settings", {});
    await call("/v1/tenant/settings", { disable_job_failure_notifications: true });

    // deploy.ts: create, then poll sync with {id}.
    const source = await uploadBase64({ workflows: [{ name: uniqueName("cli_deployed"), body: "return null;" }] });
    const deployment = await call("/v1/deployments/create", { source, entry_point: "index.js", description: "from the CLI", auto_repair: true });
    await call("/v1/deployments/sync", { id: deployment.deployment_id });
    await server.deps.deployments.idle();
  });
});
