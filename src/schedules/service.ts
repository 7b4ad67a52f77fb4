import { AppError } from "../errors";
import type { AppDeps, Caller } from "../http/route";
import { findRunnableWorkflow } from "../jobs/service";
import type { Db } from "../store/database";
import { refuseLiteralTarget } from "../webhooks/address";
import { nextFireAfter } from "./cron";
import { callbackSecretContext, enqueueScheduledJob, paramsCredentialsContext, previousJobStillActive } from "./scheduler";
import * as store from "./store";

export type OverlapPolicy = "skip" | "allow";

/** What a schedule's jobs run with, as the API validated it (create: every field; update: those given). */
export interface ScheduleSettings {
  workflow: string;
  params: Record<string, unknown>;
  cron_expr: string;
  timezone: string;
  timeout_seconds: number;
  start_url?: string;
  gpu?: boolean;
  viewport?: { width: number; height: number };
  callback_url?: string;
  callback_secret?: string;
  skip_callbacks?: boolean;
  residential_proxy?: unknown;
  disable_default_proxy?: boolean;
  enabled: boolean;
  overlap_policy: OverlapPolicy;
}

/** An update: absent fields stay as they are; null clears where the API allows it. */
export type ScheduleChanges = Partial<
  Omit<ScheduleSettings, "start_url" | "viewport" | "callback_url" | "callback_secret" | "residential_proxy">
> & {
  start_url?: string | null;
  viewport?: { width: number; height: number } | null;
  callback_url?: string | null;
  callback_secret?: string | null;
  residential_proxy?: unknown;
};

/** The run options kept in the schedule's `options` column and handed to each job. */
interface RunOptions {
  start_url?: string;
  viewport?: { width: number; height: number };
  gpu?: boolean;
  residential_proxy?: unknown;
  disable_default_proxy?: boolean;
}

export const scheduleNotFound = (id: string) =>
  new AppError("NOT_FOUND", `Schedule ${id} not found. List this tenant's schedules with /v1/schedules/list.`);

/** The next fire of an enabled schedule from now; null when disabled. */
function firstFire(deps: Pick<AppDeps, "clock">, enabled: boolean, cronExpr: string, timeZone: string): string | null {
  if (!enabled) return null;
  return nextFireAfter(cronExpr, timeZone, deps.clock.now())?.toISOString() ?? null;
}

/**
 * Splits params into what is stored in clear and params.credentials, which is
 * sealed. The credentials' shape is checked now, as jobs/create would, so a
 * schedule cannot be created that fails at every fire.
 */
async function sealParams(deps: Pick<AppDeps, "catalog" | "vault">, trx: Db, tenantId: string, scheduleId: string, workflow: string, all: Record<string, unknown>) {
  const { credentials, ...params } = all;
  const declared = (await deps.catalog.find(trx, tenantId, workflow))?.credentials ?? [];
  if (credentials !== undefined && declared.length > 0 && !isStringRecord(credentials)) {
    throw new AppError("BAD_REQUEST", "Invalid input: params.credentials must map credential names to string values.", {
      data: { issues: [{ path: ["params", "credentials"], message: "must map credential names to string values" }] },
    });
  }
  return {
    params: JSON.stringify(params),
    sealed_params_credentials:
      credentials === undefined
        ? null
        : await deps.vault.sealForTenant(trx, tenantId, paramsCredentialsContext(scheduleId), JSON.stringify(credentials)),
  };
}

export async function createSchedule(deps: AppDeps, caller: Caller, input: ScheduleSettings): Promise<store.ScheduleRow> {
  if (input.callback_url !== undefined) refuseLiteralTarget(input.callback_url, deps.webhooks.allowPrivate, "callback_url");
  const workflow = await findRunnableWorkflow(deps, deps.db, caller.tenantId, input.workflow);
  const id = deps.newId();
  const at = deps.clock.now().toISOString();
  const options: RunOptions = {
    start_url: input.start_url,
    viewport: input.viewport,
    gpu: input.gpu,
    residential_proxy: input.residential_proxy,
    disable_default_proxy: input.disable_default_proxy,
  };
  return deps.db.transaction().execute(async (trx) => {
    const row: store.ScheduleRow = {
      id,
      tenant_id: caller.tenantId,
      workflow: workflow.name,
      ...(await sealParams(deps, trx, caller.tenantId, id, workflow.name, input.params)),
      cron_expr: input.cron_expr,
      timezone: input.timezone,
      timeout_seconds: input.timeout_seconds,
      options: JSON.stringify(options),
      callback_url: input.callback_url ?? null,
      sealed_callback_secret: input.callback_secret
        ? await deps.vault.sealForTenant(trx, caller.tenantId, callbackSecretContext(id), input.callback_secret)
        : null,
      skip_callbacks: input.skip_callbacks ? 1 : 0,
      enabled: input.enabled ? 1 : 0,
      overlap_policy: input.overlap_policy,
      next_fire_at: firstFire(deps, input.enabled, input.cron_expr, input.timezone),
      last_fire_at: null,
      last_job_id: null,
      last_error: null,
      consecutive_failures: 0,
      created_at: at,
      updated_at: at,
    };
    await store.insertSchedule(trx, row);
    return row;
  });
}

export async function getSchedule(deps: AppDeps, caller: Caller, id: string): Promise<store.ScheduleRow> {
  const row = await store.findSchedule(deps.db, caller.tenantId, id);
  if (!row) throw scheduleNotFound(id);
  return row;
}

export async function listSchedules(deps: AppDeps, caller: Caller, filter: { enabled?: boolean; workflow?: string; limit: number }) {
  return store.listSchedules(deps.db, caller.tenantId, filter);
}

/**
 * Applies the given fields. next_fire_at is recomputed from now when the
 * timing changes (cron_expr, timezone, enabled); otherwise it is kept, so an
 * unrelated edit cannot drop a fire that is due this very moment.
 */
export async function updateSchedule(deps: AppDeps, caller: Caller, id: string, changes: ScheduleChanges): Promise<store.ScheduleRow> {
  if (typeof changes.callback_url === "string") refuseLiteralTarget(changes.callback_url, deps.webhooks.allowPrivate, "callback_url");
  const workflow = changes.workflow === undefined ? undefined : (await findRunnableWorkflow(deps, deps.db, caller.tenantId, changes.workflow)).name;
  return deps.db.transaction().execute(async (trx) => {
    // Two edits at once must not undo each other (options is rewritten whole).
    if (!(await store.lockSchedule(trx, caller.tenantId, id))) throw scheduleNotFound(id);
    const row = await store.findSchedule(trx, caller.tenantId, id);
    if (!row) throw scheduleNotFound(id);
    const patch: store.SchedulePatch = { updated_at: deps.clock.now().toISOString() };
    if (workflow !== undefined) patch.workflow = workflow;
    if (changes.params !== undefined) {
      Object.assign(patch, await sealParams(deps, trx, caller.tenantId, id, workflow ?? row.workflow, changes.params));
    }
    if (changes.cron_expr !== undefined) patch.cron_expr = changes.cron_expr;
    if (changes.timezone !== undefined) patch.timezone = changes.timezone;
    if (changes.timeout_seconds !== undefined) patch.timeout_seconds = changes.timeout_seconds;

    const options = JSON.parse(row.options) as RunOptions;
    for (const key of ["start_url", "viewport", "gpu", "residential_proxy", "disable_default_proxy"] as const) {
      const value = changes[key];
      if (value === null) delete options[key];
      else if (value !== undefined) (options as Record<string, unknown>)[key] = value;
    }
    patch.options = JSON.stringify(options);

    if (changes.callback_url === null) {
      patch.callback_url = null;
      patch.sealed_callback_secret = null;
    } else if (changes.callback_url !== undefined && changes.callback_secret) {
      patch.callback_url = changes.callback_url;
      patch.sealed_callback_secret = await deps.vault.sealForTenant(trx, caller.tenantId, callbackSecretContext(id), changes.callback_secret);
    }
    if (changes.skip_callbacks !== undefined) patch.skip_callbacks = changes.skip_callbacks ? 1 : 0;
    if (changes.overlap_policy !== undefined) patch.overlap_policy = changes.overlap_policy;
    if (changes.enabled !== undefined) patch.enabled = changes.enabled ? 1 : 0;

    const cronExpr = patch.cron_expr ?? row.cron_expr;
    const timeZone = patch.timezone ?? row.timezone;
    const enabled = (patch.enabled ?? row.enabled) === 1;
    const timingChanged = cronExpr !== row.cron_expr || timeZone !== row.timezone || enabled !== (row.enabled === 1);
    if (timingChanged || (enabled && row.next_fire_at === null)) patch.next_fire_at = firstFire(deps, enabled, cronExpr, timeZone);

    const updated = await store.updateSchedule(trx, caller.tenantId, id, patch);
    if (!updated) throw scheduleNotFound(id);
    return updated;
  });
}

/** Deletes the schedule; jobs it queued stay, and run. */
export async function deleteSchedule(deps: AppDeps, caller: Caller, id: string): Promise<void> {
  if (!(await store.deleteSchedule(deps.db, caller.tenantId, id))) throw scheduleNotFound(id);
}

/**
 * Runs the schedule now, recorded as a fire (last_fire_at, last_job_id);
 * next_fire_at is kept. A disabled schedule can be triggered. The overlap rule
 * holds: with overlap_policy "skip" and the previous job still queued or
 * running, it is a 409 rather than a silent skip.
 */
export async function triggerSchedule(deps: AppDeps, caller: Caller, id: string): Promise<{ jobId: string; row: store.ScheduleRow }> {
  const triggered = await deps.db.transaction().execute(async (trx) => {
    // Two triggers (or a trigger and the scheduler's fire) at once: the second
    // sees the first's job, so overlap_policy "skip" holds. The schedule's row
    // is locked before the tenant's lock that queueing a job may take.
    if (!(await store.lockSchedule(trx, caller.tenantId, id))) throw scheduleNotFound(id);
    const row = await store.findScheduleWithLastJob(trx, caller.tenantId, id);
    if (!row) throw scheduleNotFound(id);
    if (previousJobStillActive(row)) {
      throw new AppError(
        "CONFLICT",
        `Schedule ${id}'s previous job ${row.last_job_id} is still ${row.last_job_status} and its overlap_policy is "skip"; ` +
          `wait for that job to end, cancel it, or set overlap_policy to "allow".`,
        { data: { job_id: row.last_job_id } },
      );
    }
    const jobId = await enqueueScheduledJob(deps, trx, row);
    const updated = await store.recordTrigger(trx, caller.tenantId, id, deps.clock.now().toISOString(), jobId);
    if (!updated) throw scheduleNotFound(id);
    return { jobId, row: updated };
  });
  deps.runner.wake();
  return triggered;
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === "string");
}
