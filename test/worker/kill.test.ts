import { afterAll, expect, test } from "bun:test";
import { call, waitForJob, waitForJobLog } from "../e2e/serve-child";
import { describeWithChromium } from "../chromium";
import type { ServerProcess } from "../process-helpers";
import { describeProcesses, descendantsOf, isChromium, isWorker, processesMentioning, stillRunning, waitFor, workerScope, type ProcessInfo } from "./process-tree";

// A handler stuck in a busy loop (test/fixtures/worker-workflows/spin.ts),
// with its Chromium open, in a real `serve` child: the stop message cannot
// reach it, so the job ends by the SIGKILL of its worker's whole tree after
// the grace, browser included, and the next job of the file still runs.

const GRACE_MS = 1000;
/** What the ends below may take beyond timeout + grace on a loaded 2-core machine. */
const MARGIN_MS = 5000;

const scope = workerScope();
afterAll(() => scope.cleanup());

/** Starts a spin job and waits until it loops; returns the worker and browser processes it runs in, seen from the test. */
async function spinning(server: ServerProcess, key: string, timeoutSeconds: number) {
  const created = await call(server, key, "/v1/jobs/create", { workflow: "spin", params: {}, timeout_seconds: timeoutSeconds });
  expect(created.status).toBe(200);
  const jobId = created.body.job_id as string;
  await waitForJobLog(server, key, jobId, "spin: spinning", 20_000);
  const logs = (await call(server, key, "/v1/logs/list", { jobId })).body.logs as { message: string }[];
  const workerDir = /spin: spinning in (\S+),/.exec(logs.find((l) => l.message.startsWith("spin: spinning"))!.message)![1]!;
  const tree = descendantsOf(server.child.pid);
  // The test can fail: a worker and its Chromium really run below the server now,
  // and the browser's processes name the worker's directory (its profile is there).
  expect(tree.filter(isWorker).length, describeProcesses(tree)).toBeGreaterThan(0);
  expect(tree.filter(isChromium).length, describeProcesses(tree)).toBeGreaterThan(0);
  expect(processesMentioning(workerDir).filter(isChromium).length).toBeGreaterThan(0);
  return { jobId, tree, workerDir };
}

/**
 * Nothing of the killed tree runs any more (reparented or not), nothing on
 * the host names the worker's directory (a browser process that left the
 * tree), and the server has no child left.
 */
async function expectTreeGone(server: ServerProcess, spun: { tree: ProcessInfo[]; workerDir: string }) {
  const left = () => [...spun.tree.filter(stillRunning), ...processesMentioning(spun.workerDir), ...descendantsOf(server.child.pid)];
  await waitFor(() => left().length === 0, 5000, () => `still running:\n${describeProcesses(left())}`);
}

/** The next job of the same file runs, in a new worker with a new browser. */
async function expectNextJobRuns(server: ServerProcess, key: string) {
  const next = await call(server, key, "/v1/jobs/create", { workflow: "spin", params: { loop: false } });
  const job = await waitForJob(server, key, next.body.job_id, { timeoutMs: 20_000 });
  expect(job.error).toBeNull();
  expect(job.status).toBe("completed");
  expect(job.result.title).toBe("spin");
}

describeWithChromium("a handler in a busy loop with its browser open", () => {
  for (const sandbox of ["auto", "none"] as const) {
    test(`is killed at its timeout, with its Chromium, and the next job of the file completes (UNDERSTUDY_WORKER_SANDBOX=${sandbox})`, async () => {
      const deployment = scope.deployment({ UNDERSTUDY_JOB_GRACE_MS: String(GRACE_MS), UNDERSTUDY_WORKER_SANDBOX: sandbox });
      const key = await deployment.addTenant("acme");
      const server = await scope.start(deployment);
      const timeoutSeconds = 4;
      const spun = await spinning(server, key, timeoutSeconds);

      const job = await waitForJob(server, key, spun.jobId, { timeoutMs: timeoutSeconds * 1000 + GRACE_MS + MARGIN_MS });
      expect(job.status).toBe("failed");
      expect(job.failure_class).toBe("timeout");
      expect(job.error).toContain("timed out after 4 s");
      // From the claim: the worker's start, the timeout, the grace, then the kill.
      expect(Date.parse(job.completed_at) - Date.parse(job.started_at)).toBeLessThanOrEqual(timeoutSeconds * 1000 + GRACE_MS + MARGIN_MS);
      await expectTreeGone(server, spun);
      await expectNextJobRuns(server, key);
    }, 45_000);
  }

  test("is killed at cancel, with its Chromium, and the next job of the file completes", async () => {
    const deployment = scope.deployment({ UNDERSTUDY_JOB_GRACE_MS: String(GRACE_MS) });
    const key = await deployment.addTenant("acme");
    const server = await scope.start(deployment);
    const spun = await spinning(server, key, 600);

    const cancelledAt = Date.now();
    const cancel = await call(server, key, "/v1/jobs/cancel", { id: spun.jobId });
    expect(cancel.status).toBe(200);
    const job = await waitForJob(server, key, spun.jobId, { timeoutMs: GRACE_MS + MARGIN_MS });
    expect(Date.now() - cancelledAt).toBeLessThanOrEqual(GRACE_MS + MARGIN_MS);
    expect(job.status).toBe("cancelled");
    expect(job.failure_class).toBe("cancelled");
    await expectTreeGone(server, spun);
    await expectNextJobRuns(server, key);
  }, 45_000);
});
