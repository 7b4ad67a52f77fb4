import { afterAll, describe, expect, test } from "bun:test";
import { call, waitForJob } from "../e2e/serve-child";
import type { ServerProcess } from "../process-helpers";
import { descendantsOf, isWorker, waitFor, workerScope } from "./process-tree";

/**
 * The warm pool's limits, seen from outside: how many worker processes a
 * serve process keeps, and which ones it stops. Each job of the "quick"
 * fixture returns its worker's private directory, which names the worker.
 */
const scope = workerScope();
afterAll(() => scope.cleanup());

/** The server's worker processes (with bwrap, the bwrap process of each). */
const workersOf = (server: ServerProcess) => descendantsOf(server.child.pid).filter((p) => p.ppid === server.child.pid && isWorker(p));

async function quick(server: ServerProcess, key: string): Promise<string> {
  const created = await call(server, key, "/v1/jobs/create", { workflow: "quick" });
  expect(created.status).toBe(200);
  const job = await waitForJob(server, key, created.body.job_id, { timeoutMs: 20_000 });
  expect(job.status, JSON.stringify(job)).toBe("completed");
  return job.result.worker as string;
}

describe("the warm worker pool", () => {
  test("keeps at most UNDERSTUDY_WARM_WORKERS idle workers, stopping the least recently used first", async () => {
    const deployment = scope.deployment({ UNDERSTUDY_WARM_WORKERS: "2" });
    const [a, b, c] = [await deployment.addTenant("a"), await deployment.addTenant("b"), await deployment.addTenant("c")];
    const server = await scope.start(deployment);
    const first = { a: await quick(server, a), b: await quick(server, b), c: await quick(server, c) };
    expect(new Set(Object.values(first)).size).toBe(3); // one worker per tenant
    await waitFor(() => workersOf(server).length === 2, 10_000, () => `workers: ${workersOf(server).length}`);
    // b and c stayed warm; a, the least recently used, was stopped.
    expect(await quick(server, b)).toBe(first.b);
    expect(await quick(server, c)).toBe(first.c);
    expect(await quick(server, a)).not.toBe(first.a);
  }, 60_000);

  test("stops a worker idle for longer than UNDERSTUDY_WORKER_IDLE_MS", async () => {
    const deployment = scope.deployment({ UNDERSTUDY_WORKER_IDLE_MS: "1500" });
    const key = await deployment.addTenant("idle");
    const server = await scope.start(deployment);
    const worker = await quick(server, key);
    expect(await quick(server, key)).toBe(worker); // warm while used
    expect(workersOf(server).length).toBe(1);
    await waitFor(() => workersOf(server).length === 0, 10_000, () => `workers: ${workersOf(server).length}`);
    expect(await quick(server, key)).not.toBe(worker);
  }, 60_000);

  test("stops idle workers while all of them hold more memory than UNDERSTUDY_WORKER_MEMORY_MB", async () => {
    // 1 MB: any worker is over it, so no idle one survives a sweep.
    const deployment = scope.deployment({ UNDERSTUDY_WORKER_MEMORY_MB: "1" });
    const key = await deployment.addTenant("memory");
    const server = await scope.start(deployment);
    const worker = await quick(server, key);
    await waitFor(() => workersOf(server).length === 0, 15_000, () => `workers: ${workersOf(server).length}`);
    expect(await quick(server, key)).not.toBe(worker);
    expect(server.stdout()).toContain("stopped a warm worker over the memory budget");
  }, 60_000);
});
