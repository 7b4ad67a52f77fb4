import { afterAll, expect, test } from "bun:test";
import type { ServerProcess } from "../process-helpers";
import { call, FIXTURE_WORKFLOWS, killChild, serveDeployment, signalAndWait, waitForJob, waitForJobLog } from "../e2e/serve-child";

// A real `serve` child killed with SIGKILL while a job runs, then started
// again on the same database and master key: the job must not stay running
// forever, nor be retried, and must stop holding its credential.

const deployment = serveDeployment({ workflowsDir: FIXTURE_WORKFLOWS });
const children: ServerProcess[] = [];

afterAll(async () => {
  for (const child of children) await killChild(child);
  deployment.remove();
});

async function start() {
  const server = await deployment.start();
  children.push(server);
  return server;
}

test("a job running when the server is SIGKILLed ends failed/interrupted at the next start, and releases its credential", async () => {
  const key = await deployment.addTenant("acme");
  const server = await start();
  const stored = await call(server, key, "/v1/credentials/create", { name: "password", value: "crash-test-value" });
  expect(stored.status).toBe(200);
  const credentialId = stored.body.credential_id as string;

  const created = await call(server, key, "/v1/jobs/create", { workflow: "blocks", params: {} });
  expect(created.status).toBe(200);
  const jobId = created.body.job_id as string;
  const running = await waitForJob(server, key, jobId, { until: (job) => job.status === "running", what: "is running" });
  expect(running.started_at).toEqual(expect.any(String));
  expect(running.completed_at).toBeNull();
  await waitForJobLog(server, key, jobId, `blocks: handler started for ${jobId}`);

  // The running job's reference blocks deletion.
  const refused = await call(server, key, "/v1/credentials/delete", { id: credentialId });
  expect(refused.status).toBe(409);
  expect(refused.body.code).toBe("CONFLICT");
  expect(refused.body.data.job_ids).toEqual([jobId]);

  const killed = await signalAndWait(server, "SIGKILL", 5000);
  expect(killed.exited).toBe(true);
  expect(server.child.signalCode).toBe("SIGKILL");

  const restarted = await start();
  const job = await waitForJob(restarted, key, jobId, { timeoutMs: 5000 });
  expect(job.status).toBe("failed");
  expect(job.failure_class).toBe("interrupted");
  expect(job).not.toHaveProperty("result");
  expect(job.error).toContain("not retried");
  expect(Date.parse(job.completed_at)).toBeGreaterThanOrEqual(Date.parse(running.started_at));
  // Recovered at start, before the server answered, and said so in its log.
  expect(restarted.stdout()).toContain("ended jobs interrupted by a previous stop");

  // Not retried: it is the only job, still failed a moment later.
  const listed = await call(restarted, key, "/v1/jobs/list", {});
  expect(listed.body.jobs.map((j: { job_id: string; status: string }) => [j.job_id, j.status])).toEqual([[jobId, "failed"]]);

  const deleted = await call(restarted, key, "/v1/credentials/delete", { id: credentialId });
  expect(deleted.status).toBe(200);
  expect((await call(restarted, key, "/v1/credentials/list")).body.credentials).toEqual([]);

  expect((await signalAndWait(restarted, "SIGTERM", 10_000)).code).toBe(0);
}, 40_000);
