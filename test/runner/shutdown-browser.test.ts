/**
 * SIGTERM while a browser job runs: the job gets the shutdown grace like any
 * other (Playwright must not close the browser on the signal by itself).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithChromium } from "../chromium";
import { newMasterKey } from "../helpers";
import { postJson, processScope, runCliProcess, startServerProcess } from "../process-helpers";

const { workDir, started, cleanup } = processScope();
afterAll(cleanup);

describeWithChromium("shutdown with a browser job running", () => {
  test("SIGTERM mid-job: the browser job completes within the grace, the server exits 0", async () => {
    const cwd = workDir();
    mkdirSync(join(cwd, "wf"));
    writeFileSync(
      join(cwd, "wf", "slow-page.ts"),
      `import { workflow } from "libretto";
export default workflow("slow-page", async (ctx) => {
  await ctx.page.goto("data:text/html,<title>still open</title>");
  console.log("page open");
  await new Promise((resolve) => setTimeout(resolve, 1500));
  return { title: await ctx.page.title() };
});
`,
    );
    const env = {
      UNDERSTUDY_MASTER_KEY: newMasterKey().text,
      UNDERSTUDY_DB: join(cwd, "u.db"),
      UNDERSTUDY_WORKFLOWS_DIR: join(cwd, "wf"),
      UNDERSTUDY_SHUTDOWN_GRACE_MS: "30000",
    };
    expect((await runCliProcess(["tenants", "create", "acme"], { cwd, env })).code).toBe(0);
    const key = (await runCliProcess(["keys", "create", "--tenant", "acme"], { cwd, env })).stdout.trim();

    const first = await started(startServerProcess(["serve"], { cwd, env }));
    const created = await postJson(first.url, "/v1/jobs/create", key, { workflow: "slow-page" });
    expect(created.status).toBe(200);
    const jobId = created.body.job_id as string;
    // Wait (bounded) until the handler has its page, then stop the server.
    for (let i = 0; i < 300; i++) {
      const logs = await postJson(first.url, "/v1/logs/list", key, { jobId });
      if (logs.body.logs.some((l: { message: string }) => l.message === "page open")) break;
      await Bun.sleep(50);
    }
    expect(await first.stop()).toBe(0);

    const second = await started(startServerProcess(["serve"], { cwd, env }));
    const job = (await postJson(second.url, "/v1/jobs/get", key, { id: jobId })).body;
    expect({ status: job.status, result: job.result, error: job.error }).toEqual({
      status: "completed",
      result: { title: "still open" },
      error: null,
    });
    expect(await second.stop()).toBe(0);
  }, 60_000);
});
