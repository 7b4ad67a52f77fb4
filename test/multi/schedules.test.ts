import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { postJson } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

/**
 * 500 schedules due every minute, 3 instances ticking on one PostgreSQL: each
 * due minute queues exactly one job per schedule, also after one instance is
 * SIGKILLed. Three minutes of cron would take three real minutes, so the
 * instances' schedulers run on the test-only sped-up clock
 * (UNDERSTUDY_TEST_ONLY_SCHEDULER_CLOCK): SPEED fake seconds per real second,
 * the same fake time in every process. Jobs' created_at is the scheduler's
 * (fake) time of the fire.
 */
const SCHEDULES = 500;
/** UNDERSTUDY_TEST_SCHEDULE_SPEED=1 runs it in real time (about MINUTES + 1 real minutes), to measure real fire lag. */
const SPEED = Number(process.env.UNDERSTUDY_TEST_SCHEDULE_SPEED ?? 20);
const MINUTE = 60_000;
const MINUTES = Number(process.env.UNDERSTUDY_TEST_SCHEDULE_MINUTES ?? 3);

describeWithPostgres("schedules on several instances", () => {
  let cluster: Cluster;
  const originMs = Date.now();
  const fakeNow = () => originMs + (Date.now() - originMs) * SPEED;
  beforeAll(async () => {
    cluster = await startCluster({
      instances: 3,
      workflowsDir: join(import.meta.dir, "..", "fixtures", "worker-workflows"),
      env: SPEED === 1 ? {} : { UNDERSTUDY_TEST_ONLY_SCHEDULER_CLOCK: `${originMs},${SPEED}`, UNDERSTUDY_SCHEDULER_TICK_MS: "50" },
    });
  }, 60_000);
  afterAll(async () => cluster?.close());

  test(`${SCHEDULES} schedules due each minute fire exactly once per due minute for ${MINUTES} minutes across 3 instances, one SIGKILLed midway`, async () => {
    const [a, b, c] = cluster.instances;
    // Created through all three instances, a few at a time.
    let next = 0;
    const create = async () => {
      while (next < SCHEDULES) {
        const n = next++;
        const instance = [a!, b!, c!][n % 3]!;
        const created = await postJson(instance.url, "/v1/schedules/create", cluster.keys.alpha, {
          workflow: "quick",
          cron_expr: "* * * * *",
          overlap_policy: "allow",
        });
        expect(created.status).toBe(200);
      }
    };
    await Promise.all(Array.from({ length: 8 }, create));
    // The first whole minute every schedule is surely due in (a schedule created
    // late fires once, late, then on the minute).
    const firstMinute = Math.ceil((fakeNow() + 5_000) / MINUTE) * MINUTE;
    const lastMinute = firstMinute + (MINUTES - 1) * MINUTE;
    const { db } = cluster.store;

    const waitUntilFired = async (minute: number) => {
      const deadline = Date.now() + 30_000 + (minute - fakeNow()) / SPEED;
      for (;;) {
        const row = await db
          .selectFrom("schedules")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .where("next_fire_at", "<=", new Date(minute).toISOString())
          .executeTakeFirstOrThrow();
        if (fakeNow() > minute && Number(row.n) === 0) return;
        if (Date.now() > deadline) throw new Error(`schedules due at ${new Date(minute).toISOString()} did not all fire: ${row.n} left`);
        await Bun.sleep(20);
      }
    };
    await waitUntilFired(firstMinute);
    // An instance dies with the first minute fired: the other two fire the rest.
    a!.child.kill("SIGKILL");
    await a!.child.exited;
    await waitUntilFired(lastMinute);

    const jobs = await db.selectFrom("jobs").select(["schedule_id", "created_at"]).where("schedule_id", "is not", null).execute();
    const fires = new Map<string, number>();
    const lagsMs: number[] = [];
    for (const job of jobs) {
      const at = Date.parse(job.created_at);
      const minute = Math.floor(at / MINUTE) * MINUTE;
      const key = `${job.schedule_id} ${minute}`;
      fires.set(key, (fires.get(key) ?? 0) + 1);
      if (minute >= firstMinute && minute <= lastMinute) lagsMs.push(at - minute);
    }
    // Counted by the minute of the fire's time: in the window every fire is
    // on time (lag well under a minute), so that minute is its due minute.
    // Before it, a schedule created with the fake clock ahead fires once late
    // and then on the minute, which may share a clock minute.
    const twice = [...fires].filter(([key, n]) => n > 1 && Number(key.split(" ")[1]) >= firstMinute);
    expect(twice).toEqual([]);
    const schedules = await db.selectFrom("schedules").select("id").execute();
    expect(schedules.length).toBe(SCHEDULES);
    const missing: string[] = [];
    for (const { id } of schedules) {
      for (let minute = firstMinute; minute <= lastMinute; minute += MINUTE) {
        if (fires.get(`${id} ${minute}`) !== 1) missing.push(`${id} ${new Date(minute).toISOString()}`);
      }
    }
    expect(missing).toEqual([]);
    expect(lagsMs.length).toBe(SCHEDULES * MINUTES);
    lagsMs.sort((x, y) => x - y);
    const at = (q: number) => lagsMs[Math.min(lagsMs.length - 1, Math.floor(q * lagsMs.length))]!;
    // Fake seconds; divided by SPEED they are real time.
    console.log(
      `schedule fires: ${lagsMs.length} in ${MINUTES} due minutes (${jobs.length} scheduled jobs in all); ` +
        `lag p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${lagsMs.at(-1)} ms of scheduler time (x${SPEED}: real p50 ${(at(0.5) / SPEED).toFixed(1)} ms, max ${(lagsMs.at(-1)! / SPEED).toFixed(1)} ms)`,
    );
  }, 90_000 + ((MINUTES + 1) * MINUTE) / SPEED);
});
