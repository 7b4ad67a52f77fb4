import type { Clock, IdSource } from "../clock";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { RunnerHandle } from "../http/route";
import type { JobEndHook } from "../jobs/lifecycle";
import { insertQueuedJob, insertQueuedJobs, type CreateJobInput } from "../jobs/service";
import { ACTIVE, type JobStatus } from "../jobs/store";
import type { Logger } from "../log";
import { scheduleLag } from "../metrics/registry";
import type { Db } from "../store/database";
import { IntegrityError, VaultUnavailableError, type Vault } from "../vault/vault";
import type { WorkflowCatalog } from "../workflows/catalog";
import { nextFireAfter } from "./cron";
import * as store from "./store";

export interface SchedulerDeps {
  db: Db;
  vault: Vault;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  /** Which workflow a schedule's name means for its tenant (deployed, else a file). */
  catalog: WorkflowCatalog;
  runner: RunnerHandle;
  config: Pick<Config, "schedules">;
}

/** Where a schedule's sealed values live, bound into their ciphertexts: a value copied to another row does not open. */
export const paramsCredentialsContext = (scheduleId: string) => `schedule/${scheduleId}/params-credentials`;
export const callbackSecretContext = (scheduleId: string) => `schedule/${scheduleId}/callback-secret`;

/**
 * Fires per transaction. Each commit costs 10-20 ms on this machine (WAL
 * frames, checkpoints), so larger batches queue 10,000 fires sooner; 1,000
 * holds the write lock for about 100 ms, which API writes wait out.
 */
const FIRES_PER_TRANSACTION = 1000;
const MAX_ERROR_CHARS = 1000;
/** How soon a tick looks again when the due schedules are being fired by another instance. */
const HELD_ELSEWHERE_RETRY_MS = 50;

export interface TickResult {
  /** Jobs queued. */
  fired: number;
  /** Fires skipped because the previous job was still queued or running. */
  skipped: number;
  /** Fires that could not queue their job (unknown workflow, ...). */
  failed: number;
}

/**
 * The job a fire of this schedule queues: its params (with the opened
 * credentials), run options and callback. Sealed values that do not open are
 * an AppError, like any other reason a fire cannot queue its job.
 */
async function scheduledJobInput(vault: Vault, trx: Db, row: store.ScheduleRow): Promise<CreateJobInput> {
  try {
    const params = JSON.parse(row.params) as Record<string, unknown>;
    if (row.sealed_params_credentials) {
      const opened = await vault.openForTenant(trx, row.tenant_id, paramsCredentialsContext(row.id), row.sealed_params_credentials);
      params.credentials = JSON.parse(opened);
    }
    const options = JSON.parse(row.options) as Pick<CreateJobInput, "start_url" | "viewport" | "gpu" | "residential_proxy" | "disable_default_proxy">;
    return {
      workflow: row.workflow,
      params,
      timeout_seconds: row.timeout_seconds,
      start_url: options.start_url,
      viewport: options.viewport,
      gpu: options.gpu,
      residential_proxy: options.residential_proxy,
      disable_default_proxy: options.disable_default_proxy,
      callback_url: row.callback_url ?? undefined,
      callback_secret: row.sealed_callback_secret
        ? await vault.openForTenant(trx, row.tenant_id, callbackSecretContext(row.id), row.sealed_callback_secret)
        : undefined,
      skip_callbacks: row.skip_callbacks === 1,
      schedule_id: row.id,
    };
  } catch (error) {
    // One tenant's missing data key stops that schedule's fires, not every schedule's tick.
    if (error instanceof VaultUnavailableError) throw new AppError("INTERNAL_SERVER_ERROR", error.clientMessage, { data: { problem: error.problem } });
    if (!(error instanceof IntegrityError)) throw error;
    throw new AppError(
      "CONFLICT",
      `The stored params.credentials or callback_secret of schedule ${row.id} do not open; set them again with /v1/schedules/update.`,
    );
  }
}

/**
 * Queues one job of the schedule in the caller's transaction (a manual
 * trigger). Throws an AppError when it cannot (unknown or failed workflow,
 * sealed values that do not open); nothing is written then.
 */
export async function enqueueScheduledJob(
  deps: Pick<SchedulerDeps, "catalog" | "vault" | "clock" | "newId">,
  trx: Db,
  row: store.ScheduleRow,
): Promise<string> {
  const { id } = await insertQueuedJob(deps, trx, row.tenant_id, await scheduledJobInput(deps.vault, trx, row));
  return id;
}

/** Whether the overlap rule holds this schedule back: its previous job is still queued or running. */
export function previousJobStillActive(row: store.ScheduleWithLastJob): boolean {
  return row.overlap_policy === "skip" && row.last_job_status !== null && ACTIVE.includes(row.last_job_status as JobStatus);
}

/**
 * Keeps a schedule's last_error and consecutive_failures in step with its
 * jobs, in the transaction that ends each job: success resets them, any
 * other end (failed, timed out, interrupted, cancelled) counts as a failure.
 */
export function scheduleJobEndHook(_deps: SchedulerDeps): JobEndHook {
  return async (trx, job) => {
    if (!job.schedule_id) return;
    const error =
      job.status === "completed"
        ? null
        : truncate(`Job ${job.id} ${job.status}${job.failure_class ? ` (${job.failure_class})` : ""}${job.error ? `: ${job.error}` : "."}`);
    await store.recordJobEnd(trx, job.tenant_id, job.schedule_id, { error });
  };
}

/**
 * Enqueues jobs of due schedules; it never runs work itself (the runner
 * does). Each fire's job and the schedule's new last_fire_at, next_fire_at
 * and last_job_id are written in one transaction, so a crash can neither lose
 * a fire that advanced its schedule nor fire twice.
 *
 * The next fire is always the first cron time after *now*: a schedule found
 * more than one period late (the server was down) fires once, then goes on
 * with its cron.
 */
export class Scheduler {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(readonly deps: SchedulerDeps) {}

  /** Ticks now, then whenever the next schedule is due (at most config.schedules.tickMs apart). */
  start(): void {
    if (this.#timer || this.#running || this.#stopped) return;
    this.#arm(0);
  }

  /** Stops the timer and waits for a tick in progress to commit. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** Fires every schedule due at the clock's now. Called by the timer; tests call it directly. */
  async tick(): Promise<TickResult> {
    const now = this.deps.clock.now();
    const nowIso = now.toISOString();
    // Thousands of schedules share a few expressions: each (expression, zone)
    // is asked for its next time once per tick, all relative to the same now.
    const nextTimes = new Map<string, string | null>();
    const nextFire = (row: store.ScheduleRow) => {
      const key = `${row.cron_expr}\n${row.timezone}`;
      let next = nextTimes.get(key);
      if (next === undefined) {
        try {
          next = nextFireAfter(row.cron_expr, row.timezone, now)?.toISOString() ?? null;
        } catch {
          // Only a row edited outside the API can get here; it stops instead of failing every tick.
          next = null;
        }
        nextTimes.set(key, next);
      }
      return next;
    };
    const total: TickResult = { fired: 0, skipped: 0, failed: 0 };
    for (;;) {
      const result = { fired: 0, skipped: 0, failed: 0, due: 0 };
      const lagsSeconds: number[] = [];
      await this.deps.db.transaction().execute(async (trx) => {
        const due = await store.dueSchedules(trx, nowIso, FIRES_PER_TRANSACTION);
        result.due = due.length;
        const records: store.FireRecord[] = [];
        const cannotQueue = (row: store.ScheduleRow, next_fire_at: string | null, error: AppError) => {
          result.failed++;
          const message = truncate(`The fire due at ${row.next_fire_at} could not queue a job: ${error.message}`);
          records.push({ id: row.id, next_fire_at, error: message, failed: 1 });
          this.deps.log.log("warn", "schedule fire failed", { schedule_id: row.id, tenant_id: row.tenant_id, error: message });
        };
        // The jobs of the whole batch are inserted together: per-job statements
        // would cost more than everything else a fire does.
        const firing: { row: store.ScheduleRow; next_fire_at: string | null }[] = [];
        const requests: { tenantId: string; input: CreateJobInput }[] = [];
        for (const row of due) {
          const next_fire_at = nextFire(row);
          if (previousJobStillActive(row)) {
            result.skipped++;
            records.push({
              id: row.id,
              next_fire_at,
              error: `Skipped the fire due at ${row.next_fire_at}: the previous job ${row.last_job_id} is still ${row.last_job_status} and overlap_policy is "skip".`,
            });
            continue;
          }
          try {
            requests.push({ tenantId: row.tenant_id, input: await scheduledJobInput(this.deps.vault, trx, row) });
            firing.push({ row, next_fire_at });
          } catch (error) {
            if (!(error instanceof AppError)) throw error;
            cannotQueue(row, next_fire_at, error);
          }
        }
        // An AppError (unknown workflow, ...) fails its own fire and writes
        // nothing; any other error rolls the batch back, to be retried next tick.
        const outcomes = await insertQueuedJobs(this.deps, trx, requests);
        const firedAt = this.deps.clock.now().toISOString();
        outcomes.forEach((outcome, i) => {
          const { row, next_fire_at } = firing[i]!;
          if ("error" in outcome) return cannotQueue(row, next_fire_at, outcome.error);
          result.fired++;
          records.push({ id: row.id, next_fire_at, fired_at: firedAt, job_id: outcome.id });
          if (row.next_fire_at) lagsSeconds.push((Date.parse(firedAt) - Date.parse(row.next_fire_at)) / 1000);
        });
        await store.recordFires(trx, records);
      });
      // Observed after commit: a rolled-back batch fired nothing.
      for (const lag of lagsSeconds) scheduleLag.observe({}, Math.max(0, lag));
      if (result.fired > 0) this.deps.runner.wake();
      total.fired += result.fired;
      total.skipped += result.skipped;
      total.failed += result.failed;
      if (result.due < FIRES_PER_TRANSACTION) return total;
    }
  }

  #arm(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#tickAndRearm().finally(() => (this.#running = undefined));
    }, delayMs);
  }

  async #tickAndRearm(): Promise<void> {
    let delay = this.deps.config.schedules.tickMs;
    try {
      const started = performance.now();
      const tickedAt = this.deps.clock.now().getTime();
      const result = await this.tick();
      if (result.fired + result.skipped + result.failed > 0) {
        this.deps.log.log("info", "schedules fired", { ...result, duration_ms: Math.round(performance.now() - started) });
      }
      // Sleep until the next schedule is due rather than a whole tick: fires
      // start on time instead of up to tickMs late. A schedule created
      // meanwhile is seen within tickMs.
      const earliest = await store.earliestFireAt(this.deps.db);
      if (earliest !== null) {
        const untilDue = Date.parse(earliest) - this.deps.clock.now().getTime();
        // Due, yet this tick found nothing: another instance's tick holds those
        // rows (PostgreSQL) and moves them on when it commits. Look again soon,
        // not in a tight loop.
        // (Due by the time the tick looked, not merely by now: one that fell due since is simply due.)
        const heldElsewhere = Date.parse(earliest) <= tickedAt && result.fired + result.skipped + result.failed === 0;
        delay = heldElsewhere ? Math.min(delay, HELD_ELSEWHERE_RETRY_MS) : Math.max(0, Math.min(delay, untilDue));
      }
    } catch (error) {
      this.deps.log.log("error", "scheduler tick failed", { error: error instanceof Error ? `${error.name}: ${error.message}` : "non-error thrown" });
    }
    this.#arm(delay);
  }
}

const truncate = (text: string) => (text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS - 1)}…` : text);
