/**
 * The scheduler, ticked by hand with a clock the test sets: a fire queues one
 * job carrying the schedule's settings; overlap skip and allow; catch-up after
 * downtime fires once; a disabled schedule never fires; DST through a real
 * tick; a job's end updates its schedule; thousands due at once.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { jobParamsCredentialsContext } from "../../src/runner/runner";
import { Scheduler } from "../../src/schedules/scheduler";
import { insertSchedule } from "../../src/schedules/store";
import { workflow } from "../../src/workflows/define";
import { memoryLogger } from "../../src/log";
import { expectOk } from "../http/wire";
import { eventually, waitForEnd } from "../jobs/support";
import { createSchedule, expectJobCount, getSchedule, jobsOf, scheduleHarness, type ScheduleHarness } from "./support";

const echo = workflow("sched-echo", {
  credentials: ["token"],
  handler: (_ctx, input: any) => ({ n: input.n, has_token: input.credentials?.token === "tok-value" }),
});
const flaky = workflow("sched-flaky", {
  handler: (_ctx, input: any) => {
    if (input.fail) throw new Error("the portal said no");
    return { ok: true };
  },
});
const workflows = [echo, flaky];

let harness: ScheduleHarness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function start(at: string, runnerPaused = true) {
  harness = await scheduleHarness({ start: at, workflows, runnerPaused });
  return harness;
}

describe("a fire", () => {
  test("queues exactly one job with the schedule's id, timeout, params, credentials, run options and callback", async () => {
    const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
    const schedule = await createSchedule(server, {
      workflow: "sched-echo",
      cron_expr: "*/5 * * * *",
      params: { n: 1, credentials: { token: "tok-value" } },
      timeout_seconds: 120,
      start_url: "https://portal.example.com/login",
      viewport: { width: 1280, height: 800 },
      callback_url: "https://hooks.example.com/done",
      callback_secret: "cb-secret-value-of-the-schedule",
      residential_proxy: true,
    });
    expect(schedule.next_fire_at).toBe("2026-01-05T10:05:00.000Z");
    expect(schedule.params).toEqual({ n: 1 });

    clock.set("2026-01-05T10:04:59.999Z");
    expect(await scheduler.tick()).toEqual({ fired: 0, skipped: 0, failed: 0 });
    await expectJobCount(server, schedule.id, 0);

    clock.set("2026-01-05T10:05:00.250Z");
    expect(await scheduler.tick()).toEqual({ fired: 1, skipped: 0, failed: 0 });
    const [job, ...more] = await jobsOf(server, schedule.id);
    expect(more).toEqual([]);
    expect(job!.status).toBe("queued");
    expect(job!.tenant_id).toBe(server.tenants.alpha);
    expect(job!.workflow).toBe("sched-echo");
    expect(job!.timeout_seconds).toBe(120);
    expect(JSON.parse(job!.params)).toEqual({ n: 1 });
    expect(job!.callback_url).toBe("https://hooks.example.com/done");
    expect(job!.sealed_callback_secret).not.toBeNull();
    expect(job!.created_at).toBe("2026-01-05T10:05:00.250Z");
    expect(JSON.parse(job!.options)).toMatchObject({
      start_url: "https://portal.example.com/login",
      viewport: { width: 1280, height: 800 },
      residential_proxy: true,
      caller_credential_names: ["token"],
    });
    const credentials = await server.server.vault.openForTenant(
      server.db,
      server.tenants.alpha,
      jobParamsCredentialsContext(job!.id),
      job!.sealed_params_credentials!,
    );
    expect(JSON.parse(credentials)).toEqual({ token: "tok-value" });

    // The job is the API's like any other, and says where it came from.
    const viaApi = expectOk(await server.post("/v1/jobs/get", { id: job!.id }), false);
    expect(viaApi.schedule_id).toBe(schedule.id);
    expect(viaApi.timeout_seconds).toBe(120);

    const after = await getSchedule(server, schedule.id);
    expect(after).toMatchObject({
      last_fire_at: "2026-01-05T10:05:00.250Z",
      last_job_id: job!.id,
      next_fire_at: "2026-01-05T10:10:00.000Z",
      last_error: null,
      consecutive_failures: 0,
    });
    expect(after.updated_at).toBe(schedule.updated_at);

    // The same instant again: nothing more is due.
    expect(await scheduler.tick()).toEqual({ fired: 0, skipped: 0, failed: 0 });
    await expectJobCount(server, schedule.id, 1);
  });

  test("the job runs with the schedule's sealed credentials injected", async () => {
    const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z", false);
    const schedule = await createSchedule(server, {
      workflow: "sched-echo",
      cron_expr: "* * * * *",
      params: { n: 7, credentials: { token: "tok-value" } },
    });
    clock.set("2026-01-05T10:01:00Z");
    await scheduler.tick();
    const [job] = await jobsOf(server, schedule.id);
    const ended = await waitForEnd(server, job!.id);
    expect(ended.status).toBe("completed");
    expect(ended.result).toEqual({ n: 7, has_token: true });
  });
});

describe("overlap", () => {
  test('"skip" (default): no fire while the previous job is queued, and last_error says so', async () => {
    const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
    const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *" });
    expect(schedule.overlap_policy).toBe("skip");
    clock.set("2026-01-05T10:01:00Z");
    expect((await scheduler.tick()).fired).toBe(1);
    const [first] = await jobsOf(server, schedule.id);

    clock.set("2026-01-05T10:02:00Z");
    expect(await scheduler.tick()).toEqual({ fired: 0, skipped: 1, failed: 0 });
    await expectJobCount(server, schedule.id, 1);
    const skipped = await getSchedule(server, schedule.id);
    expect(skipped.last_error).toBe(
      `Skipped the fire due at 2026-01-05T10:02:00.000Z: the previous job ${first!.id} is still queued and overlap_policy is "skip".`,
    );
    expect(skipped.next_fire_at).toBe("2026-01-05T10:03:00.000Z");
    expect(skipped.last_job_id).toBe(first!.id);
    expect(skipped.last_fire_at).toBe("2026-01-05T10:01:00.000Z");
    expect(skipped.consecutive_failures).toBe(0);

    // Once the previous job has ended, the next fire goes ahead.
    expectOk(await server.post("/v1/jobs/cancel", { id: first!.id }), false);
    clock.set("2026-01-05T10:03:00Z");
    expect((await scheduler.tick()).fired).toBe(1);
    await expectJobCount(server, schedule.id, 2);
  });

  test('"allow": fires while the previous job is still queued', async () => {
    const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
    const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *", overlap_policy: "allow" });
    for (const at of ["2026-01-05T10:01:00Z", "2026-01-05T10:02:00Z", "2026-01-05T10:03:00Z"]) {
      clock.set(at);
      expect(await scheduler.tick()).toEqual({ fired: 1, skipped: 0, failed: 0 });
    }
    const jobs = await jobsOf(server, schedule.id);
    expect(jobs.map((j) => j.status)).toEqual(["queued", "queued", "queued"]);
    expect((await getSchedule(server, schedule.id)).last_job_id).toBe(jobs[2]!.id);
  });
});

test("catch-up: after downtime the missed fires collapse into one run, then the schedule goes on with its cron", async () => {
  const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
  const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "*/10 * * * *" });
  expect(schedule.next_fire_at).toBe("2026-01-05T10:10:00.000Z");

  // Down from before 10:10 until 13:37: twenty fires were missed.
  clock.set("2026-01-05T13:37:12Z");
  expect(await scheduler.tick()).toEqual({ fired: 1, skipped: 0, failed: 0 });
  await expectJobCount(server, schedule.id, 1);
  const caughtUp = await getSchedule(server, schedule.id);
  expect(caughtUp.last_fire_at).toBe("2026-01-05T13:37:12.000Z");
  expect(caughtUp.next_fire_at).toBe("2026-01-05T13:40:00.000Z");

  clock.set("2026-01-05T13:39:59Z");
  expect((await scheduler.tick()).fired).toBe(0);
  await expectJobCount(server, schedule.id, 1);
});

test("a disabled schedule never fires; enabling it computes next_fire_at from now, with no catch-up", async () => {
  const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
  const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *", enabled: false });
  expect(schedule.enabled).toBe(false);
  expect(schedule).not.toHaveProperty("next_fire_at");
  for (const at of ["2026-01-05T10:01:00Z", "2026-01-06T00:00:00Z", "2026-02-01T00:00:00Z"]) {
    clock.set(at);
    expect(await scheduler.tick()).toEqual({ fired: 0, skipped: 0, failed: 0 });
  }
  await expectJobCount(server, schedule.id, 0);

  clock.set("2026-02-01T00:00:30Z");
  const enabled = expectOk(await server.post("/v1/schedules/update", { id: schedule.id, enabled: true }), false).schedule;
  expect(enabled.next_fire_at).toBe("2026-02-01T00:01:00.000Z");
  expect((await scheduler.tick()).fired).toBe(0);

  const disabled = expectOk(await server.post("/v1/schedules/update", { id: schedule.id, enabled: false }), false).schedule;
  expect(disabled).not.toHaveProperty("next_fire_at");
  clock.set("2026-02-01T00:05:00Z");
  expect((await scheduler.tick()).fired).toBe(0);
  await expectJobCount(server, schedule.id, 0);
});

describe("daylight saving through a real tick", () => {
  test("America/New_York: 02:30 on the spring-forward day fires once, at 03:00 EDT", async () => {
    const { server, clock, scheduler } = await start("2026-03-07T12:00:00Z");
    const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "30 2 * * *", timezone: "America/New_York" });
    expect(schedule.next_fire_at).toBe("2026-03-08T07:00:00.000Z");
    clock.set("2026-03-08T07:00:00.100Z");
    expect((await scheduler.tick()).fired).toBe(1);
    expect((await getSchedule(server, schedule.id)).next_fire_at).toBe("2026-03-09T06:30:00.000Z");
  });

  test("Europe/Berlin: 02:30 on the fall-back day fires once, not again at the second 02:30", async () => {
    const { server, clock, scheduler } = await start("2026-10-24T12:00:00Z");
    const schedule = await createSchedule(server, {
      workflow: "sched-echo",
      cron_expr: "30 2 * * *",
      timezone: "Europe/Berlin",
      overlap_policy: "allow",
    });
    expect(schedule.next_fire_at).toBe("2026-10-25T00:30:00.000Z");
    clock.set("2026-10-25T00:30:00.100Z");
    expect((await scheduler.tick()).fired).toBe(1);
    clock.set("2026-10-25T01:30:00.100Z"); // 02:30 CET, the second one
    expect((await scheduler.tick()).fired).toBe(0);
    expect((await getSchedule(server, schedule.id)).next_fire_at).toBe("2026-10-26T01:30:00.000Z");
    await expectJobCount(server, schedule.id, 1);
  });

  test("Australia/Lord_Howe: every 15 minutes through the repeated half hour fires each wall-clock time once", async () => {
    const { server, clock, scheduler } = await start("2026-04-04T14:20:00Z");
    const schedule = await createSchedule(server, {
      workflow: "sched-echo",
      cron_expr: "*/15 * * * *",
      timezone: "Australia/Lord_Howe",
      overlap_policy: "allow",
    });
    const fired: string[] = [];
    // Every minute from 14:20Z (01:20 LHDT) to 15:50Z (02:20 LHST), ticking as a live server would.
    for (let minute = 0; minute <= 90; minute++) {
      clock.set(new Date(Date.parse("2026-04-04T14:20:00.050Z") + minute * 60_000).toISOString());
      if ((await scheduler.tick()).fired > 0) fired.push(clock.now().toISOString());
    }
    expect(fired).toEqual([
      "2026-04-04T14:30:00.050Z", // 01:30 LHDT
      "2026-04-04T14:45:00.050Z", // 01:45 LHDT; 01:30 and 01:45 LHST (15:00Z, 15:15Z) do not fire
      "2026-04-04T15:30:00.050Z", // 02:00 LHST
      "2026-04-04T15:45:00.050Z",
    ]);
    await expectJobCount(server, schedule.id, 4);
  });
});

describe("a job's end updates its schedule", () => {
  test("failures count up with the job's error as last_error; a success resets both", async () => {
    const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z", false);
    const schedule = await createSchedule(server, { workflow: "sched-flaky", cron_expr: "* * * * *", params: { fail: true } });
    for (const [i, at] of ["2026-01-05T10:01:00Z", "2026-01-05T10:02:00Z"].entries()) {
      clock.set(at);
      expect((await scheduler.tick()).fired).toBe(1);
      const job = (await jobsOf(server, schedule.id))[i]!;
      expect((await waitForEnd(server, job.id)).status).toBe("failed");
      const after = await getSchedule(server, schedule.id);
      expect(after.consecutive_failures).toBe(i + 1);
      expect(after.last_error).toContain(`Job ${job.id} failed (error)`);
      expect(after.last_error).toContain("the portal said no");
    }

    expectOk(await server.post("/v1/schedules/update", { id: schedule.id, params: { fail: false } }), false);
    clock.set("2026-01-05T10:03:00Z");
    expect((await scheduler.tick()).fired).toBe(1);
    const job = (await jobsOf(server, schedule.id))[2]!;
    expect((await waitForEnd(server, job.id)).status).toBe("completed");
    const after = await getSchedule(server, schedule.id);
    expect(after.consecutive_failures).toBe(0);
    expect(after.last_error).toBeNull();
  });

  test("a cancelled job counts as a failure", async () => {
    const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
    const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *" });
    clock.set("2026-01-05T10:01:00Z");
    await scheduler.tick();
    const [job] = await jobsOf(server, schedule.id);
    expectOk(await server.post("/v1/jobs/cancel", { id: job!.id }), false);
    const after = await getSchedule(server, schedule.id);
    expect(after.consecutive_failures).toBe(1);
    expect(after.last_error).toBe(`Job ${job!.id} cancelled (cancelled): The job was cancelled before it started.`);
  });
});

test("a fire that cannot queue its job records last_error, counts a failure and advances", async () => {
  const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
  const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *" });
  // The workflow was removed from the server after the schedule was made.
  await server.db.updateTable("schedules").set({ workflow: "retired-workflow" }).where("id", "=", schedule.id).execute();
  clock.set("2026-01-05T10:01:00Z");
  expect(await scheduler.tick()).toEqual({ fired: 0, skipped: 0, failed: 1 });
  await expectJobCount(server, schedule.id, 0);
  const after = await getSchedule(server, schedule.id);
  expect(after.last_error).toContain('The fire due at 2026-01-05T10:01:00.000Z could not queue a job: Workflow "retired-workflow" not found.');
  expect(after.consecutive_failures).toBe(1);
  expect(after.next_fire_at).toBe("2026-01-05T10:02:00.000Z");
  expect(after.last_fire_at).toBeNull();
});

test("thousands due at once: each schedule fires exactly once, over several transactions", async () => {
  const { server, clock, scheduler } = await start("2026-01-05T10:00:30Z");
  const template = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *", overlap_policy: "allow" });
  const row = await server.db.selectFrom("schedules").selectAll().where("id", "=", template.id).executeTakeFirstOrThrow();
  const count = 1234;
  for (let i = 1; i < count; i++) await insertSchedule(server.db, { ...row, id: crypto.randomUUID() });
  clock.set("2026-01-05T10:01:00Z");
  expect(await scheduler.tick()).toEqual({ fired: count, skipped: 0, failed: 0 });
  const jobs = await server.db.selectFrom("jobs").select(["schedule_id"]).execute();
  expect(jobs.length).toBe(count);
  expect(new Set(jobs.map((j) => j.schedule_id)).size).toBe(count);
  const rows = await server.db.selectFrom("schedules").select(["next_fire_at", "last_job_id"]).execute();
  expect(rows.every((r) => r.next_fire_at === "2026-01-05T10:02:00.000Z" && r.last_job_id !== null)).toBe(true);
});

test("started, the scheduler fires a due schedule on its own timer; stopped, it fires no more", async () => {
  const { server, clock } = await start("2026-01-05T10:00:30Z");
  const schedule = await createSchedule(server, { workflow: "sched-echo", cron_expr: "* * * * *", overlap_policy: "allow" });
  const log = memoryLogger();
  const scheduler = new Scheduler({
    db: server.db,
    vault: server.server.vault,
    clock,
    newId: server.deps.newId,
    log,
    catalog: server.deps.catalog,
    runner: server.runner,
    config: { schedules: { tickMs: 20 } },
  });
  clock.set("2026-01-05T10:01:00Z");
  scheduler.start();
  await eventually("the timer fired the schedule", async () => (await jobsOf(server, schedule.id)).length === 1);
  await scheduler.stop();
  clock.set("2026-01-05T10:02:00Z");
  await Bun.sleep(60); // three tick periods: a stopped scheduler must not look again
  await expectJobCount(server, schedule.id, 1);
  expect(log.lines.some((line) => line.includes('"msg":"schedules fired"') && line.includes('"fired":1'))).toBe(true);
});
