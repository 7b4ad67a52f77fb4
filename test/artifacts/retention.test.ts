import { afterAll, beforeAll, expect, test } from "bun:test";
import { pruneOnce } from "../../src/artifacts/retention";
import { PRUNE_BATCH } from "../../src/artifacts/store";
import { loadConfig } from "../../src/config";
import { workflow } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";
import { createJob, FAST_ENV, gate, waitForEnd, waitForRunning } from "../jobs/support";

// Retention (README "Job artifacts"): old artifacts, log lines of jobs that
// ended long ago and finished webhook deliveries are deleted; recent ones,
// and those of running jobs and pending deliveries, are kept. Old rows are
// made by moving their times back in the database.

const DAY = 24 * 60 * 60 * 1000;
const daysAgo = (days: number) => new Date(Date.now() - days * DAY).toISOString();
const hold = gate();

const workflows = [
  workflow("ret-logs", {
    async handler(ctx) {
      ctx.log.info("a line to keep or prune");
      return null;
    },
  }),
  workflow("ret-holds", {
    async handler(ctx) {
      ctx.log.info("a running job's line");
      await hold.promise;
      return null;
    },
  }),
];

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows, env: FAST_ENV });
});
afterAll(async () => {
  hold.open();
  await server.close();
});

const config = (overrides: Partial<ReturnType<typeof loadConfig>["artifacts"]> = {}) => ({ ...loadConfig({}).artifacts, ...overrides });

async function addArtifact(tenant: "alpha" | "beta", jobId: string, createdAt: string, size = 100): Promise<string> {
  const id = crypto.randomUUID();
  await server.db
    .insertInto("job_artifacts")
    .values({ id, tenant_id: server.tenants[tenant], job_id: jobId, kind: "screenshot", content_type: "image/png", size_bytes: size, bytes: new Uint8Array(size), created_at: createdAt })
    .execute();
  return id;
}

async function addDelivery(jobId: string, status: string, completedAt: string | null): Promise<string> {
  const id = crypto.randomUUID();
  await server.db
    .insertInto("webhook_deliveries")
    .values({
      id,
      tenant_id: server.tenants.alpha,
      job_id: jobId,
      endpoint_id: null,
      url: "http://192.0.2.1/hook",
      event: "job.completed",
      payload: "{}",
      status,
      attempts: 1,
      // A pending one is not due: the delivery worker leaves it alone.
      next_attempt_at: status === "pending" ? "2999-01-01T00:00:00.000Z" : null,
      last_status_code: null,
      last_error: null,
      last_duration_ms: null,
      response_excerpt: null,
      created_at: completedAt ?? daysAgo(60),
      updated_at: completedAt ?? daysAgo(60),
      completed_at: completedAt,
    })
    .execute();
  return id;
}

const logCount = async (jobId: string) => (await server.db.selectFrom("job_logs").select("id").where("job_id", "=", jobId).execute()).length;
const artifactIds = async () => (await server.db.selectFrom("job_artifacts").select("id").orderBy("created_at").execute()).map((r) => r.id);
const deliveryIds = async () => (await server.db.selectFrom("webhook_deliveries").select("id").execute()).map((r) => r.id).sort();

test("pruning removes old artifacts, old finished jobs' logs and old finished deliveries, and keeps recent ones, running jobs' logs and pending deliveries", async () => {
  const oldJob = await createJob(server, { workflow: "ret-logs" });
  const recentJob = await createJob(server, { workflow: "ret-logs" });
  const running = await createJob(server, { workflow: "ret-holds" });
  await waitForEnd(server, oldJob);
  await waitForEnd(server, recentJob);
  await waitForRunning(server, running);
  for (let i = 0; i < 100 && (await logCount(running)) === 0; i++) await Bun.sleep(10);
  await server.db.updateTable("jobs").set({ completed_at: daysAgo(31) }).where("id", "=", oldJob).execute();
  // More old lines than one batch: pruning goes on batch after batch.
  const many = Array.from({ length: PRUNE_BATCH + 10 }, (_, i) => ({
    job_id: oldJob,
    tenant_id: server.tenants.alpha,
    workflow: "ret-logs",
    level: "info",
    message: `old line ${i}`,
    timestamp: daysAgo(31),
  }));
  for (let i = 0; i < many.length; i += 100) await server.db.insertInto("job_logs").values(many.slice(i, i + 100)).execute();
  expect(await logCount(oldJob)).toBe(PRUNE_BATCH + 11);
  expect(await logCount(recentJob)).toBe(1);
  expect(await logCount(running)).toBeGreaterThan(0);

  const oldArtifact = await addArtifact("alpha", oldJob, daysAgo(8));
  const recentArtifact = await addArtifact("alpha", recentJob, daysAgo(1));
  const oldSucceeded = await addDelivery(oldJob, "succeeded", daysAgo(31));
  const oldFailed = await addDelivery(oldJob, "failed", daysAgo(45));
  const recentSucceeded = await addDelivery(recentJob, "succeeded", daysAgo(2));
  const oldPending = await addDelivery(oldJob, "pending", null);

  const counts = await pruneOnce(server.db, { now: () => new Date() }, config());
  expect(counts).toEqual({ artifacts: 1, logs: PRUNE_BATCH + 11, deliveries: 2, recordings: 0 });
  expect(await logCount(oldJob)).toBe(0);
  expect(await logCount(recentJob)).toBe(1);
  expect(await logCount(running)).toBeGreaterThan(0);
  expect(await artifactIds()).toEqual([recentArtifact]);
  expect(await deliveryIds()).toEqual([recentSucceeded, oldPending].sort());
  expect(await artifactIds()).not.toContain(oldArtifact);
  expect(await deliveryIds()).not.toContain(oldSucceeded);
  expect(await deliveryIds()).not.toContain(oldFailed);

  // A clock a month on: the recent rows are old now too, the running job's lines are still kept.
  const later = await pruneOnce(server.db, { now: () => new Date(Date.now() + 40 * DAY) }, config());
  expect(later).toEqual({ artifacts: 1, logs: 1, deliveries: 1, recordings: 0 });
  expect(await logCount(running)).toBeGreaterThan(0);
  expect(await deliveryIds()).toEqual([oldPending]);

  // 0 keeps everything.
  await addArtifact("alpha", recentJob, daysAgo(100));
  expect(await pruneOnce(server.db, { now: () => new Date() }, config({ retentionDays: 0, logRetentionDays: 0, deliveryRetentionDays: 0 }))).toEqual({
    artifacts: 0,
    logs: 0,
    deliveries: 0,
    recordings: 0,
  });
  await server.db.deleteFrom("job_artifacts").execute();
  hold.open();
  await waitForEnd(server, running);
});

test("past the size cap, a tenant's oldest artifacts go first; another tenant's are untouched", async () => {
  await server.db.deleteFrom("job_artifacts").execute();
  const job = await createJob(server, { workflow: "ret-logs" });
  const betaJob = await createJob(server, { workflow: "ret-logs" }, server.keys.beta);
  await waitForEnd(server, job);
  await waitForEnd(server, betaJob, server.keys.beta);
  const oldest = await addArtifact("alpha", job, daysAgo(3));
  const middle = await addArtifact("alpha", job, daysAgo(2));
  const newest = await addArtifact("alpha", job, daysAgo(1));
  const beta = await addArtifact("beta", betaJob, daysAgo(3));
  const counts = await pruneOnce(server.db, { now: () => new Date() }, config({ maxBytesPerTenant: 250 }));
  expect(counts.artifacts).toBe(1);
  expect(await artifactIds()).toEqual([beta, middle, newest]);
  expect(await artifactIds()).not.toContain(oldest);
});

test("the server's pruner runs (at start and on its interval) and stops with the server", async () => {
  const own = await startTestServer({ workflows, env: { ...FAST_ENV, UNDERSTUDY_PRUNE_INTERVAL_MS: "50" } });
  try {
    const job = await createJob(own, { workflow: "ret-logs" });
    await waitForEnd(own, job);
    await own.db.updateTable("jobs").set({ completed_at: daysAgo(31) }).where("id", "=", job).execute();
    let left = 1;
    for (let i = 0; i < 200 && left > 0; i++) {
      await Bun.sleep(20);
      left = (await own.db.selectFrom("job_logs").select("id").where("job_id", "=", job).execute()).length;
    }
    expect(left).toBe(0);
  } finally {
    await own.close();
  }
});
