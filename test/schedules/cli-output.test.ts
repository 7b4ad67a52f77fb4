/**
 * What the libretto CLI (0.6.45) gets from the schedules routes, over real
 * HTTP. `libretto cloud schedules create` prints `Next fire: <next_fire_at>`
 * (cloud-schedules.ts); a schedule that will not fire (a disabled one) has no
 * next_fire_at key in any schedule output, rather than null or a time that
 * will not come. Viewport and timeout take what the CLI sends, as jobs do.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_TIMEOUT_SECONDS } from "../../src/jobs/routes";
import { workflow } from "../../src/workflows/define";
import { envelop, expectError, expectOk } from "../http/wire";
import { scheduleHarness, type ScheduleHarness } from "./support";

let harness: ScheduleHarness;
beforeAll(async () => {
  harness = await scheduleHarness({ start: "2026-01-05T10:00:30Z", workflows: [workflow("cli-sched", () => 1)] });
});
afterAll(async () => harness.close());

const post = async (path: string, input: Record<string, unknown>) => {
  const response = await harness.server.post(path, envelop(input));
  return { output: expectOk(response, true), text: response.text };
};

/** What `libretto cloud schedules create <workflow> --cron <expr> --disabled` sends. */
const cliCreate = (extra: Record<string, unknown> = {}) => ({
  workflow: "cli-sched",
  cron_expr: "*/5 * * * *",
  timezone: "UTC",
  params: {},
  ...extra,
});

describe("next_fire_at of a schedule that will not fire", () => {
  test("create --disabled: no next_fire_at key, enabled false", async () => {
    const { output, text } = await post("/v1/schedules/create", cliCreate({ enabled: false }));
    expect(output.success).toBe(true);
    expect(output.schedule.enabled).toBe(false);
    expect("next_fire_at" in output.schedule).toBe(false);
    expect(text).not.toContain("next_fire_at");
  });

  test("get and list of a disabled schedule: no next_fire_at key", async () => {
    const { output: created } = await post("/v1/schedules/create", cliCreate({ enabled: false }));
    const { output: got, text } = await post("/v1/schedules/get", { id: created.schedule.id });
    expect(got.schedule.enabled).toBe(false);
    expect("next_fire_at" in got.schedule).toBe(false);
    expect(text).not.toContain("next_fire_at");

    const { output: listed } = await post("/v1/schedules/list", { enabled: false });
    const mine = listed.schedules.find((s: any) => s.id === created.schedule.id);
    expect(mine).toBeDefined();
    expect(listed.schedules.every((s: any) => !("next_fire_at" in s))).toBe(true);
  });

  test("update: disabling removes the key, enabling brings it back with the next time", async () => {
    const { output: created } = await post("/v1/schedules/create", cliCreate());
    expect(created.schedule.next_fire_at).toBe("2026-01-05T10:05:00.000Z");

    const { output: disabled, text } = await post("/v1/schedules/update", { id: created.schedule.id, enabled: false });
    expect(disabled.schedule.enabled).toBe(false);
    expect("next_fire_at" in disabled.schedule).toBe(false);
    expect(text).not.toContain("next_fire_at");

    const { output: enabled } = await post("/v1/schedules/update", { id: created.schedule.id, enabled: true });
    expect(enabled.schedule.next_fire_at).toBe("2026-01-05T10:05:00.000Z");
  });

  test("trigger of a disabled schedule: no next_fire_at key", async () => {
    const { output: created } = await post("/v1/schedules/create", cliCreate({ enabled: false }));
    const { output } = await post("/v1/schedules/trigger", { id: created.schedule.id });
    expect(output.schedule.last_job_id).toBe(output.job_id);
    expect("next_fire_at" in output.schedule).toBe(false);
  });

  test("an enabled schedule keeps its next_fire_at in create, get and list", async () => {
    const { output: created } = await post("/v1/schedules/create", cliCreate({ cron_expr: "0 9 * * *" }));
    expect(created.schedule.next_fire_at).toBe("2026-01-06T09:00:00.000Z");
    const { output: got } = await post("/v1/schedules/get", { id: created.schedule.id });
    expect(got.schedule.next_fire_at).toBe("2026-01-06T09:00:00.000Z");
    const { output: listed } = await post("/v1/schedules/list", { enabled: true });
    expect(listed.schedules.find((s: any) => s.id === created.schedule.id).next_fire_at).toBe("2026-01-06T09:00:00.000Z");
  });

  test("the OpenAPI document says next_fire_at is optional in every schedule output", async () => {
    const doc = (await fetch(`${harness.server.url}/v1/openapi.json`).then((r) => r.json())) as any;
    const output = (path: string) => doc.paths[path].post.responses["200"].content["application/json"].schema.oneOf[0];
    const schedules = [
      output("/v1/schedules/create").properties.schedule,
      output("/v1/schedules/get").properties.schedule,
      output("/v1/schedules/update").properties.schedule,
      output("/v1/schedules/trigger").properties.schedule,
      output("/v1/schedules/list").properties.schedules.items,
    ];
    for (const schedule of schedules) {
      expect(schedule.properties.next_fire_at.type).toBe("string");
      expect(schedule.required).not.toContain("next_fire_at");
      expect(schedule.required).toContain("enabled");
    }
  });
});

describe("schedules: timeout_seconds and viewport take what the CLI sends", () => {
  test("create and update accept timeouts above the old 3600 up to the timer's limit, and viewports from 1 pixel", async () => {
    const { output: created } = await post(
      "/v1/schedules/create",
      cliCreate({ timeout_seconds: 7200, viewport: { width: 1, height: 1 } }),
    );
    expect(created.schedule.timeout_seconds).toBe(7200);
    const { output: updated } = await post("/v1/schedules/update", {
      id: created.schedule.id,
      timeout_seconds: MAX_TIMEOUT_SECONDS,
      viewport: { width: 10_000_000, height: 50 },
    });
    expect(updated.schedule.timeout_seconds).toBe(MAX_TIMEOUT_SECONDS);
    const row = await harness.server.db.selectFrom("schedules").select("options").where("id", "=", created.schedule.id).executeTakeFirstOrThrow();
    expect(JSON.parse(row.options).viewport).toEqual({ width: 10_000_000, height: 50 });
  });

  test("past the limits: a 400 that says why, on create and on update", async () => {
    const tooLong = expectError(
      await harness.server.post("/v1/schedules/create", envelop(cliCreate({ timeout_seconds: MAX_TIMEOUT_SECONDS + 1 }))),
      400,
      "BAD_REQUEST",
      true,
    );
    expect(tooLong.message).toContain("timeout_seconds must be at most 2147483 (about 24 days): the job's timer cannot wait longer");

    const { output: created } = await post("/v1/schedules/create", cliCreate());
    const zero = expectError(
      await harness.server.post("/v1/schedules/update", { id: created.schedule.id, viewport: { width: 1024, height: 0 } }),
      400,
      "BAD_REQUEST",
      false,
    );
    expect(zero.message).toContain("viewport.height must be at least 1 pixel: Chromium ignores a 0-pixel viewport");
    const huge = expectError(
      await harness.server.post("/v1/schedules/create", cliCreate({ viewport: { width: 10_000_001, height: 1 } })),
      400,
      "BAD_REQUEST",
      false,
    );
    expect(huge.message).toContain("viewport.width must be at most 10000000 pixels: Chromium refuses a larger viewport");
  });
});
