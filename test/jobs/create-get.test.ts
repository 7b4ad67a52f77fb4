/**
 * /v1/jobs/create and /v1/jobs/get as a client sees them: the exact output
 * fields of API.md, both body forms, the statuses create can reach, the
 * hosted-only options noted in the job's log, and a job read back as stored.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";
import { envelop, expectError, expectOk, expectValidationError, ISO_UTC, UUID } from "../http/wire";
import { createJob, FAST_ENV, getJob, jobLogs, rawJobRow, waitForEnd } from "./support";

const echo = workflow("echo", { credentials: ["password"], handler: (_ctx, input) => ({ got: input }) });
const plain = workflow("plain-echo", (_ctx, input) => input);
// Two definitions of one name: the registry refuses to run either, as it does for a file that failed to load.
const broken = [workflow("twice", () => 1), workflow("twice", () => 2)];

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows: [echo, plain, ...broken], env: FAST_ENV });
});
afterAll(async () => server.close());

const JOB_FIELDS = [
  "completed_at",
  "created_at",
  "deployment_id",
  "deployment_version",
  "error",
  "failure_class",
  "hosted_workflow_id",
  "job_id",
  "mapped_stack",
  "nonce",
  "params",
  "result",
  "schedule_id",
  "started_at",
  "status",
  "timeout_seconds",
  "workflow",
  "workflow_id",
];

describe("/v1/jobs/create", () => {
  test("answers success, job_id, status queued and message (plain body)", async () => {
    const output = expectOk(await server.post("/v1/jobs/create", { workflow: "echo", params: { a: 1 } }), false);
    expect(Object.keys(output).sort()).toEqual(["job_id", "message", "status", "success"]);
    expect(output.success).toBe(true);
    expect(output.job_id).toMatch(UUID);
    expect(output.status).toBe("queued");
    expect(output.message).toContain("echo");
  });

  test("answers in the envelope for an enveloped body, and the job runs with those params", async () => {
    const output = expectOk(await server.post("/v1/jobs/create", envelop({ workflow: "plain-echo", params: { from: "cli" } }, {})), true);
    expect(Object.keys(output).sort()).toEqual(["job_id", "message", "status", "success"]);
    expect(output.status).toBe("queued");
    const job = await waitForEnd(server, output.job_id);
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ from: "cli" });
  });

  test("params default to {} (absent or null)", async () => {
    for (const input of [{ workflow: "plain-echo" }, { workflow: "plain-echo", params: null }]) {
      const job = await waitForEnd(server, await createJob(server, input));
      expect(job.params).toEqual({});
      expect(job.result).toEqual({});
    }
  });

  test("an unknown workflow is 404 naming it, in both forms, and queues nothing", async () => {
    const before = await server.db.selectFrom("jobs").select("id").execute();
    const error = expectError(await server.post("/v1/jobs/create", { workflow: "no-such-flow" }), 404, "NOT_FOUND", false);
    expect(error.message).toContain('"no-such-flow"');
    expect(error.message).toContain("/v1/workflows/list");
    expectError(await server.post("/v1/jobs/create", envelop({ workflow: "no-such-flow" })), 404, "NOT_FOUND", true);
    expect(await server.db.selectFrom("jobs").select("id").execute()).toEqual(before);
  });

  test("a workflow that failed to load is 409 with the reason, and queues nothing", async () => {
    const before = await server.db.selectFrom("jobs").select("id").execute();
    const error = expectError(await server.post("/v1/jobs/create", { workflow: "twice" }), 409, "CONFLICT", false);
    expect(error.message).toContain("failed to load");
    expect(error.message).toContain("defined more than once");
    expect(error.data.workflow).toBe("twice");
    expect(await server.db.selectFrom("jobs").select("id").execute()).toEqual(before);
  });

  test("params must be an object", async () => {
    for (const params of [[1, 2], "text", 5, true]) {
      const issues = expectValidationError(await server.post("/v1/jobs/create", { workflow: "echo", params }), false);
      expect(issues.map((i) => i.path[0])).toContain("params");
    }
  });

  test("timeout_seconds must be a whole number in 1..2147483; the bounds themselves are accepted and stored", async () => {
    for (const timeout_seconds of [0, -1, 2147484, 1.5, 1e12]) {
      const issues = expectValidationError(await server.post("/v1/jobs/create", { workflow: "echo", timeout_seconds }), false);
      expect(issues.map((i) => i.path[0])).toContain("timeout_seconds");
    }
    for (const timeout_seconds of [1, 3600, 2147483]) {
      const id = await createJob(server, { workflow: "plain-echo", timeout_seconds });
      expect((await getJob(server, id)).timeout_seconds).toBe(timeout_seconds);
    }
    const id = await createJob(server, { workflow: "plain-echo" });
    expect((await getJob(server, id)).timeout_seconds).toBe(1800);
  });

  test("callback_url and callback_secret go together", async () => {
    const onlyUrl = expectValidationError(
      await server.post("/v1/jobs/create", { workflow: "echo", callback_url: "https://example.com/hook" }),
      false,
    );
    expect(onlyUrl.some((i) => i.path[0] === "callback_secret" && i.message.includes("callback_url"))).toBe(true);
    expectValidationError(await server.post("/v1/jobs/create", { workflow: "echo", callback_secret: "s3cret-hook-of-the-job" }), false);
    const both = await createJob(server, { workflow: "plain-echo", callback_url: "https://example.com/hook", callback_secret: "s3cret-hook-of-the-job" });
    expect((await getJob(server, both)).job_id).toBe(both);
    // The secret is sealed, never stored in clear.
    expect(await rawJobRow(server, both)).not.toContain("s3cret-hook-of-the-job");
  });

  test("start_url must be an http(s) URL", async () => {
    for (const start_url of ["not a url", "ftp://example.com/", "javascript:alert(1)", "file:///etc/passwd", ""]) {
      const issues = expectValidationError(await server.post("/v1/jobs/create", { workflow: "echo", start_url }), false);
      expect(issues.map((i) => i.path[0])).toContain("start_url");
    }
    await createJob(server, { workflow: "plain-echo", start_url: "https://example.com/login" });
  });

  const HOSTED_ONLY: [string, unknown, string][] = [
    ["gpu", true, "GPU"],
    ["residential_proxy", true, "Residential proxies"],
    ["disable_default_proxy", true, "disable_default_proxy"],
    ["credential_id", "cred_hosted_123", "credential_id"],
  ];

  for (const [field, value, note] of HOSTED_ONLY) {
    test(`hosted-only ${field} is accepted, stored and noted in the job's log`, async () => {
      const id = await createJob(server, { workflow: "plain-echo", params: { p: 1 }, [field]: value });
      const job = await waitForEnd(server, id);
      expect(job.status).toBe("completed");
      const lines = await jobLogs(server, id);
      const notes = lines.filter((l) => l.level === "info" && l.message.includes(note));
      expect(notes.length).toBe(1);
      // Only this field's note: the other hosted-only fields were not given.
      for (const [other, , otherNote] of HOSTED_ONLY) {
        if (other !== field) expect(lines.some((l) => l.message.includes(otherNote))).toBe(false);
      }
      const options = JSON.parse((await server.db.selectFrom("jobs").select("options").where("id", "=", id).executeTakeFirstOrThrow()).options);
      expect(options[field]).toEqual(value);
    });
  }

  test("all hosted-only fields at once: four notes, one each", async () => {
    const id = await createJob(server, {
      workflow: "plain-echo",
      gpu: true,
      residential_proxy: { country: "de" },
      disable_default_proxy: true,
      credential_id: "abc",
    });
    const lines = await jobLogs(server, id);
    for (const [, , note] of HOSTED_ONLY) expect(lines.filter((l) => l.message.includes(note)).length).toBe(1);
  });

  test("false hosted-only flags are not noted", async () => {
    const id = await createJob(server, { workflow: "plain-echo", gpu: false, disable_default_proxy: false });
    await waitForEnd(server, id);
    expect(await jobLogs(server, id)).toEqual([]);
  });

  test("unknown extra fields are ignored and never stored", async () => {
    const id = await createJob(server, { workflow: "plain-echo", params: { p: 1 }, some_future_field: "future-marker-7731" });
    await waitForEnd(server, id);
    expect(await rawJobRow(server, id)).not.toContain("future-marker-7731");
  });

  test("creates sent at once each get their own answer: bad ones their 4xx, the rest are queued and run (creates share a transaction)", async () => {
    const bodies = Array.from({ length: 24 }, (_, i) =>
      i % 6 === 2
        ? { workflow: "no-such-workflow" }
        : i % 6 === 4
          ? { workflow: "echo", params: { credentials: "not a map" } }
          : i % 6 === 5
            ? { workflow: "twice" }
            : { workflow: "plain-echo", params: { n: i } },
    );
    const responses = await Promise.all(bodies.map((body) => server.post("/v1/jobs/create", body)));
    for (const [i, response] of responses.entries()) {
      if (i % 6 === 2) expectError(response, 404, "NOT_FOUND", false);
      else if (i % 6 === 4) expectError(response, 400, "BAD_REQUEST", false);
      else if (i % 6 === 5) expectError(response, 409, "CONFLICT", false);
      else {
        const job = await waitForEnd(server, expectOk(response, false).job_id);
        expect(job.status).toBe("completed");
        expect(job.result).toEqual({ n: i });
      }
    }
  });
});

describe("/v1/jobs/get", () => {
  test("has exactly the fields of API.md, before and after the run", async () => {
    const id = await createJob(server, {
      workflow: "echo",
      params: { a: 1, nested: { b: [1, 2] }, credentials: { password: "caller-given-pw-123" } },
      nonce: "nonce-42",
      timeout_seconds: 60,
    });
    const job = await waitForEnd(server, id);
    expect(Object.keys(job).sort()).toEqual(JOB_FIELDS);
    expect(job.job_id).toBe(id);
    expect(job.workflow).toBe("echo");
    expect(job.workflow_id).toMatch(UUID);
    expect(job.deployment_id).toMatch(UUID);
    expect(typeof job.deployment_version).toBe("string");
    expect(job.status).toBe("completed");
    expect(job.created_at).toMatch(ISO_UTC);
    expect(job.started_at).toMatch(ISO_UTC);
    expect(job.completed_at).toMatch(ISO_UTC);
    expect(job.started_at >= job.created_at).toBe(true);
    expect(job.completed_at >= job.started_at).toBe(true);
    expect(job.error).toBeNull();
    expect(job.mapped_stack).toBeNull();
    expect(job.failure_class).toBeNull();
    expect(job.hosted_workflow_id).toBeNull();
    expect(job.timeout_seconds).toBe(60);
    expect(job.nonce).toBe("nonce-42");
    expect(job.schedule_id).toBeNull();
    // params are shown as given, without the credentials.
    expect(job.params).toEqual({ a: 1, nested: { b: [1, 2] } });
    // The handler's return value; the caller's credential it echoed is redacted.
    expect(job.result).toEqual({ got: { a: 1, nested: { b: [1, 2] }, credentials: { password: "[REDACTED:password]" } } });

    // The same workflow gives the same ids; the enveloped form mirrors.
    const again = expectOk(await server.post("/v1/jobs/get", envelop({ id })), true);
    expect(again).toEqual(job);
    const other = await getJob(server, await createJob(server, { workflow: "echo" }));
    expect(other.workflow_id).toBe(job.workflow_id);
    expect(other.deployment_id).toBe(job.deployment_id);
  });

  test("a queued job has no start, end, result or error yet (result is absent until the job completes)", async () => {
    const paused = await startTestServer({ workflows: [echo], runnerPaused: true, env: FAST_ENV });
    try {
      const job = await getJob(paused, await createJob(paused, { workflow: "echo", params: { q: true } }));
      expect(Object.keys(job).sort()).toEqual(JOB_FIELDS.filter((field) => field !== "result"));
      expect(job.status).toBe("queued");
      expect(job.started_at).toBeNull();
      expect(job.completed_at).toBeNull();
      expect(job.error).toBeNull();
      expect(job.failure_class).toBeNull();
      expect(job.nonce).toBeNull();
      expect(job.timeout_seconds).toBe(1800);
    } finally {
      await paused.close();
    }
  });

  test("an id nobody has is 404; beta asking for alpha's job is 404", async () => {
    const missing = expectError(await server.post("/v1/jobs/get", { id: crypto.randomUUID() }), 404, "NOT_FOUND", false);
    expect(missing.message).toContain("/v1/jobs/list");
    const id = await createJob(server, { workflow: "plain-echo" });
    expectError(await server.post("/v1/jobs/get", { id }, { key: server.keys.beta }), 404, "NOT_FOUND", false);
  });
});
