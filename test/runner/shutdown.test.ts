import { afterAll, describe, expect, test } from "bun:test";
import type { ServerProcess } from "../process-helpers";
import { call, FIXTURE_WORKFLOWS, killChild, serveDeployment, signalAndWait, waitForJob, waitForJobLog, waitForStderr, type ServeDeployment } from "../e2e/serve-child";

// SIGTERM while a job runs, against the real `serve` child: running jobs get
// until UNDERSTUDY_SHUTDOWN_GRACE_MS to finish, the rest end as interrupted
// (their credential references released), and the process exits 0.

const EXIT_BOUND_MS = 10_000;
// Each test starts the server twice and waits out a shutdown.
const TEST_TIMEOUT_MS = 40_000;
const children: ServerProcess[] = [];
const deployments: ServeDeployment[] = [];

afterAll(async () => {
  for (const child of children) await killChild(child);
  for (const deployment of deployments) deployment.remove();
});

async function deploy(env: Record<string, string>) {
  const deployment = serveDeployment({ workflowsDir: FIXTURE_WORKFLOWS, env });
  deployments.push(deployment);
  const key = await deployment.addTenant("acme");
  const start = async () => {
    const server = await deployment.start();
    children.push(server);
    return server;
  };
  return { key, start };
}

describe("SIGTERM with a long shutdown grace", () => {
  test("a running job finishes, new connections are refused meanwhile, and the process exits 0", async () => {
    const { key, start } = await deploy({ UNDERSTUDY_SHUTDOWN_GRACE_MS: "60000" });
    const server = await start();
    const stored = await call(server, key, "/v1/credentials/create", { name: "password", value: "shutdown-grace-value" });
    expect(stored.status).toBe(200);

    const created = await call(server, key, "/v1/jobs/create", { workflow: "finishes-soon", params: { ms: 1000 } });
    expect(created.status).toBe(200);
    const jobId = created.body.job_id as string;
    await waitForJobLog(server, key, jobId, `finishes-soon: handler started for ${jobId}`);

    const signalledAt = Date.now();
    const exit = signalAndWait(server, "SIGTERM", EXIT_BOUND_MS);
    // Once the server says it is shutting down, it takes no new connections,
    // while the job goes on in the background.
    await waitForStderr(server, "received SIGTERM", 5000);
    const refused = await fetch(`${server.url}/healthz`).then(
      (response) => `answered ${response.status}`,
      () => "refused",
    );
    expect(refused).toBe("refused");

    const { exited, code } = await exit;
    expect(exited).toBe(true);
    expect(code).toBe(0);

    const restarted = await start();
    const job = await waitForJob(restarted, key, jobId);
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ finished: true, ms: 1000 });
    expect(job.failure_class).toBeNull();
    // It ended after the SIGTERM: the shutdown waited for it.
    expect(Date.parse(job.completed_at)).toBeGreaterThan(signalledAt);
    // Nothing was left for the restart to recover.
    expect(restarted.stdout()).not.toContain("ended jobs interrupted by a previous stop");

    const listed = await call(restarted, key, "/v1/credentials/list");
    const credentialId = listed.body.credentials.find((c: { name: string }) => c.name === "password").credential_id;
    expect((await call(restarted, key, "/v1/credentials/delete", { id: credentialId })).status).toBe(200);
    expect((await signalAndWait(restarted, "SIGTERM", EXIT_BOUND_MS)).code).toBe(0);
  }, TEST_TIMEOUT_MS);
});

describe("SIGTERM with a short shutdown grace", () => {
  test("a job that ignores its signal ends interrupted, its reference is released, and the process exits 0", async () => {
    const { key, start } = await deploy({ UNDERSTUDY_SHUTDOWN_GRACE_MS: "200", UNDERSTUDY_JOB_GRACE_MS: "200" });
    const server = await start();
    const stored = await call(server, key, "/v1/credentials/create", { name: "password", value: "shutdown-short-value" });
    expect(stored.status).toBe(200);
    const credentialId = stored.body.credential_id as string;

    const created = await call(server, key, "/v1/jobs/create", { workflow: "blocks", params: {} });
    expect(created.status).toBe(200);
    const jobId = created.body.job_id as string;
    await waitForJobLog(server, key, jobId, `blocks: handler started for ${jobId}`);
    // While the job runs, its reference holds the credential.
    const refused = await call(server, key, "/v1/credentials/delete", { id: credentialId });
    expect(refused.status).toBe(409);
    expect(refused.body.data.job_ids).toEqual([jobId]);

    // The handler never returns and its ten-minute timer is still pending:
    // it is told to stop at once (the job grace fills the shutdown grace) and
    // ended 200 ms after the signal, and the process must exit anyway.
    const { exited, code, ms } = await signalAndWait(server, "SIGTERM", 5000);
    expect(exited).toBe(true);
    expect(code).toBe(0);
    console.info(`shutdown with a job ignoring its signal: exited ${Math.round(ms)} ms after SIGTERM`);

    const restarted = await start();
    const job = await waitForJob(restarted, key, jobId);
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("interrupted");
    expect(job.completed_at).toEqual(expect.any(String));
    expect(job).not.toHaveProperty("result");
    // Ended by the shutdown itself, not by the crash recovery of the restart.
    expect(job.error).toContain("shut down");
    expect(restarted.stdout()).not.toContain("ended jobs interrupted by a previous stop");

    const deleted = await call(restarted, key, "/v1/credentials/delete", { id: credentialId });
    expect(deleted.status).toBe(200);
    await signalAndWait(restarted, "SIGTERM", EXIT_BOUND_MS);
  }, TEST_TIMEOUT_MS);
});

describe("SIGTERM: the shutdown grace is one budget, the job grace included", () => {
  // `docker stop` kills the container 10 s after SIGTERM. The shutdown grace
  // used to come first and the job grace after it (8 s + 5 s in the image):
  // a job ignoring its signal kept the process 13 s. Here a job grace far
  // longer than the shutdown grace must not keep it past the shutdown grace.
  test("a job ignoring its signal is ended within the shutdown grace even when the job grace is longer", async () => {
    const { key, start } = await deploy({ UNDERSTUDY_SHUTDOWN_GRACE_MS: "1000", UNDERSTUDY_JOB_GRACE_MS: "120000" });
    const server = await start();
    expect((await call(server, key, "/v1/credentials/create", { name: "password", value: "shutdown-budget-value" })).status).toBe(200);
    const created = await call(server, key, "/v1/jobs/create", { workflow: "blocks", params: {} });
    expect(created.status).toBe(200);
    const jobId = created.body.job_id as string;
    await waitForJobLog(server, key, jobId, `blocks: handler started for ${jobId}`);

    // A bound, not a timing: before, this process stayed for the 120 s job grace.
    const { exited, code } = await signalAndWait(server, "SIGTERM", EXIT_BOUND_MS);
    expect(exited).toBe(true);
    expect(code).toBe(0);

    const restarted = await start();
    const job = await waitForJob(restarted, key, jobId);
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("interrupted");
    expect(job.error).toContain("shut down");
    // Ended by the shutdown, not left for the restart to recover.
    expect(restarted.stdout()).not.toContain("ended jobs interrupted by a previous stop");
    await signalAndWait(restarted, "SIGTERM", EXIT_BOUND_MS);
  }, TEST_TIMEOUT_MS);
});
