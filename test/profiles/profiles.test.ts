/**
 * Browser profiles over the API, with jobs in the server process and a real
 * Chromium: a workflow declaring authProfile starts signed in to a test site
 * that needs a cookie; with refresh, what the site set is saved back; tenant
 * B never sees, deletes or uses tenant A's profile; a profile in use cannot
 * be deleted; the raw database never holds the state in clear.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, existsSync } from "node:fs";
import { systemClock } from "../../src/clock";
import { openProfileForJob } from "../../src/profiles/service";
import { toMasterKey } from "../../src/vault/master-key";
import { Vault } from "../../src/vault/vault";
import { workflow } from "../../src/workflows/define";
import { describeWithChromium } from "../chromium";
import { secretForms, startTestServer, type TestServer } from "../helpers";
import { expectError, expectOk } from "../http/wire";
import { signedInState, startCookieSite, type CookieSite } from "./site";

const JOB_TIMEOUT_MS = 45_000;

async function waitForJob(server: TestServer, id: string, key?: string, until = (job: any) => ["completed", "failed", "cancelled"].includes(job.status)) {
  for (let i = 0; i < 2000; i++) {
    const job = expectOk(await server.post("/v1/jobs/get", { id }, { key }), false);
    if (until(job)) return job;
    await Bun.sleep(20);
  }
  throw new Error(`job ${id} did not reach the awaited state`);
}

async function logsOf(server: TestServer, id: string, key?: string): Promise<string[]> {
  return expectOk(await server.post("/v1/logs/list", { jobId: id }, { key }), false).logs.map((l: { message: string }) => l.message);
}

test("a profile used by a queued job cannot be deleted until the job ends (cancelled here)", async () => {
  const server = await startTestServer({ runnerPaused: true, workflows: [workflow("uses-portal", { authProfile: "portal", handler: () => null })] });
  try {
    expectOk(await server.post("/v1/browserProfiles/upload", { name: "portal", state: { cookies: [] } }), false);
    const job = expectOk(await server.post("/v1/jobs/create", { workflow: "uses-portal" }), false);
    const refused = expectError(await server.post("/v1/browserProfiles/delete", { name: "portal" }), 409, "CONFLICT", false);
    expect(refused.data.job_ids).toEqual([job.job_id]);
    expect(refused.message).toContain("1 queued or running job");
    // Beta's profile of the same name is its own: no job of alpha holds it.
    expectOk(await server.post("/v1/browserProfiles/ensure", { name: "portal" }, { key: server.keys.beta }), false);
    expectOk(await server.post("/v1/browserProfiles/delete", { name: "portal" }, { key: server.keys.beta }), false);
    expectOk(await server.post("/v1/jobs/cancel", { id: job.job_id }), false);
    expectOk(await server.post("/v1/browserProfiles/delete", { name: "portal" }), false);
  } finally {
    await server.close();
  }
});

test("a sealed state copied onto another tenant's or another profile's row does not open there", async () => {
  const server = await startTestServer({ runnerPaused: true });
  try {
    const state = { cookies: [{ name: "sid", value: `copied-${crypto.randomUUID()}`, domain: "example.test" }] };
    expectOk(await server.post("/v1/browserProfiles/upload", { name: "portal", state }), false);
    expectOk(await server.post("/v1/browserProfiles/ensure", { name: "other" }), false);
    expectOk(await server.post("/v1/browserProfiles/upload", { name: "portal", state: { cookies: [] } }, { key: server.keys.beta }), false);
    const source = await server.db.selectFrom("browser_profiles").select(["sealed_state", "version"]).where("tenant_id", "=", server.tenants.alpha).where("name", "=", "portal").executeTakeFirstOrThrow();
    for (const [tenant, name] of [[server.tenants.beta, "portal"], [server.tenants.alpha, "other"]] as const) {
      await server.db.updateTable("browser_profiles").set({ sealed_state: source.sealed_state, version: source.version }).where("tenant_id", "=", tenant).where("name", "=", name).execute();
      await expect(openProfileForJob(server.deps, tenant, "copied", name)).rejects.toThrow(`The stored state of browser profile "${name}" failed its integrity check`);
    }
    expect((await openProfileForJob(server.deps, server.tenants.alpha, "original", "portal")).state?.cookies[0]?.value).toBe(state.cookies[0]!.value);
    // A tenant whose data key row is gone while it holds a profile state is never given a new key.
    await server.db.deleteFrom("tenant_keys").where("tenant_id", "=", server.tenants.beta).execute();
    const vault = await Vault.open(server.db, { current: toMasterKey(new Uint8Array(Buffer.from(server.masterKey, "base64"))) }, systemClock);
    await expect(vault.sealForTenant(server.db, server.tenants.beta, "probe", "value")).rejects.toThrow("is missing");
  } finally {
    await server.close();
  }
});

describeWithChromium("browser profiles: API, in-process jobs, real Chromium", (chromiumPath) => {
  let site: CookieSite;
  let server: TestServer;
  let release: () => void = () => {};
  let held: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    site = startCookieSite();
    const whoami = async (ctx: { page: import("playwright-core").Page }) => {
      await ctx.page.goto(`${site.url}/whoami`);
      return { who: await ctx.page.textContent("#who") };
    };
    server = await startTestServer({
      env: { UNDERSTUDY_CHROMIUM_PATH: chromiumPath },
      workflows: [
        workflow("read-portal", { authProfile: "portal", handler: (ctx) => whoami(ctx) }),
        workflow("refresh-portal", {
          authProfile: { name: "portal", refresh: true },
          handler: async (ctx) => {
            await ctx.page.goto(`${site.url}/set`);
            return whoami(ctx);
          },
        }),
        workflow("hold-portal", {
          authProfile: " portal ",
          handler: async (ctx) => {
            const result = await whoami(ctx);
            await held;
            return result;
          },
        }),
        workflow("read-missing", { authProfile: "never-made", handler: (ctx) => whoami(ctx) }),
      ],
    });
  });

  afterAll(async () => {
    release();
    await server?.close();
    site?.stop();
  });

  async function run(workflowName: string, key?: string) {
    const created = expectOk(await server.post("/v1/jobs/create", { workflow: workflowName }, { key }), false);
    return waitForJob(server, created.job_id, key);
  }

  test("a job of a workflow declaring authProfile starts with the uploaded profile's cookie", async () => {
    const uploaded = expectOk(await server.post("/v1/browserProfiles/upload", { name: "portal", state: signedInState(site) }), false);
    expect(uploaded).toMatchObject({ success: true, name: "portal", created: true, version: 1 });
    const job = await run("read-portal");
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ who: "signed in as alice" });
    expect(site.seen).toContain(`sid=${site.session}`);
    // list shows the name, never the state.
    const listed = expectOk(await server.post("/v1/browserProfiles/list", {}), false);
    expect(listed.profiles).toEqual([
      expect.objectContaining({ profile_id: uploaded.profile_id, name: "portal", providers: [], has_state: true, version: 1 }),
    ]);
    expect(JSON.stringify(listed)).not.toContain(site.session);
  }, JOB_TIMEOUT_MS);

  test("tenant B cannot list, delete or use tenant A's profile", async () => {
    const beta = server.keys.beta;
    expect(expectOk(await server.post("/v1/browserProfiles/list", {}, { key: beta }), false).profiles).toEqual([]);
    const deleted = expectError(await server.post("/v1/browserProfiles/delete", { name: "portal" }, { key: beta }), 404, "NOT_FOUND", false);
    expect(deleted.message).toContain("No cloud profile found for portal");
    // Beta's job of the same workflow does not get alpha's state: beta has no profile of that name.
    const failed = await run("read-portal", beta);
    expect(failed.status).toBe("failed");
    expect(failed.error).toContain('browser profile "portal", which does not exist');
    // With a profile of its own made by ensure (no state), beta's job runs signed out.
    const ensured = expectOk(await server.post("/v1/browserProfiles/ensure", { name: "portal" }, { key: beta }), false);
    expect(ensured).toMatchObject({ success: true, name: "portal", created: true });
    const again = expectOk(await server.post("/v1/browserProfiles/ensure", { name: "portal" }, { key: beta }), false);
    expect(again).toEqual({ success: true, profile_id: ensured.profile_id, name: "portal", created: false });
    const signedOut = await run("read-portal", beta);
    expect(signedOut.status).toBe("completed");
    expect(signedOut.result).toEqual({ who: "signed out" });
    expect((await logsOf(server, signedOut.job_id, beta)).join("\n")).toContain('Browser profile "portal" has no saved state yet');
    // Alpha's profile is as it was.
    expect((await run("read-portal")).result).toEqual({ who: "signed in as alice" });
  }, 3 * JOB_TIMEOUT_MS);

  test("a job whose profile does not exist fails with a message that says so", async () => {
    const job = await run("read-missing");
    expect(job.status).toBe("failed");
    expect(job.error).toContain('The workflow declares browser profile "never-made", which does not exist for this tenant');
  }, JOB_TIMEOUT_MS);

  test("with refresh, a cookie the site set during the job is in the stored state afterwards", async () => {
    const job = await run("refresh-portal");
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ who: "signed in as alice" });
    expect((await logsOf(server, job.job_id)).join("\n")).toContain('Browser profile "portal" refreshed (version 2)');
    const stored = await openProfileForJob(server.deps, server.tenants.alpha, "test-read", "portal");
    expect(stored.version).toBe(2);
    const cookies = Object.fromEntries(stored.state!.cookies.map((c) => [c.name, c.value]));
    expect(cookies).toEqual({ sid: site.session, fresh: site.fresh });
    // And the next job starts with it.
    site.seen.length = 0;
    expect((await run("read-portal")).result).toEqual({ who: "signed in as alice" });
    expect(site.seen.some((c) => c.includes(`fresh=${site.fresh}`))).toBe(true);
  }, 3 * JOB_TIMEOUT_MS);

  test("a profile used by a running job cannot be deleted: 409 with the job id; afterwards it can", async () => {
    held = new Promise((resolve) => (release = resolve));
    const created = expectOk(await server.post("/v1/jobs/create", { workflow: "hold-portal" }), false);
    await waitForJob(server, created.job_id, undefined, (job) => job.status === "running");
    const refused = expectError(await server.post("/v1/browserProfiles/delete", { name: "portal" }), 409, "CONFLICT", false);
    expect(refused.data.job_ids).toEqual([created.job_id]);
    expect(refused.message).toContain('Browser profile "portal" is in use by 1 queued or running job');
    release();
    const job = await waitForJob(server, created.job_id);
    expect(job.result).toEqual({ who: "signed in as alice" });
    expect(expectOk(await server.post("/v1/browserProfiles/delete", { name: "portal" }), false)).toMatchObject({ success: true, deleted_count: 1 });
    expectError(await server.post("/v1/browserProfiles/delete", { name: "portal" }), 404, "NOT_FOUND", false);
    expect(expectOk(await server.post("/v1/browserProfiles/list", {}), false).profiles).toEqual([]);
  }, 2 * JOB_TIMEOUT_MS);

  test("uploads, uses, refreshes and deletes are audited, never with the state", async () => {
    const events = await server.db.selectFrom("audit_events").selectAll().where("tenant_id", "=", server.tenants.alpha).where("action", "like", "profile.%").execute();
    const seen = new Set(events.map((e) => `${e.action}:${e.outcome}`));
    for (const wanted of ["profile.upload:success", "profile.use:success", "profile.use:not_found", "profile.refresh:success", "profile.delete:conflict", "profile.delete:success"]) {
      expect(seen).toContain(wanted);
    }
    expect(JSON.stringify(events)).not.toContain(site.session);
  });

  test("no log line, job row or raw database byte holds the state's cookie values", async () => {
    await Bun.sleep(50); // let the batched audit and log writes land
    const values = [site.session, site.fresh];
    const jobs = JSON.stringify(await server.db.selectFrom("jobs").selectAll().execute());
    const logs = JSON.stringify(await server.db.selectFrom("job_logs").selectAll().execute());
    const files = [server.dbPath, `${server.dbPath}-wal`].filter((path) => existsSync(path)).map((path) => readFileSync(path));
    for (const value of values) {
      for (const form of secretForms(value)) {
        expect(jobs).not.toContain(form);
        expect(logs).not.toContain(form);
        expect(server.logs.join("\n")).not.toContain(form);
        for (const bytes of files) expect(bytes.includes(Buffer.from(form))).toBe(false);
      }
    }
  });
});
