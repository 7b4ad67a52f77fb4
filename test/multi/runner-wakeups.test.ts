/**
 * Wake-ups by LISTEN/NOTIFY (issue 11): with polling slowed to a minute, a
 * job queued by another client (a row inserted straight into the table, so
 * no instance was told in-process) still starts at once; and again after the
 * notification connection was cut (it reconnects).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { sql } from "kysely";
import { postJson } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

describeWithPostgres("runner wake-ups on PostgreSQL", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({
      instances: 1,
      workflowsDir: join(import.meta.dir, "..", "fixtures", "runner-workflows"),
      env: { UNDERSTUDY_WORKFLOW_ISOLATION: "none", UNDERSTUDY_RUNNER_POLL_MS: "60000", UNDERSTUDY_JOB_LEASE_MS: "1500" },
    });
  }, 60_000);
  afterAll(async () => cluster?.close());

  /** Queues a copy of a finished job by an INSERT of the test's own: only the database's NOTIFY can tell the instance. */
  const insertQueued = async (templateId: string) => {
    const { seq: _seq, ...template } = await cluster.store.db.selectFrom("jobs").selectAll().where("id", "=", templateId).executeTakeFirstOrThrow();
    const id = Bun.randomUUIDv7();
    await cluster.store.db
      .insertInto("jobs")
      .values({ ...template, id, status: "queued", result: null, started_at: null, completed_at: null, lease_owner: null, lease_expires_at: null, created_at: new Date().toISOString() })
      .execute();
    return id;
  };
  const statusWithin = async (id: string, ms: number) => {
    const deadline = Date.now() + ms;
    let status = "";
    while (Date.now() < deadline) {
      status = (await cluster.store.db.selectFrom("jobs").select("status").where("id", "=", id).executeTakeFirstOrThrow()).status;
      if (status === "completed") break;
      await Bun.sleep(10);
    }
    return status;
  };

  test("a job inserted by another client starts without waiting for the poll, also after the notification connection was cut", async () => {
    const [instance] = cluster.instances;
    const first = await postJson(instance!.url, "/v1/jobs/create", cluster.keys.alpha, { workflow: "noop" });
    expect(first.status).toBe(200);
    expect(await statusWithin(first.body.job_id, 5000)).toBe("completed");

    expect(await statusWithin(await insertQueued(first.body.job_id), 5000)).toBe("completed");

    const schema = (await sql<{ s: string }>`SELECT current_schema() AS s`.execute(cluster.store.db)).rows[0]!.s;
    const cut = await sql<{ n: number }>`
      SELECT COUNT(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = ${`understudy-runner-listen:${schema}`.slice(0, 63)}`.execute(cluster.store.db);
    expect(cut.rows[0]!.n).toBe(1);
    // Reconnected (bounded wait), it listens again.
    let back = 0;
    for (let i = 0; i < 200 && back === 0; i++) {
      await Bun.sleep(25);
      back = (await sql<{ n: number }>`SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE application_name = ${`understudy-runner-listen:${schema}`.slice(0, 63)}`.execute(cluster.store.db)).rows[0]!.n;
    }
    expect(back).toBe(1);
    expect(await statusWithin(await insertQueued(first.body.job_id), 5000)).toBe("completed");
    expect(instance!.stdout()).toContain("notification connection failed");
  }, 60_000);

  test("a cancel request that came without its NOTIFY is acted on at the next lease renewal", async () => {
    const [instance] = cluster.instances;
    const created = await postJson(instance!.url, "/v1/jobs/create", cluster.keys.alpha, { workflow: "slow", params: { ms: 60_000 } });
    expect(created.status).toBe(200);
    const id = created.body.job_id;
    for (let i = 0; i < 200; i++) {
      if ((await postJson(instance!.url, "/v1/jobs/get", cluster.keys.alpha, { id })).body.status === "running") break;
      await Bun.sleep(10);
    }
    // What /v1/jobs/cancel writes, without its pg_notify: only the renewal (every 500 ms here) can see it.
    await cluster.store.db.updateTable("jobs").set({ cancel_requested_at: new Date().toISOString() }).where("id", "=", id).execute();
    let job: any;
    for (let i = 0; i < 200; i++) {
      job = (await postJson(instance!.url, "/v1/jobs/get", cluster.keys.alpha, { id })).body;
      if (job.status !== "running") break;
      await Bun.sleep(25);
    }
    expect(job.status).toBe("cancelled");
  }, 30_000);
});
