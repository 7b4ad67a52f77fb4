/**
 * Credential injection (API.md "Workflows and jobs"), each rule observed
 * where it matters: in what the handler receives. Each test works in a fresh
 * tenant, so stored credentials of one test are never seen by another.
 */
import { flushAuditEvents } from "../../src/audit/store";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, dumpDb, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";
import { createJob, FAST_ENV, getJob, jobLogs, rawJobRow, referencesOf, waitForEnd } from "./support";

/** What each handler received, by job id (ctx.session). */
const received = new Map<string, any>();
const record = (ctx: { session: string }, input: unknown) => received.set(ctx.session, structuredClone(input));

const login = workflow("portal-login", {
  credentials: ["username", "password"],
  handler(ctx, input) {
    record(ctx, input);
    return { ok: true };
  },
});
const mixedCase = workflow("mixed-case", {
  credentials: [" Password "],
  handler(ctx, input) {
    record(ctx, input);
    return { ok: true };
  },
});
const undeclared = workflow("declares-nothing", (ctx, input) => {
  record(ctx, input);
  return { ok: true };
});
/** Writes its password everywhere a value could leak: logs, console, result, error. */
const leaky = workflow("leaky", {
  credentials: ["password"],
  handler(ctx, input: { mode: string; credentials?: { password?: string } }) {
    record(ctx, input);
    const pw = input.credentials?.password;
    ctx.log.info(`logging in with ${pw}`);
    ctx.log.warn("json form", JSON.stringify({ pw }));
    console.log("console says", pw);
    console.error(`url form: https://x.test/?pw=${encodeURIComponent(pw ?? "")}`);
    if (input.mode === "throw") throw new Error(`login failed for password ${pw}`);
    return { echoed: pw, nested: { list: [pw] } };
  },
});

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows: [login, mixedCase, undeclared, leaky], env: FAST_ENV });
});
afterAll(async () => server.close());

/** A tenant no other test writes to, with helpers acting as it. */
async function freshTenant() {
  const tenant = await addTenant(server, uniqueName("tenant"));
  const store = async (name: string, value: string, route = "/v1/credentials/create") => {
    const output = expectOk(await server.post(route, { name, value }, { key: tenant.key }), false);
    return output.credential_id as string;
  };
  const run = async (input: Record<string, unknown>) => {
    const id = await createJob(server, input, tenant.key);
    const job = await waitForEnd(server, id, tenant.key);
    return { id, job, input: received.get(id) };
  };
  return { ...tenant, store, run };
}

const injectAudits = async (tenantId: string) => {
  // Injections are audited in batches, like every read: write the batch first.
  await flushAuditEvents(server.db);
  return injectAuditRows(tenantId);
};
const injectAuditRows = (tenantId: string) =>
  server.db
    .selectFrom("audit_events")
    .selectAll()
    .where("action", "=", "credential.inject")
    .where("tenant_id", "=", tenantId)
    .orderBy("id")
    .execute();

describe("injection rules", () => {
  test("only the declared names are injected: another stored credential is not seen", async () => {
    const t = await freshTenant();
    await t.store("username", "ada@example.com");
    await t.store("password", "pw-declared-1");
    await t.store("extra_secret", "extra-value-never-injected");
    const { job, input } = await t.run({ workflow: "portal-login", params: { site: "portal" } });
    expect(job.status).toBe("completed");
    expect(input).toEqual({ site: "portal", credentials: { username: "ada@example.com", password: "pw-declared-1" } });
    expect(JSON.stringify(input)).not.toContain("extra-value-never-injected");
  });

  test("a declared name with no stored credential is absent, and a warn line names it", async () => {
    const t = await freshTenant();
    await t.store("username", "grace@example.com");
    const { id, job, input } = await t.run({ workflow: "portal-login", params: {} });
    expect(job.status).toBe("completed");
    expect(input).toEqual({ credentials: { username: "grace@example.com" } });
    const warns = (await jobLogs(server, id, t.key)).filter((l) => l.level === "warn");
    expect(warns.length).toBe(1);
    expect(warns[0].message).toContain("password");
    expect(warns[0].message).not.toContain("username");
  });

  test("when nothing resolves, the input has no credentials key, and the log names every missing name", async () => {
    const t = await freshTenant();
    const { id, job, input } = await t.run({ workflow: "portal-login", params: { x: 1 } });
    expect(job.status).toBe("completed");
    expect(input).toEqual({ x: 1 });
    expect("credentials" in input).toBe(false);
    const warns = (await jobLogs(server, id, t.key)).filter((l) => l.level === "warn");
    expect(warns.length).toBe(1);
    expect(warns[0].message).toContain("username");
    expect(warns[0].message).toContain("password");
  });

  test("a workflow that declares nothing gets its params untouched, a caller's params.credentials included", async () => {
    const t = await freshTenant();
    await t.store("token", "stored-token-not-for-this-workflow");
    const params = { a: 1, list: [1, "two"], credentials: { Token: "caller-token-value", nested: { deep: true } } };
    const { id, job, input } = await t.run({ workflow: "declares-nothing", params });
    expect(job.status).toBe("completed");
    expect(input).toEqual(params);
    // No warn line: nothing was declared, so nothing is missing.
    expect((await jobLogs(server, id, t.key)).filter((l) => l.level === "warn")).toEqual([]);
    expect(await injectAudits(t.tenantId)).toEqual([]);
    // Still never stored in clear.
    expect(await rawJobRow(server, id)).not.toContain("caller-token-value");
  });

  test("a workflow that declares nothing and gets no params.credentials has no credentials key", async () => {
    const t = await freshTenant();
    await t.store("token", "stored-token-2");
    const { input } = await t.run({ workflow: "declares-nothing", params: { only: "this" } });
    expect(input).toEqual({ only: "this" });
  });

  test("params.credentials is filtered to declared names and wins over stored values", async () => {
    const t = await freshTenant();
    const username = await t.store("username", "stored-user");
    await t.store("password", "stored-password-loses");
    const { id, job, input } = await t.run({
      workflow: "portal-login",
      params: { p: 2, credentials: { password: "caller-password-wins", not_declared: "caller-extra-dropped" } },
    });
    expect(job.status).toBe("completed");
    expect(input).toEqual({ p: 2, credentials: { username: "stored-user", password: "caller-password-wins" } });
    // Only the stored value actually used was injected (and audited).
    const audits = await injectAudits(t.tenantId);
    expect(audits.map((a) => a.credential_id)).toEqual([username]);
    expect(job.params).toEqual({ p: 2 });
    const row = await rawJobRow(server, id);
    expect(row).not.toContain("caller-password-wins");
    expect(row).not.toContain("caller-extra-dropped");
  });

  test("names are normalised: a declared \" Password \" matches a stored PASSWORD and a caller's \"PassWord\"", async () => {
    const t = await freshTenant();
    await t.store("PASSWORD", "normalised-stored-pw");
    const stored = await t.run({ workflow: "mixed-case" });
    expect(stored.input).toEqual({ credentials: { password: "normalised-stored-pw" } });

    const given = await t.run({ workflow: "mixed-case", params: { credentials: { " PassWord ": "normalised-caller-pw" } } });
    expect(given.input).toEqual({ credentials: { password: "normalised-caller-pw" } });
  });

  test("a credential stored after the job was queued, before it started, is used", async () => {
    const paused = await startTestServer({ workflows: [login], runnerPaused: true, env: FAST_ENV });
    try {
      const id = await createJob(paused, { workflow: "portal-login", params: {} });
      expect(await referencesOf(paused, id)).toEqual([]);
      expectOk(await paused.post("/v1/credentials/create", { name: "password", value: "stored-while-queued" }), false);
      expect((await getJob(paused, id)).status).toBe("queued");
      paused.runner.start();
      const job = await waitForEnd(paused, id);
      expect(job.status).toBe("completed");
      expect(received.get(id)).toEqual({ credentials: { password: "stored-while-queued" } });
      expect(await referencesOf(paused, id)).toEqual([]);
    } finally {
      await paused.close();
    }
  });

  test("another tenant's credential of a declared name is never injected", async () => {
    const owner = await freshTenant();
    await owner.store("username", "owner-user-value");
    await owner.store("password", "owner-password-value");
    const other = await freshTenant();
    const { input } = await other.run({ workflow: "portal-login", params: {} });
    expect(input).toEqual({});
  });
});

describe("injected values never reach the job row, the API or the log", () => {
  for (const source of ["stored", "caller"] as const) {
    for (const mode of ["return", "throw"] as const) {
      test(`a ${source} value the handler logs and ${mode === "return" ? "returns" : "throws"} is redacted everywhere`, async () => {
        const t = await freshTenant();
        const secret = `pw-${source}-${mode}-${crypto.randomUUID()}`;
        if (source === "stored") await t.store("password", secret);
        const params = source === "caller" ? { mode, credentials: { password: secret } } : { mode };
        const { id, job, input } = await t.run({ workflow: "leaky", params });
        // The handler did get the value...
        expect(input.credentials.password).toBe(secret);

        // ...and nothing a user can read, nor any stored row, holds it.
        const api = await server.post("/v1/jobs/get", { id }, { key: t.key });
        expect(api.text).not.toContain(secret);
        expect(job.params).toEqual({ mode });
        const logs = await jobLogs(server, id, t.key);
        expect(JSON.stringify(logs)).not.toContain(secret);
        expect(JSON.stringify(logs)).not.toContain(encodeURIComponent(secret));
        expect(await rawJobRow(server, id)).not.toContain(secret);
        expect(await dumpDb(server.db)).not.toContain(secret);
        const list = await server.post("/v1/logs/list", {}, { key: t.key });
        expect(list.text).not.toContain(secret);

        // Where it was written, the placeholder stands in.
        const messages = logs.map((l) => l.message);
        expect(messages).toContain("logging in with [REDACTED:password]");
        expect(messages).toContain("console says [REDACTED:password]");
        expect(messages.some((m) => m.startsWith("json form") && m.includes("[REDACTED:password]"))).toBe(true);
        expect(logs.some((l) => l.level === "error" && l.message.includes("url form: https://x.test/?pw=[REDACTED:password]"))).toBe(true);
        if (mode === "return") {
          expect(job.status).toBe("completed");
          expect(job.result).toEqual({ echoed: "[REDACTED:password]", nested: { list: ["[REDACTED:password]"] } });
        } else {
          expect(job.status).toBe("failed");
          expect(job.failure_class).toBe("error");
          expect(job.error).toBe("login failed for password [REDACTED:password]");
          expect(job.mapped_stack).toContain("[REDACTED:password]");
          expect(job).not.toHaveProperty("result");
        }
      });
    }
  }
});

describe("audit of injections", () => {
  test("each injection leaves a credential.inject row with the credential id, job id and version, and no value", async () => {
    const t = await freshTenant();
    const username = await t.store("username", "audited-user-value");
    const password = await t.store("password", "audited-pw-v1");
    await t.store("password", "audited-pw-v2", "/v1/credentials/upsert");
    const { id, input } = await t.run({ workflow: "portal-login" });
    expect(input.credentials).toEqual({ username: "audited-user-value", password: "audited-pw-v2" });

    const audits = await injectAudits(t.tenantId);
    expect(audits.length).toBe(2);
    const byCredential = new Map(audits.map((a) => [a.credential_id, a]));
    expect(JSON.parse(byCredential.get(username)!.detail!)).toEqual({ job_id: id, version: 1 });
    expect(JSON.parse(byCredential.get(password)!.detail!)).toEqual({ job_id: id, version: 2 });
    for (const audit of audits) {
      expect(audit.outcome).toBe("success");
      expect(audit.api_key_id).toBeNull();
      const text = JSON.stringify(audit);
      for (const value of ["audited-user-value", "audited-pw-v1", "audited-pw-v2"]) expect(text).not.toContain(value);
    }
    expect(byCredential.get(username)!.credential_name).toBe("username");

    // A second job is a second injection.
    const second = await t.run({ workflow: "portal-login" });
    const after = await injectAudits(t.tenantId);
    expect(after.length).toBe(4);
    expect(after.slice(2).map((a) => JSON.parse(a.detail!).job_id)).toEqual([second.id, second.id]);
  });
});
