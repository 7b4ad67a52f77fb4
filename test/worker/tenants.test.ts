import { resolve } from "node:path";
import { afterAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { call, waitForJob, waitForJobLog } from "../e2e/serve-child";
import { testWithBwrap } from "../bwrap";
import { workerScope } from "./process-tree";

// Tenant A's handler hunts for tenant B's credential value while B's job
// holds it (in a file of its worker's directory, in a child process's
// environment and command line, in memory): the API without a key, every
// file under /tmp and /dev/shm, every process it can see in /proc.

const scope = workerScope();
afterAll(() => scope.cleanup());

/** Runs B's holding job and A's hunt at the same time; returns A's job, A's log and whether the hunt's text holds B's value. */
async function huntWhileHeld(env: Record<string, string>) {
  const deployment = scope.deployment(env);
  const keyA = await deployment.addTenant("tenant-a");
  const keyB = await deployment.addTenant("tenant-b");
  const server = await scope.start(deployment);
  const value = `b-secret-${randomUUID()}`;
  expect((await call(server, keyB, "/v1/credentials/create", { name: "password", value })).status).toBe(200);

  const held = await call(server, keyB, "/v1/jobs/create", { workflow: "holds-value", params: {} });
  expect(held.status).toBe(200);
  await waitForJobLog(server, keyB, held.body.job_id, "holds-value: holding", 20_000);

  const hunt = await call(server, keyA, "/v1/jobs/create", { workflow: "hunt", params: { serverUrl: server.url, shape: "b-secret-[0-9a-f-]{36}" } });
  expect(hunt.status).toBe(200);
  const job = await waitForJob(server, keyA, hunt.body.job_id, { timeoutMs: 20_000 });
  const logs = (await call(server, keyA, "/v1/logs/list", { jobId: hunt.body.job_id })).body;

  // B's job was holding the value all along.
  expect((await call(server, keyB, "/v1/jobs/get", { id: held.body.job_id })).body.status).toBe("running");
  expect((await call(server, keyB, "/v1/jobs/cancel", { id: held.body.job_id })).status).toBe(200);
  expect((await waitForJob(server, keyB, held.body.job_id, { timeoutMs: 10_000 })).status).toBe("cancelled");

  const seen = JSON.stringify(job) + JSON.stringify(logs);
  // Asserted as a boolean, so that no failure prints the value.
  return { job, found: seen.includes(value) };
}

testWithBwrap("tenant A's handler cannot reach tenant B's value while B's job holds it (bubblewrap)", async () => {
  const { job, found } = await huntWhileHeld({});
  expect(job.status).toBe("completed");
  const result = job.result;
  // It did look: the API answered, and it read everything it could see.
  for (const status of Object.values(result.api)) expect(status).toBe(401);
  expect(result.places).toBeGreaterThan(5);
  expect(result.pids).toBeGreaterThan(0);
  expect(result.complete).toBe(true);
  // Of /tmp it sees only the way to its own directory (no other worker's),
  // and, when this checkout lies under /tmp (a CI clone), the checkout: the
  // program it runs from source.
  const checkout = resolve(import.meta.dir, "..", "..");
  expect(result.tmpDirs.length).toBeGreaterThan(0);
  for (const dir of result.tmpDirs as string[]) {
    const allowed = result.ownDir.startsWith(dir) || `${dir}/`.startsWith(`${checkout}/`) || `${checkout}/`.startsWith(`${dir}/`);
    expect(allowed, dir).toBe(true);
  }
  // Nothing of the shape of B's value anywhere, let alone the value.
  expect(result.matches).toEqual([]);
  expect(found).toBe(false);
}, 40_000);

test("the hunt is able: without a sandbox (UNDERSTUDY_WORKER_SANDBOX=none) it does find B's value (so its failure above means something)", async () => {
  // The process boundary alone keeps the environment clean, not the files
  // and processes of the server's user (DESIGN.md "Trust model").
  const { job, found } = await huntWhileHeld({ UNDERSTUDY_WORKER_SANDBOX: "none" });
  expect(job.status).toBe("completed");
  for (const status of Object.values(job.result.api)) expect(status).toBe(401);
  expect(found).toBe(true);
  expect(job.result.matches.length).toBeGreaterThan(0);
}, 40_000);
