import { afterAll, expect, test } from "bun:test";
import { call, waitForJob } from "../e2e/serve-child";
import type { ServerProcess } from "../process-helpers";
import { workerScope } from "./process-tree";

// A worker process that dies in the middle of a job (its handler exits, or
// SIGKILLs itself) fails that job with a message that says so, and the next
// job of the tenant gets a new worker.

const scope = workerScope();
afterAll(() => scope.cleanup());

async function run(server: ServerProcess, key: string, workflow: string) {
  const created = await call(server, key, "/v1/jobs/create", { workflow, params: {} });
  expect(created.status).toBe(200);
  const job = await waitForJob(server, key, created.body.job_id, { timeoutMs: 20_000 });
  const logs = (await call(server, key, "/v1/logs/list", { jobId: created.body.job_id })).body.logs as { message: string }[];
  return { job, logs: logs.map((l) => l.message) };
}

test("a worker that exits or is killed mid-job fails the job (error, 'worker process stopped'), and the next job runs in a new worker", async () => {
  const deployment = scope.deployment();
  const key = await deployment.addTenant("acme");
  const server = await scope.start(deployment);

  // The worker the crashes will run in: warm after this job (its directory names it).
  let before = await run(server, key, "quick");
  expect(before.job.status).toBe("completed");

  for (const [workflow, said, reason] of [
    ["crash-exit", "crash-exit: exiting", /\(it exited with code 3\)/],
    // bubblewrap reports its child's SIGKILL as its own exit code 128 + 9.
    ["crash-kill", "crash-kill: killing myself", /\(it (was killed by SIGKILL|exited with code 137)\)/],
  ] as const) {
    const again = await run(server, key, "quick");
    expect(again.job.result.worker, "a warm worker takes the tenant's next job").toBe(before.job.result.worker);

    const crashed = await run(server, key, workflow);
    expect(crashed.job.status).toBe("failed");
    expect(crashed.job.failure_class).toBe("error");
    expect(crashed.job.error).toMatch(/^The worker process running this job stopped before the job ended \(.+\)\. The next job gets a new worker\.$/);
    expect(crashed.job.error).toMatch(reason);
    // What it said before it died is kept.
    expect(crashed.logs).toContain(said);

    const after = await run(server, key, "quick");
    expect(after.job.status).toBe("completed");
    expect(after.job.result.worker).not.toBe(before.job.result.worker);
    before = after;
  }
  expect(server.child.exitCode).toBeNull();
}, 45_000);
