/**
 * The Schedules page over real HTTP: the cron in words, the next fires as
 * wall time in the schedule's own zone, enable/disable, trigger now (a job
 * and its last outcome), tenant isolation, and the CSRF check.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { createSchedule, getSchedule, jobsOf, scheduleHarness, type ScheduleHarness } from "../schedules/support";
import { followFlash, signIn, type UiClient } from "./support";

let harness: ScheduleHarness;
let alpha: UiClient;
let beta: UiClient;

beforeAll(async () => {
  // Monday 5 January 2026, 10:00 UTC (11:00 in Paris): the next 09:00 in Paris is on the 6th.
  harness = await scheduleHarness({ start: "2026-01-05T10:00:30Z", workflows: [workflow("ui-sched", { handler: () => "ok" })] });
  alpha = await signIn(harness.server, harness.server.keys.alpha);
  beta = await signIn(harness.server, harness.server.keys.beta);
});
afterAll(async () => harness.close());

/** The table row of one schedule on the page. */
function rowOf(page: string, id: string): string {
  const start = page.indexOf(`<tr id="schedule-${id}" data-schedule="${id}"`);
  expect(start).toBeGreaterThan(-1);
  return page.slice(start, page.indexOf("</tr>", start));
}

describe("the schedules page", () => {
  test("shows the cron in words and the next three fires as wall time in the schedule's zone", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "0 9 * * *", timezone: "Europe/Paris" });
    const page = await alpha.get("/ui/schedules");
    expect(page.status).toBe(200);
    expect(page.text).toContain("<h2");
    const row = rowOf(page.text, schedule.id);
    expect(row).toContain("At 09:00");
    expect(row).toContain('<code data-cron="">0 9 * * *</code>');
    expect(row).toContain("Europe/Paris");
    // 09:00 in Paris in January is 08:00 UTC.
    expect(row).toContain('datetime="2026-01-06T08:00:00.000Z">6 Jan 2026, 09:00 Europe/Paris</time>');
    expect(row).toContain('datetime="2026-01-07T08:00:00.000Z">7 Jan 2026, 09:00 Europe/Paris</time>');
    expect(row).toContain('datetime="2026-01-08T08:00:00.000Z">8 Jan 2026, 09:00 Europe/Paris</time>');
    expect(row).toContain("never fired");
    expect(row).toContain("Disable ui-sched");
    expect(row).toContain("Trigger ui-sched now");
    // Semantic, responsive table.
    expect(page.text).toContain('<th scope="col">Next fires</th>');
    expect(row).toContain('data-label="Last outcome"');
  });

  test("a zone with a different offset: New York fires at its own 09:00", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "30 9 * * 1-5", timezone: "America/New_York" });
    const row = rowOf((await alpha.get("/ui/schedules")).text, schedule.id);
    expect(row).toContain("At 09:30, Monday through Friday");
    // Monday 5 January, 09:30 in New York (EST, UTC-5) is 14:30 UTC, still ahead of 10:00 UTC.
    expect(row).toContain('datetime="2026-01-05T14:30:00.000Z">5 Jan 2026, 09:30 America/New_York</time>');
  });

  test("disable and enable change the state; no fires are shown while disabled", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "*/15 * * * *" });
    const off = await alpha.post(`/ui/schedules/${schedule.id}/disable`, {});
    expect(off.status).toBe(303);
    expect(off.location).toBe("/ui/schedules");
    expect(await followFlash(harness.server, alpha, off)).toContain("disabled");
    expect((await getSchedule(harness.server, schedule.id)).enabled).toBe(false);
    let row = rowOf((await alpha.get("/ui/schedules")).text, schedule.id);
    expect(row).toContain('data-enabled="false"');
    expect(row).toContain("none while disabled");
    expect(row).toContain("Enable ui-sched");

    const on = await alpha.post(`/ui/schedules/${schedule.id}/enable`, {});
    expect(on.status).toBe(303);
    expect((await getSchedule(harness.server, schedule.id)).enabled).toBe(true);
    row = rowOf((await alpha.get("/ui/schedules")).text, schedule.id);
    expect(row).toContain('data-enabled="true"');
    expect(row).toContain("Every 15 minutes");
    expect(row).toContain('datetime="2026-01-05T10:15:00.000Z"');
  });

  test("trigger now starts a job, goes to its page, and the job is the last outcome", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "0 3 * * *" });
    const response = await alpha.post(`/ui/schedules/${schedule.id}/trigger`, {});
    expect(response.status).toBe(303);
    const jobs = await jobsOf(harness.server, schedule.id);
    expect(jobs.length).toBe(1);
    expect(response.location).toBe(`/ui/jobs/${jobs[0]!.id}`);
    const row = rowOf((await alpha.get("/ui/schedules")).text, schedule.id);
    expect(row).toContain(`href="/ui/jobs/${jobs[0]!.id}"`);
    expect(row).toContain('class="badge queued"');
    expect(row).not.toContain("never fired");

    // A second trigger while that job is queued (overlap "skip") is refused: the page says why, nothing is queued.
    const again = await alpha.post(`/ui/schedules/${schedule.id}/trigger`, {});
    expect(again.status).toBe(409);
    expect(again.text).toContain('class="flash error"');
    expect((await jobsOf(harness.server, schedule.id)).length).toBe(1);
  });

  test("another tenant sees none of these schedules and cannot change them", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "0 4 * * *" });
    const page = await beta.get("/ui/schedules");
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(schedule.id);
    expect(page.text).toContain("No schedules yet.");
    const refused = await beta.post(`/ui/schedules/${schedule.id}/disable`, {});
    expect(refused.status).toBe(404);
    expect((await getSchedule(harness.server, schedule.id)).enabled).toBe(true);
    const trigger = await beta.post(`/ui/schedules/${schedule.id}/trigger`, {});
    expect(trigger.status).toBe(404);
    expect((await jobsOf(harness.server, schedule.id)).length).toBe(0);
  });

  test("a POST without the CSRF token is refused with 403 and changes nothing", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "0 5 * * *" });
    const refused = await alpha.post(`/ui/schedules/${schedule.id}/disable`, {}, { csrf: false });
    expect(refused.status).toBe(403);
    expect((await getSchedule(harness.server, schedule.id)).enabled).toBe(true);
    const trigger = await alpha.post(`/ui/schedules/${schedule.id}/trigger`, { _csrf: "wrong" }, { csrf: false });
    expect(trigger.status).toBe(403);
    expect((await jobsOf(harness.server, schedule.id)).length).toBe(0);
  });

  test("the page has no inline script, style or event handler", async () => {
    const { text } = await alpha.get("/ui/schedules");
    expect(text).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(text).not.toMatch(/\sstyle=/);
    expect(text).not.toMatch(/\son[a-z]+=/);
  });

  // Last: it moves the clock, which the tests above rely on.
  test("a fire of the scheduler shows as the last outcome, and the next fires move on", async () => {
    const schedule = await createSchedule(harness.server, { workflow: "ui-sched", cron_expr: "0 6 * * *" });
    expect(rowOf((await alpha.get("/ui/schedules")).text, schedule.id)).toContain("never fired");
    harness.clock.set("2026-01-06T06:00:00Z");
    const result = await harness.scheduler.tick();
    // A day on, the morning's session has ended (8 h): sign in again.
    const later = await signIn(harness.server, harness.server.keys.alpha);
    expect(result.fired).toBeGreaterThanOrEqual(1);
    const jobs = await jobsOf(harness.server, schedule.id);
    expect(jobs.length).toBe(1);
    const row = rowOf((await later.get("/ui/schedules")).text, schedule.id);
    expect(row).toContain(`<a href="/ui/jobs/${jobs[0]!.id}"><span class="badge queued">queued</span></a>`);
    expect(row).toContain('<time datetime="2026-01-06T06:00:00.000Z">2026-01-06 06:00:00 UTC</time>');
    expect(row).toContain('datetime="2026-01-07T06:00:00.000Z">7 Jan 2026, 06:00 UTC</time>');
    expect(row).not.toContain('datetime="2026-01-06T06:00:00.000Z">6 Jan');
  });
});
