/**
 * SIGKILL of one of three instances while it runs jobs (issue 11): once its
 * leases lapse, the other instances end its running jobs `interrupted`
 * (their end webhooks sent), with no restart, and finish the rest.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { postJson } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

const WORKFLOWS = join(import.meta.dir, "..", "fixtures", "runner-workflows");
const LEASE_MS = 3000;
const SECRET = "a-signing-secret-of-the-test";

describeWithPostgres("SIGKILL of one instance of three", () => {
  let cluster: Cluster;
  const received: { job_id: string; event: string; error: string | null }[] = [];
  let receiver: ReturnType<typeof Bun.serve>;
  beforeAll(async () => {
    // The jobs' callbacks go to a real receiver on 127.0.0.1.
    receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        received.push((await request.json()) as (typeof received)[number]);
        return new Response("ok");
      },
    });
    cluster = await startCluster({
      instances: 3,
      workflowsDir: WORKFLOWS,
      env: {
        UNDERSTUDY_WORKFLOW_ISOLATION: "none",
        UNDERSTUDY_CONCURRENCY: "4",
        UNDERSTUDY_JOB_LEASE_MS: String(LEASE_MS),
        UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "on",
      },
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    receiver?.stop(true);
  });

  test("its running jobs end interrupted within the lease, webhooks sent; the others finish the rest; nothing stays running", async () => {
    const ids: string[] = [];
    for (let n = 0; n < 36; n++) {
      const created = await postJson(cluster.instances[n % 3]!.url, "/v1/jobs/create", cluster.keys.alpha, {
        workflow: "slow",
        params: { ms: 1500 },
        callback_url: `http://127.0.0.1:${receiver.port}/hook`,
        callback_secret: SECRET,
      });
      expect(created.status).toBe(200);
      ids.push(created.body.job_id);
    }
    const victim = cluster.instances[0]!;
    const victimId = /"msg":"job runner started"[^\n]*"instance_id":"([^"]+)"/.exec(victim.stdout())?.[1];
    expect(victimId).toBeDefined();
    const runningOnVictim = () =>
      cluster.store.db.selectFrom("jobs").select("id").where("status", "=", "running").where("lease_owner", "=", victimId!).execute();
    let doomed: { id: string }[] = [];
    for (let i = 0; i < 200 && doomed.length === 0; i++) {
      doomed = await runningOnVictim();
      if (doomed.length === 0) await Bun.sleep(10);
    }
    expect(doomed.length).toBeGreaterThan(0);
    victim.child.kill("SIGKILL");
    await victim.child.exited;
    const killedAt = Date.now();
    // What it was running when it died (it may have claimed more just before).
    doomed = await runningOnVictim();
    const doomedIds = doomed.map((d) => d.id);

    const ended = async () =>
      cluster.store.db.selectFrom("jobs").select(["id", "status", "failure_class", "completed_at"]).where("id", "in", doomedIds).execute();
    let rows = await ended();
    for (let i = 0; i < 400 && rows.some((r) => r.status === "running"); i++) {
      await Bun.sleep(25);
      rows = await ended();
    }
    const endedAfterMs = Date.now() - killedAt;
    for (const row of rows) {
      expect(row.status).toBe("failed");
      expect(row.failure_class).toBe("interrupted");
    }
    // The lease, plus a renewal period and a margin.
    expect(endedAfterMs).toBeLessThan(LEASE_MS + 3000);

    // The two others go on: every job ends, none stays queued or running.
    let counts: Record<string, number> = {};
    for (let i = 0; i < 600; i++) {
      const found = await cluster.store.db.selectFrom("jobs").select("status").select((eb) => eb.fn.countAll<number>().as("n")).groupBy("status").execute();
      counts = Object.fromEntries(found.map((r) => [r.status, Number(r.n)]));
      if (!counts.queued && !counts.running && !counts.starting_browser) break;
      await Bun.sleep(25);
    }
    expect(counts).toEqual({ completed: 36 - doomedIds.length, failed: doomedIds.length });
    for (const instance of cluster.instances.slice(1)) {
      expect((await postJson(instance.url, "/v1/jobs/get", cluster.keys.alpha, { id: ids.at(-1) })).status).toBe(200);
    }

    // Each interrupted job's end reached its callback (a real receiver).
    for (let i = 0; i < 400 && !doomedIds.every((id) => received.some((r) => r.job_id === id)); i++) await Bun.sleep(25);
    for (const id of doomedIds) {
      const hook = received.filter((r) => r.job_id === id);
      expect(hook.length).toBeGreaterThanOrEqual(1);
      expect(hook[0]!.event).toBe("job.failed");
    }
    console.log(`NOTE: ${doomedIds.length} jobs of the killed instance ended interrupted ${endedAfterMs} ms after the SIGKILL (lease ${LEASE_MS} ms)`);
  }, 90_000);
});
