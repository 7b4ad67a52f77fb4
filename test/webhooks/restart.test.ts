/**
 * The outbox survives a crash: a real `serve` child is SIGKILLed with one
 * delivery in flight, one waiting for its retry and one job running; started
 * again on the same database, it sends all three (the first two with the
 * same webhook-id as before the crash).
 */
import { afterAll, expect, test } from "bun:test";
import type { ServerProcess } from "../process-helpers";
import { call, FIXTURE_WORKFLOWS, killChild, serveDeployment, signalAndWait, waitForJob, waitForJobLog } from "../e2e/serve-child";
import { startReceiver, verifyLegacySignature, verifyStandardSignature, type Receiver } from "./support";

const deployment = serveDeployment({
  workflowsDir: FIXTURE_WORKFLOWS,
  env: {
    UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1",
    // An attempt in flight is leased for timeout + 1 s: 1.5 s after the crash it is due again.
    UNDERSTUDY_WEBHOOK_TIMEOUT_MS: "500",
    UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,2000,20",
  },
});
const children: ServerProcess[] = [];
const receivers: Receiver[] = [];

afterAll(async () => {
  for (const child of children) await killChild(child);
  for (const r of receivers) await r.close();
  deployment.remove();
});

async function start() {
  const server = await deployment.start();
  children.push(server);
  return server;
}

async function receiver(reply: Parameters<typeof startReceiver>[0]) {
  const r = await startReceiver(reply);
  receivers.push(r);
  return r;
}

async function deliveriesOf(server: ServerProcess, key: string, jobId: string) {
  const listed = await call(server, key, "/v1/webhooks/deliveries", { job_id: jobId });
  expect(listed.status).toBe(200);
  return listed.body.deliveries as any[];
}

async function waitForDelivery(server: ServerProcess, key: string, jobId: string, until: (d: any) => boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [d] = await deliveriesOf(server, key, jobId);
    if (d && until(d)) return d;
    if (Date.now() > deadline) throw new Error(`timed out waiting for the delivery of job ${jobId}; last seen: ${JSON.stringify(d)}`);
    await Bun.sleep(20);
  }
}

test("deliveries in flight or pending at SIGKILL, and the webhook of a job the crash interrupted, are sent after the restart", async () => {
  const key = await deployment.addTenant("acme");
  const server = await start();

  // In flight at the crash: the receiver holds the first request open.
  const inFlight = await receiver((_req, i) => (i === 0 ? { status: 200, hang: true } : { status: 200, body: "got it" }));
  // Pending at the crash: the first attempt failed, the retry is 2 s away.
  const retrying = await receiver((_req, i) => (i === 0 ? { status: 500, body: "later" } : { status: 200 }));
  // Interrupted: the job is running at the crash; its end is written at the next start.
  const interrupted = await receiver(() => ({ status: 200 }));

  const job = async (workflow: string, target: Receiver, secret: string, params: Record<string, unknown> = {}) => {
    const created = await call(server, key, "/v1/jobs/create", { workflow, params, callback_url: `${target.url}/hook`, callback_secret: secret });
    expect(created.status).toBe(200);
    return created.body.job_id as string;
  };
  const inFlightJob = await job("finishes-soon", inFlight, "secret-in-flight", { ms: 0 });
  const retryingJob = await job("finishes-soon", retrying, "secret-retrying-job", { ms: 0 });
  const blockedJob = await job("blocks", interrupted, "secret-interrupted");

  const [firstTry] = await inFlight.waitFor(1);
  await waitForDelivery(server, key, retryingJob, (d) => d.status === "pending" && d.attempts === 1 && d.last_status_code === 500);
  await waitForJobLog(server, key, blockedJob, `blocks: handler started for ${blockedJob}`);

  const killed = await signalAndWait(server, "SIGKILL", 5000);
  expect(killed.exited).toBe(true);
  expect(retrying.received).toHaveLength(1);
  expect(interrupted.received).toHaveLength(0);

  const restarted = await start();

  const [, secondTry] = await inFlight.waitFor(2);
  expect(secondTry!.headers["webhook-id"]).toBe(firstTry!.headers["webhook-id"]);
  expect(verifyStandardSignature("secret-in-flight", secondTry!)).toBe(true);
  expect(secondTry!.json).toMatchObject({ event: "job.completed", job_id: inFlightJob });
  expect(await waitForDelivery(restarted, key, inFlightJob, (d) => d.status === "succeeded")).toMatchObject({
    delivery_id: firstTry!.headers["webhook-id"],
    attempts: 2,
    response_excerpt: "got it",
  });

  const [before, after] = await retrying.waitFor(2);
  expect(after!.headers["webhook-id"]).toBe(before!.headers["webhook-id"]);
  expect(verifyLegacySignature("secret-retrying-job", after!)).toBe(true);
  expect(await waitForDelivery(restarted, key, retryingJob, (d) => d.status === "succeeded")).toMatchObject({ attempts: 2 });

  const [ended] = await interrupted.waitFor(1);
  const failed = await waitForJob(restarted, key, blockedJob);
  expect(failed.failure_class).toBe("interrupted");
  expect(ended!.json).toMatchObject({ event: "job.failed", job_id: blockedJob, status: "failed", error: failed.error });
  expect(verifyStandardSignature("secret-interrupted", ended!)).toBe(true);
  for (const r of [inFlight, retrying, interrupted]) {
    for (const q of r.received) expect(JSON.stringify(q.headers) + q.raw.toString()).not.toContain("secret-");
  }

  expect((await signalAndWait(restarted, "SIGTERM", 10_000)).code).toBe(0);
}, 60_000);
