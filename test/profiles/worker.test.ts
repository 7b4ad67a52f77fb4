/**
 * Browser profiles in worker processes (a real `serve`): a workflow file
 * declaring authProfile, and a deploy-shaped upload whose metadata declares
 * it (as `libretto cloud deploy` writes it), start signed in to a test site
 * that needs a cookie; with refresh, what the site set is saved back; the
 * other tenant's job does not get the state; the raw database never holds it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithChromium } from "../chromium";
import { uploadBase64 } from "../deployments/upload";
import { call, killChild, serveDeployment, waitForJob, type ServeDeployment } from "../e2e/serve-child";
import { secretForms, tempDir } from "../helpers";
import type { ServerProcess } from "../process-helpers";
import { signedInState, startCookieSite, type CookieSite } from "./site";

const JOB_TIMEOUT_MS = 45_000;

const WORKFLOW_FILE = `import { workflow } from "libretto";

async function whoami(ctx, input) {
  await ctx.page.goto(input.site + "/whoami");
  return { who: await ctx.page.textContent("#who") };
}

export const read = workflow("file-read-portal", { authProfile: "portal", handler: (ctx, input) => whoami(ctx, input) });

export const refresh = workflow("file-refresh-portal", {
  authProfile: { name: "portal", refresh: true },
  async handler(ctx, input) {
    await ctx.page.goto(input.site + "/set");
    return whoami(ctx, input);
  },
});
`;

describeWithChromium("browser profiles in worker processes (serve, file and deployed workflows)", (chromiumPath) => {
  let site: CookieSite;
  let workflowsDir: { path: string; remove(): void };
  let deployment: ServeDeployment;
  let server: ServerProcess;
  let alpha: string;
  let beta: string;

  beforeAll(async () => {
    site = startCookieSite();
    workflowsDir = tempDir("understudy-profile-workflows-");
    writeFileSync(join(workflowsDir.path, "portal.ts"), WORKFLOW_FILE);
    deployment = serveDeployment({ workflowsDir: workflowsDir.path, env: { UNDERSTUDY_CHROMIUM_PATH: chromiumPath } });
    alpha = await deployment.addTenant("alpha");
    beta = await deployment.addTenant("beta");
    server = await deployment.start();
  });

  afterAll(async () => {
    await killChild(server);
    deployment?.remove();
    workflowsDir?.remove();
    site?.stop();
  });

  async function run(key: string, workflow: string) {
    const created = await call(server, key, "/v1/jobs/create", { workflow, params: { site: site.url } });
    expect(created.status).toBe(200);
    return waitForJob(server, key, created.body.job_id, { timeoutMs: JOB_TIMEOUT_MS });
  }

  async function logsOf(key: string, id: string): Promise<string> {
    const logs = await call(server, key, "/v1/logs/list", { jobId: id });
    return logs.body.logs.map((l: { message: string }) => l.message).join("\n");
  }

  test("a workflow file declaring authProfile gets the uploaded state in its worker; refresh saves what the site set", async () => {
    expect((await call(server, alpha, "/v1/browserProfiles/upload", { name: "portal", state: signedInState(site) })).status).toBe(200);
    const read = await run(alpha, "file-read-portal");
    expect({ status: read.status, error: read.error }).toEqual({ status: "completed", error: null });
    expect(read.result).toEqual({ who: "signed in as alice" });

    const refreshed = await run(alpha, "file-refresh-portal");
    expect(refreshed.result).toEqual({ who: "signed in as alice" });
    expect(await logsOf(alpha, refreshed.job_id)).toContain('Browser profile "portal" refreshed (version 2)');
    const listed = await call(server, alpha, "/v1/browserProfiles/list", {});
    expect(listed.body.profiles).toEqual([expect.objectContaining({ name: "portal", version: 2, has_state: true })]);

    // The next job's browser sends the cookie the site set during the refreshing one.
    site.seen.length = 0;
    expect((await run(alpha, "file-read-portal")).result).toEqual({ who: "signed in as alice" });
    expect(site.seen.some((c) => c.includes(`fresh=${site.fresh}`) && c.includes(`sid=${site.session}`))).toBe(true);
  }, 4 * JOB_TIMEOUT_MS);

  test("the other tenant's job of the same workflow does not get the state", async () => {
    const failed = await run(beta, "file-read-portal");
    expect(failed.status).toBe("failed");
    expect(failed.error).toContain('browser profile "portal", which does not exist');
    expect((await call(server, beta, "/v1/browserProfiles/list", {})).body.profiles).toEqual([]);
  }, JOB_TIMEOUT_MS);

  test("a deploy-shaped upload declaring authProfile: ensure as the CLI does, then the uploaded state is used and refreshed", async () => {
    const ensured = await call(server, alpha, "/v1/browserProfiles/ensure", { name: "deployed" });
    expect(ensured.body).toMatchObject({ success: true, name: "deployed", created: true });
    const source = await uploadBase64({
      workflows: [
        {
          name: "deployed-portal",
          authProfile: { name: "deployed", refresh: true },
          body: `await ctx.page.goto(input.site + "/set"); await ctx.page.goto(input.site + "/whoami"); return { who: await ctx.page.textContent("#who") };`,
        },
      ],
    });
    const created = await call(server, alpha, "/v1/deployments/create", { source, entry_point: "index.js" });
    expect(created.status).toBe(200);
    for (let i = 0; i < 1200; i++) {
      const synced = await call(server, alpha, "/v1/deployments/sync", { id: created.body.deployment_id });
      if (synced.body.status !== "building") {
        expect(synced.body.status).toBe("ready");
        break;
      }
      await Bun.sleep(25);
    }
    // Ensured, never uploaded: the job runs without a state (and, refreshing, saves its first).
    const first = await run(alpha, "deployed-portal");
    expect(first.result).toEqual({ who: "signed out" });
    expect(await logsOf(alpha, first.job_id)).toContain('Browser profile "deployed" has no saved state yet');

    expect((await call(server, alpha, "/v1/browserProfiles/upload", { name: "deployed", state: signedInState(site) })).body.version).toBe(2);
    const second = await run(alpha, "deployed-portal");
    expect(second.result).toEqual({ who: "signed in as alice" });
    expect(await logsOf(alpha, second.job_id)).toContain('Browser profile "deployed" refreshed (version 3)');
  }, 4 * JOB_TIMEOUT_MS);

  test("the raw database file never holds the cookie values in clear", async () => {
    const files = [deployment.dbPath, `${deployment.dbPath}-wal`].filter((path) => existsSync(path)).map((path) => readFileSync(path));
    expect(files.length).toBeGreaterThan(0);
    for (const value of [site.session, site.fresh]) {
      for (const form of secretForms(value)) {
        for (const bytes of files) expect(bytes.includes(Buffer.from(form))).toBe(false);
        expect(server.stdout() + server.stderr()).not.toContain(form);
      }
    }
  });
});
