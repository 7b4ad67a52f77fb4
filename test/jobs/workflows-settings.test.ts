/**
 * /v1/workflows/list, /v1/workflows/get and /v1/tenant/settings as API.md
 * states them. Workflows are global: every tenant sees the same ones.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { workflow } from "../../src/workflows/define";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { envelop, expectError, expectOk, ISO_UTC, UUID } from "../http/wire";
import { FAST_ENV } from "./support";

const login = workflow("portal-login", {
  credentials: ["Username", " password ", "username"],
  input: z.object({ site: z.url(), retries: z.number().int().optional() }),
  output: z.object({ title: z.string() }),
  handler: () => ({ title: "ok" }),
});
const bare = workflow("bare", () => null);
const duplicate = [workflow("dup", () => 1), workflow("dup", () => 2)];

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows: [login, bare, ...duplicate], env: FAST_ENV });
});
afterAll(async () => server.close());

const SUMMARY_FIELDS = ["created_at", "deployment_id", "deployment_status", "error", "name", "source", "updated_at"];

describe("/v1/workflows/list", () => {
  test("every loaded workflow, ready, with the fields of API.md; in_progress_builds is empty", async () => {
    const output = expectOk(await server.post("/v1/workflows/list", {}), false);
    expect(Object.keys(output).sort()).toEqual(["deployed_workflows", "in_progress_builds"]);
    expect(output.in_progress_builds).toEqual([]);
    expect(output.deployed_workflows.map((w: { name: string }) => w.name)).toEqual(["bare", "dup", "portal-login"]);
    for (const w of output.deployed_workflows) {
      expect(Object.keys(w).sort()).toEqual(SUMMARY_FIELDS);
      expect(w.deployment_id).toMatch(UUID);
      expect(w.created_at).toMatch(ISO_UTC);
      expect(w.updated_at).toMatch(ISO_UTC);
    }
    const byName = Object.fromEntries(output.deployed_workflows.map((w: { name: string }) => [w.name, w]));
    expect(byName["portal-login"].deployment_status).toBe("ready");
    expect(byName["portal-login"].error).toBeNull();
    expect(byName.bare.deployment_status).toBe("ready");
    // A workflow that cannot run is listed as failed, with the reason.
    expect(byName.dup.deployment_status).toBe("failed");
    expect(byName.dup.error).toContain("defined more than once");
    expect(expectOk(await server.post("/v1/workflows/list", envelop({})), true)).toEqual(output);
  });

  test("the same for every tenant", async () => {
    const fresh = await addTenant(server, uniqueName("tenant"));
    const alpha = expectOk(await server.post("/v1/workflows/list", {}), false);
    expect(expectOk(await server.post("/v1/workflows/list", {}, { key: server.keys.beta }), false)).toEqual(alpha);
    expect(expectOk(await server.post("/v1/workflows/list", {}, { key: fresh.key }), false)).toEqual(alpha);
  });
});

describe("/v1/workflows/get", () => {
  test("the summary plus credential_names (normalised, deduplicated) and the JSON Schemas", async () => {
    const output = expectOk(await server.post("/v1/workflows/get", { workflow: "portal-login" }), false);
    expect(Object.keys(output).sort()).toEqual([...SUMMARY_FIELDS, "credential_names", "input_schema", "output_schema"].sort());
    const listed = expectOk(await server.post("/v1/workflows/list", {}), false).deployed_workflows.find(
      (w: { name: string }) => w.name === "portal-login",
    );
    for (const field of SUMMARY_FIELDS) expect(output[field]).toEqual(listed[field]);
    expect(output.deployment_status).toBe("ready");
    expect(output.credential_names).toEqual(["username", "password"]);
    expect(output.input_schema.type).toBe("object");
    expect(output.input_schema.properties.site.type).toBe("string");
    expect(output.input_schema.properties.site.format).toBe("uri");
    expect(output.input_schema.properties.retries.type).toBe("integer");
    expect(output.input_schema.required).toEqual(["site"]);
    expect(output.output_schema.type).toBe("object");
    expect(output.output_schema.properties.title.type).toBe("string");
    expect(expectOk(await server.post("/v1/workflows/get", envelop({ workflow: " portal-login " })), true)).toEqual(output);
  });

  test("schemas are null when absent; no declarations give []", async () => {
    const output = expectOk(await server.post("/v1/workflows/get", { workflow: "bare" }, { key: server.keys.beta }), false);
    expect(output.credential_names).toEqual([]);
    expect(output.input_schema).toBeNull();
    expect(output.output_schema).toBeNull();
    expect(output.deployment_status).toBe("ready");
  });

  test("a workflow that failed to load is shown as failed, with its error", async () => {
    const output = expectOk(await server.post("/v1/workflows/get", { workflow: "dup" }), false);
    expect(output.deployment_status).toBe("failed");
    expect(output.error).toContain("defined more than once");
    expect(output.credential_names).toEqual([]);
  });

  test("an unknown workflow is 404", async () => {
    const error = expectError(await server.post("/v1/workflows/get", { workflow: "nope" }), 404, "NOT_FOUND", false);
    expect(error.message).toContain('"nope"');
  });
});

describe("/v1/tenant/settings", () => {
  const DEFAULTS = { code_sharing_enabled: false, disable_job_failure_notifications: false, debug_notification_email: null };

  test("{} reads the defaults, in both forms", async () => {
    const t = await addTenant(server, uniqueName("tenant"));
    expect(expectOk(await server.post("/v1/tenant/settings", {}, { key: t.key }), false)).toEqual(DEFAULTS);
    expect(expectOk(await server.post("/v1/tenant/settings", envelop({}), { key: t.key }), true)).toEqual(DEFAULTS);
    expect(expectOk(await server.post("/v1/tenant/settings", "", { key: t.key }), false)).toEqual(DEFAULTS);
  });

  test("a write answers the new settings, later reads see it, and it can be switched back", async () => {
    const t = await addTenant(server, uniqueName("tenant"));
    const on = { ...DEFAULTS, disable_job_failure_notifications: true };
    expect(expectOk(await server.post("/v1/tenant/settings", { disable_job_failure_notifications: true }, { key: t.key }), false)).toEqual(on);
    expect(expectOk(await server.post("/v1/tenant/settings", {}, { key: t.key }), false)).toEqual(on);
    expect(expectOk(await server.post("/v1/tenant/settings", { disable_job_failure_notifications: null }, { key: t.key }), false)).toEqual(on);
    expect(
      expectOk(await server.post("/v1/tenant/settings", envelop({ disable_job_failure_notifications: false }), { key: t.key }), true),
    ).toEqual(DEFAULTS);
    expect(expectOk(await server.post("/v1/tenant/settings", {}, { key: t.key }), false)).toEqual(DEFAULTS);
  });

  test("one tenant's write is not another's", async () => {
    const a = await addTenant(server, uniqueName("tenant"));
    const b = await addTenant(server, uniqueName("tenant"));
    expectOk(await server.post("/v1/tenant/settings", { disable_job_failure_notifications: true }, { key: a.key }), false);
    expect(expectOk(await server.post("/v1/tenant/settings", {}, { key: b.key }), false)).toEqual(DEFAULTS);
    expectOk(await server.post("/v1/tenant/settings", { disable_job_failure_notifications: false }, { key: b.key }), false);
    expect(expectOk(await server.post("/v1/tenant/settings", {}, { key: a.key }), false).disable_job_failure_notifications).toBe(true);
  });
});
