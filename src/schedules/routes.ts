import { z } from "zod";
import { defineRoute } from "../http/route";
import { timestamp, uuid } from "../http/schemas";
import { callbackSecret, httpUrl, jobCreateInput, optional, timeoutSeconds, viewport } from "../jobs/routes";
import { CronError, parseCron, parseTimeZone, TimeZoneError } from "./cron";
import * as service from "./service";
import type { ScheduleRow } from "./store";

const scheduleId = uuid("schedule");
const OVERLAP_POLICIES = ["skip", "allow"] as const;
const job = jobCreateInput.shape;

/** A 5-field cron expression, normalised; the issue says what is wrong with a bad one. */
const cronExpr = z
  .string()
  .max(256, "must be at most 256 characters")
  .transform((value, ctx) => {
    try {
      return parseCron(value);
    } catch (error) {
      if (!(error instanceof CronError)) throw error;
      ctx.issues.push({ code: "custom", message: error.message, input: value });
      return z.NEVER;
    }
  })
  .describe('5-field cron expression: minute hour day-of-month month day-of-week, e.g. "*/15 * * * *"');

/** An IANA time zone name, in its canonical spelling. */
const timeZone = z
  .string()
  .max(64, "must be at most 64 characters")
  .transform((value, ctx) => {
    try {
      return parseTimeZone(value);
    } catch (error) {
      if (!(error instanceof TimeZoneError)) throw error;
      ctx.issues.push({ code: "custom", message: error.message, input: value });
      return z.NEVER;
    }
  })
  .describe('IANA time zone name, e.g. "Europe/Berlin"');

const overlapPolicy = z
  .enum(OVERLAP_POLICIES, 'must be "skip" or "allow"')
  .describe('Extension. "skip" (default): a fire is skipped while the previous job is still queued or running; "allow": it is not.');
const params = z.record(z.string(), z.unknown());

// A fresh object per use: zod keeps a reference to the params it is given.
const callbackPair = (message: string) => ({ message, path: ["callback_secret"] });

const scheduleCreateInput = z
  .object({
    workflow: job.workflow,
    params: optional(params).transform((p) => p ?? {}),
    cron_expr: cronExpr,
    timezone: optional(timeZone).transform((tz) => tz ?? "UTC"),
    timeout_seconds: optional(timeoutSeconds).transform((t) => t ?? 900),
    start_url: job.start_url,
    gpu: job.gpu,
    viewport: job.viewport,
    callback_url: job.callback_url,
    callback_secret: job.callback_secret,
    skip_callbacks: job.skip_callbacks,
    residential_proxy: job.residential_proxy,
    disable_default_proxy: job.disable_default_proxy,
    enabled: optional(z.boolean()).transform((e) => e ?? true),
    overlap_policy: optional(overlapPolicy).transform((p) => p ?? "skip"),
  })
  .refine(
    (i) => (i.callback_url === undefined) === (i.callback_secret === undefined),
    callbackPair("give callback_url and callback_secret together, or neither"),
  );

/**
 * In an update, null clears these: callback_url + callback_secret and
 * residential_proxy (API.md), and start_url and viewport (extension: there is
 * no other way to remove them). Elsewhere null means "not given", as in every route.
 */
const clearable = <T extends z.ZodType>(schema: T) => schema.nullable().optional();

const scheduleUpdateInput = z
  .object({
    id: scheduleId,
    workflow: optional(z.string().trim().min(1, "must name a workflow").max(256, "must be at most 256 characters")),
    params: optional(params),
    cron_expr: optional(cronExpr),
    timezone: optional(timeZone),
    timeout_seconds: optional(timeoutSeconds),
    start_url: clearable(httpUrl),
    gpu: optional(z.boolean()),
    viewport: clearable(viewport),
    callback_url: clearable(httpUrl),
    callback_secret: clearable(callbackSecret),
    skip_callbacks: optional(z.boolean()),
    residential_proxy: clearable(z.union([z.boolean(), z.string().max(256), z.record(z.string(), z.unknown())])),
    disable_default_proxy: optional(z.boolean()),
    enabled: optional(z.boolean()),
    overlap_policy: optional(overlapPolicy),
  })
  .refine(
    (i) => (i.callback_url === undefined) === (i.callback_secret === undefined) && (i.callback_url === null) === (i.callback_secret === null),
    callbackPair("give callback_url and callback_secret together (both null to clear them), or neither"),
  );

const scheduleOutput = z.object({
  id: z.uuid(),
  workflow: z.string(),
  params: z.record(z.string(), z.unknown()).describe("The params, without params.credentials (stored sealed, never returned)"),
  cron_expr: z.string(),
  timezone: z.string(),
  timeout_seconds: z.number().int(),
  residential_proxy: z.unknown(),
  disable_default_proxy: z.boolean(),
  callback_url: z.string().nullable(),
  skip_callbacks: z.boolean(),
  enabled: z.boolean(),
  next_fire_at: timestamp
    .optional()
    .describe("When the schedule fires next; absent when it will not fire (it is disabled)"),
  last_fire_at: timestamp.nullable(),
  last_job_id: z.string().nullable(),
  last_error: z.string().nullable(),
  consecutive_failures: z.number().int(),
  created_at: timestamp,
  updated_at: timestamp,
  overlap_policy: z.enum(OVERLAP_POLICIES),
});

/**
 * The wire form of a schedule: never the callback secret nor params.credentials.
 * next_fire_at is left out when there is none (a disabled schedule), rather
 * than sent as null or as a time that will not come. The libretto CLI prints
 * "Next fire: <value>" unconditionally, so it shows "undefined" there,
 * followed by "Enabled: no"; no timestamp field can say more without lying.
 */
export function toScheduleOutput(row: ScheduleRow): z.input<typeof scheduleOutput> {
  const options = JSON.parse(row.options) as { residential_proxy?: unknown; disable_default_proxy?: boolean };
  return {
    id: row.id,
    workflow: row.workflow,
    params: JSON.parse(row.params),
    cron_expr: row.cron_expr,
    timezone: row.timezone,
    timeout_seconds: row.timeout_seconds,
    residential_proxy: options.residential_proxy ?? null,
    disable_default_proxy: options.disable_default_proxy ?? false,
    callback_url: row.callback_url,
    skip_callbacks: row.skip_callbacks === 1,
    enabled: row.enabled === 1,
    ...(row.next_fire_at === null ? {} : { next_fire_at: row.next_fire_at }),
    last_fire_at: row.last_fire_at,
    last_job_id: row.last_job_id,
    last_error: row.last_error,
    consecutive_failures: row.consecutive_failures,
    created_at: row.created_at,
    updated_at: row.updated_at,
    overlap_policy: row.overlap_policy as (typeof OVERLAP_POLICIES)[number],
  };
}

export const scheduleRoutes = [
  defineRoute({
    path: "/v1/schedules/create",
    summary: "Run a workflow on a cron expression in an IANA time zone. params.credentials and callback_secret are stored sealed.",
    input: scheduleCreateInput,
    output: z.object({ success: z.literal(true), schedule: scheduleOutput }),
    async handler({ deps, caller }, input) {
      return { success: true as const, schedule: toScheduleOutput(await service.createSchedule(deps, caller, input)) };
    },
  }),
  defineRoute({
    path: "/v1/schedules/list",
    summary: "The tenant's schedules, newest first.",
    input: z.object({
      enabled: optional(z.boolean()),
      workflow: optional(z.string().trim().min(1, "must name a workflow").max(256, "must be at most 256 characters")),
      limit: optional(z.number().int("must be a whole number").min(1, "must be at least 1").max(200, "must be at most 200")).transform(
        (l) => l ?? 50,
      ),
    }),
    output: z.object({ schedules: z.array(scheduleOutput) }),
    async handler({ deps, caller }, input) {
      return { schedules: (await service.listSchedules(deps, caller, input)).map(toScheduleOutput) };
    },
  }),
  defineRoute({
    path: "/v1/schedules/get",
    summary: "One schedule: its settings, next and last fire, and the outcome of its last jobs.",
    input: z.object({ id: scheduleId }),
    output: z.object({ schedule: scheduleOutput }),
    async handler({ deps, caller }, input) {
      return { schedule: toScheduleOutput(await service.getSchedule(deps, caller, input.id)) };
    },
  }),
  defineRoute({
    path: "/v1/schedules/update",
    summary:
      "Change any field of a schedule; callback_url + callback_secret (both), residential_proxy, start_url or viewport set to null clear them. " +
      "next_fire_at is recomputed when cron_expr, timezone or enabled change.",
    input: scheduleUpdateInput,
    output: z.object({ schedule: scheduleOutput }),
    async handler({ deps, caller }, { id, ...changes }) {
      return { schedule: toScheduleOutput(await service.updateSchedule(deps, caller, id, changes)) };
    },
  }),
  defineRoute({
    path: "/v1/schedules/delete",
    summary: "Delete a schedule; jobs it already queued stay.",
    input: z.object({ id: scheduleId }),
    output: z.object({ success: z.literal(true), id: z.uuid() }),
    async handler({ deps, caller }, input) {
      await service.deleteSchedule(deps, caller, input.id);
      return { success: true as const, id: input.id };
    },
  }),
  defineRoute({
    path: "/v1/schedules/trigger",
    summary:
      "Extension. Run the schedule now, recorded as a fire (next_fire_at unchanged); 409 while its previous job is still queued or running and overlap_policy is skip.",
    input: z.object({ id: scheduleId }),
    output: z.object({ success: z.literal(true), job_id: z.uuid(), schedule: scheduleOutput }),
    async handler({ deps, caller }, input) {
      const { jobId, row } = await service.triggerSchedule(deps, caller, input.id);
      return { success: true as const, job_id: jobId, schedule: toScheduleOutput(row) };
    },
  }),
];
