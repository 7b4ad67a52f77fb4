/**
 * The schedules routes over real HTTP: the schedule object and its defaults,
 * validation messages, update semantics (null clears, next_fire_at), list
 * filters, delete, trigger, and secrets that never come back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, dumpDb, secretForms } from "../helpers";
import { envelop, expectError, expectOk, UUID } from "../http/wire";
import { createSchedule, expectJobCount, getSchedule, jobsOf, scheduleHarness, type ScheduleHarness } from "./support";

const SCHEDULE_FIELDS = [
  "callback_url",
  "consecutive_failures",
  "created_at",
  "cron_expr",
  "disable_default_proxy",
  "enabled",
  "id",
  "last_error",
  "last_fire_at",
  "last_job_id",
  "next_fire_at",
  "overlap_policy",
  "params",
  "residential_proxy",
  "skip_callbacks",
  "timeout_seconds",
  "timezone",
  "updated_at",
  "workflow",
];

let harness: ScheduleHarness;
beforeAll(async () => {
  harness = await scheduleHarness({
    start: "2026-01-05T10:00:30Z",
    workflows: [workflow("api-echo", { credentials: ["token"], handler: (_ctx, input) => input }), workflow("api-other", { handler: () => 1 })],
  });
});
afterAll(async () => harness.close());

describe("schedules/create", () => {
  test("returns the schedule object with exactly the contract's fields and the defaults", async () => {
    const { server } = harness;
    const response = expectOk(await server.post("/v1/schedules/create", { workflow: "api-echo", cron_expr: "0 9 * * 1-5" }), false);
    expect(response.success).toBe(true);
    const schedule = response.schedule;
    expect(Object.keys(schedule).sort()).toEqual(SCHEDULE_FIELDS);
    expect(schedule.id).toMatch(UUID);
    expect(schedule).toMatchObject({
      workflow: "api-echo",
      params: {},
      cron_expr: "0 9 * * 1-5",
      timezone: "UTC",
      timeout_seconds: 900,
      residential_proxy: null,
      disable_default_proxy: false,
      callback_url: null,
      skip_callbacks: false,
      enabled: true,
      overlap_policy: "skip",
      next_fire_at: "2026-01-06T09:00:00.000Z",
      last_fire_at: null,
      last_job_id: null,
      last_error: null,
      consecutive_failures: 0,
      created_at: "2026-01-05T10:00:30.000Z",
      updated_at: "2026-01-05T10:00:30.000Z",
    });
    expect(await getSchedule(server, schedule.id)).toEqual(schedule);
  });

  test("takes every field, enveloped too; the zone is stored in its canonical spelling", async () => {
    const { server } = harness;
    const input = {
      workflow: "api-echo",
      cron_expr: " 0  9 * * * ",
      timezone: "europe/berlin",
      params: { account: 42 },
      timeout_seconds: 60,
      start_url: "https://portal.example.com/",
      gpu: true,
      viewport: { width: 1024, height: 768 },
      callback_url: "https://hooks.example.com/s",
      callback_secret: "create-callback-secret",
      skip_callbacks: true,
      residential_proxy: { country: "de" },
      disable_default_proxy: true,
      enabled: true,
      overlap_policy: "allow",
    };
    const schedule = expectOk(await server.post("/v1/schedules/create", envelop(input)), true).schedule;
    expect(schedule).toMatchObject({
      cron_expr: "0 9 * * *",
      timezone: "Europe/Berlin",
      params: { account: 42 },
      timeout_seconds: 60,
      callback_url: "https://hooks.example.com/s",
      skip_callbacks: true,
      residential_proxy: { country: "de" },
      disable_default_proxy: true,
      overlap_policy: "allow",
      next_fire_at: "2026-01-06T08:00:00.000Z",
    });
  });

  test("an unknown workflow is a 404 that names it", async () => {
    const error = expectError(await harness.server.post("/v1/schedules/create", { workflow: "no-such-flow", cron_expr: "* * * * *" }), 404, "NOT_FOUND", false);
    expect(error.message).toContain('Workflow "no-such-flow" not found');
  });

  test("a bad cron expression or zone is a 400 that says what is wrong", async () => {
    const { server } = harness;
    const bad = async (input: Record<string, unknown>) =>
      expectError(await server.post("/v1/schedules/create", { workflow: "api-echo", ...input }), 400, "BAD_REQUEST", false);
    expect((await bad({ cron_expr: "*/5 * * *" })).message).toBe(
      'Invalid input: cron_expr must have 5 fields (minute hour day-of-month month day-of-week), e.g. "*/15 * * * *"; "*/5 * * *" has 4.',
    );
    expect((await bad({ cron_expr: "0 25 * * *" })).message).toContain("cron_expr is not a valid cron expression");
    expect((await bad({ cron_expr: "0 25 * * *" })).message).toContain("Invalid value for hour: 25");
    expect((await bad({ cron_expr: "0 0 30 2 *" })).message).toContain('cron_expr never fires: "0 0 30 2 *" matches no date');
    const zone = await bad({ cron_expr: "* * * * *", timezone: "Europe/Atlantis" });
    expect(zone.message).toContain('timezone must be an IANA time zone name such as "UTC"');
    expect(zone.data.issues).toEqual([{ path: ["timezone"], message: expect.stringContaining('"Europe/Atlantis" is not one') }]);
  });
});

describe("schedules/update", () => {
  test("changes only the given fields; next_fire_at is recomputed when the timing changes and kept otherwise", async () => {
    const { server, clock } = harness;
    const schedule = await createSchedule(server, { workflow: "api-echo", cron_expr: "0 9 * * *", timezone: "Europe/Berlin", params: { a: 1 } });
    expect(schedule.next_fire_at).toBe("2026-01-06T08:00:00.000Z");
    clock.advance(60_000);
    try {
      const params = expectOk(await server.post("/v1/schedules/update", { id: schedule.id, params: { a: 2 } }), false).schedule;
      expect(params).toMatchObject({ params: { a: 2 }, next_fire_at: "2026-01-06T08:00:00.000Z", cron_expr: "0 9 * * *" });
      expect(params.updated_at).toBe("2026-01-05T10:01:30.000Z");
      expect(params.created_at).toBe(schedule.created_at);

      const zone = expectOk(await server.post("/v1/schedules/update", { id: schedule.id, timezone: "America/New_York" }), false).schedule;
      expect(zone.next_fire_at).toBe("2026-01-05T14:00:00.000Z");
      const cron = expectOk(await server.post("/v1/schedules/update", { id: schedule.id, cron_expr: "30 2 * * *" }), false).schedule;
      expect(cron.next_fire_at).toBe("2026-01-06T07:30:00.000Z");
      const workflowChanged = expectOk(await server.post("/v1/schedules/update", { id: schedule.id, workflow: "api-other", timeout_seconds: 30 }), false)
        .schedule;
      expect(workflowChanged).toMatchObject({ workflow: "api-other", timeout_seconds: 30, params: { a: 2 }, timezone: "America/New_York" });
    } finally {
      clock.advance(-60_000);
    }
  });

  test("callback_url + callback_secret both null clear them; residential_proxy null clears it; one without the other is a 400", async () => {
    const { server } = harness;
    const schedule = await createSchedule(server, {
      workflow: "api-echo",
      cron_expr: "0 0 29 2 *",
      callback_url: "https://hooks.example.com/x",
      callback_secret: "to-be-cleared-callback-secret",
      residential_proxy: true,
      start_url: "https://portal.example.com/",
    });
    expect(schedule.callback_url).toBe("https://hooks.example.com/x");
    expect(schedule.residential_proxy).toBe(true);

    const half = expectError(await server.post("/v1/schedules/update", { id: schedule.id, callback_url: null }), 400, "BAD_REQUEST", false);
    expect(half.data.issues[0].path).toEqual(["callback_secret"]);
    expectError(await server.post("/v1/schedules/update", { id: schedule.id, callback_url: "https://x.example.com/" }), 400, "BAD_REQUEST", false);

    const cleared = expectOk(
      await server.post("/v1/schedules/update", { id: schedule.id, callback_url: null, callback_secret: null, residential_proxy: null }),
      false,
    ).schedule;
    expect(cleared.callback_url).toBeNull();
    expect(cleared.residential_proxy).toBeNull();
    const row = await server.db.selectFrom("schedules").selectAll().where("id", "=", schedule.id).executeTakeFirstOrThrow();
    expect(row.sealed_callback_secret).toBeNull();
    expect(JSON.parse(row.options)).toEqual({ start_url: "https://portal.example.com/" });

    // Jobs of the schedule follow: no callback, no proxy flag.
    const { job_id } = expectOk(await server.post("/v1/schedules/trigger", { id: schedule.id }), false);
    const [job] = await jobsOf(server, schedule.id);
    expect(job!.id).toBe(job_id);
    expect(job!.callback_url).toBeNull();
    expect(job!.sealed_callback_secret).toBeNull();
    expect(JSON.parse(job!.options).residential_proxy).toBeUndefined();

    // Extension: start_url and viewport clear with null too.
    expectOk(await server.post("/v1/schedules/update", { id: schedule.id, viewport: { width: 800, height: 600 } }), false);
    expectOk(await server.post("/v1/schedules/update", { id: schedule.id, start_url: null, viewport: null }), false);
    const options = await server.db.selectFrom("schedules").select("options").where("id", "=", schedule.id).executeTakeFirstOrThrow();
    expect(JSON.parse(options.options)).toEqual({});
  });

  test("an unknown id or workflow is a 404", async () => {
    const { server } = harness;
    expectError(await server.post("/v1/schedules/update", { id: crypto.randomUUID(), enabled: false }), 404, "NOT_FOUND", false);
    const schedule = await createSchedule(server, { workflow: "api-echo", cron_expr: "0 0 29 2 *" });
    expectError(await server.post("/v1/schedules/update", { id: schedule.id, workflow: "gone" }), 404, "NOT_FOUND", false);
    expect((await getSchedule(server, schedule.id)).workflow).toBe("api-echo");
  });
});

test("schedules/list filters by enabled and workflow, newest first, up to limit", async () => {
  const { server, clock } = harness;
  const tenant = await addTenant(server, `list-${crypto.randomUUID()}`);
  const made: any[] = [];
  for (const [i, input] of [
    { workflow: "api-echo", enabled: true },
    { workflow: "api-other", enabled: true },
    { workflow: "api-echo", enabled: false },
    { workflow: "api-other", enabled: false },
  ].entries()) {
    clock.advance(1000);
    made.push(await createSchedule(server, { ...input, cron_expr: `${i} 0 29 2 *` }, tenant.key));
  }
  clock.advance(-4000);
  const list = async (input: Record<string, unknown>) =>
    expectOk(await server.post("/v1/schedules/list", input, { key: tenant.key }), false).schedules.map((s: any) => s.id);
  expect(await list({})).toEqual([made[3].id, made[2].id, made[1].id, made[0].id]);
  expect(await list({ enabled: true })).toEqual([made[1].id, made[0].id]);
  expect(await list({ enabled: false, workflow: "api-echo" })).toEqual([made[2].id]);
  expect(await list({ workflow: "api-other" })).toEqual([made[3].id, made[1].id]);
  expect(await list({ limit: 1 })).toEqual([made[3].id]);
  expect(await list({ workflow: "no-such-flow" })).toEqual([]);
});

test("schedules/delete removes the schedule; the jobs it queued stay", async () => {
  const { server } = harness;
  const schedule = await createSchedule(server, { workflow: "api-echo", cron_expr: "0 0 29 2 *" });
  const { job_id } = expectOk(await server.post("/v1/schedules/trigger", { id: schedule.id }), false);
  expect(expectOk(await server.post("/v1/schedules/delete", { id: schedule.id }), false)).toEqual({ success: true, id: schedule.id });
  expectError(await server.post("/v1/schedules/get", { id: schedule.id }), 404, "NOT_FOUND", false);
  expectError(await server.post("/v1/schedules/delete", { id: schedule.id }), 404, "NOT_FOUND", false);
  const job = expectOk(await server.post("/v1/jobs/get", { id: job_id }), false);
  expect(job.schedule_id).toBe(schedule.id);
  // Its end finds no schedule to update, and that is fine.
  expectOk(await server.post("/v1/jobs/cancel", { id: job_id }), false);
});

describe("schedules/trigger (extension)", () => {
  test("runs now, recorded as a fire; next_fire_at stays", async () => {
    const { server } = harness;
    const schedule = await createSchedule(server, { workflow: "api-echo", cron_expr: "0 0 29 2 *", params: { x: 1 }, timeout_seconds: 77 });
    const output = expectOk(await server.post("/v1/schedules/trigger", { id: schedule.id }), false);
    expect(output.success).toBe(true);
    expect(output.job_id).toMatch(UUID);
    expect(output.schedule).toMatchObject({
      last_job_id: output.job_id,
      last_fire_at: "2026-01-05T10:00:30.000Z",
      next_fire_at: schedule.next_fire_at,
    });
    const job = expectOk(await server.post("/v1/jobs/get", { id: output.job_id }), false);
    expect(job).toMatchObject({ status: "queued", schedule_id: schedule.id, params: { x: 1 }, timeout_seconds: 77, workflow: "api-echo" });
  });

  test('with overlap_policy "skip" a second trigger while the job is queued is a 409; with "allow" it queues another', async () => {
    const { server } = harness;
    const schedule = await createSchedule(server, { workflow: "api-echo", cron_expr: "0 0 29 2 *" });
    const first = expectOk(await server.post("/v1/schedules/trigger", { id: schedule.id }), false);
    const conflict = expectError(await server.post("/v1/schedules/trigger", { id: schedule.id }), 409, "CONFLICT", false);
    expect(conflict.message).toContain(`previous job ${first.job_id} is still queued`);
    expect(conflict.data.job_id).toBe(first.job_id);
    await expectJobCount(server, schedule.id, 1);

    expectOk(await server.post("/v1/schedules/update", { id: schedule.id, overlap_policy: "allow" }), false);
    expectOk(await server.post("/v1/schedules/trigger", { id: schedule.id }), false);
    await expectJobCount(server, schedule.id, 2);
  });

  test("a disabled schedule can be triggered by hand and stays disabled", async () => {
    const { server } = harness;
    const schedule = await createSchedule(server, { workflow: "api-echo", cron_expr: "* * * * *", enabled: false });
    const output = expectOk(await server.post("/v1/schedules/trigger", { id: schedule.id }), false);
    expect(output.schedule).toMatchObject({ enabled: false, last_job_id: output.job_id });
    expect(output.schedule).not.toHaveProperty("next_fire_at");
  });

  test("an unknown id is a 404", async () => {
    expectError(await harness.server.post("/v1/schedules/trigger", { id: crypto.randomUUID() }), 404, "NOT_FOUND", false);
  });
});

test("params.credentials and callback_secret are stored sealed and never returned", async () => {
  const { server } = harness;
  const credential = `sched-cred-${crypto.randomUUID()}`;
  const callbackSecret = `sched-cb-${crypto.randomUUID()}`;
  const updatedCredential = `sched-cred2-${crypto.randomUUID()}`;
  const responses: string[] = [];
  const post = async (path: string, body: unknown) => {
    const response = await server.post(path, body);
    responses.push(response.text);
    return response;
  };
  const created = expectOk(
    await post("/v1/schedules/create", {
      workflow: "api-echo",
      cron_expr: "0 0 29 2 *",
      params: { visible: "yes", credentials: { token: credential } },
      callback_url: "https://hooks.example.com/sealed",
      callback_secret: callbackSecret,
    }),
    false,
  ).schedule;
  expect(created.params).toEqual({ visible: "yes" });
  await post("/v1/schedules/get", { id: created.id });
  await post("/v1/schedules/list", {});
  await post("/v1/schedules/update", { id: created.id, params: { visible: "still", credentials: { token: updatedCredential } } });
  await post("/v1/schedules/trigger", { id: created.id });

  const stored = await dumpDb(server.db);
  for (const secret of [credential, callbackSecret, updatedCredential]) {
    for (const form of secretForms(secret)) {
      for (const text of responses) expect(text).not.toContain(form);
      expect(stored).not.toContain(form);
    }
  }
  const row = await server.db.selectFrom("schedules").selectAll().where("id", "=", created.id).executeTakeFirstOrThrow();
  expect(JSON.parse(row.params)).toEqual({ visible: "still" });
  expect(row.sealed_params_credentials).not.toBeNull();
  expect(row.sealed_callback_secret).not.toBeNull();
});
