import { insertionOrder } from "../store/dialect";
import { isPostgres } from "../store/postgres";
import { sql, type Selectable, type Updateable } from "kysely";
import type { Db } from "../store/database";
import type { SchedulesTable } from "../store/schema";

export type ScheduleRow = Selectable<SchedulesTable>;
export type SchedulePatch = Omit<Updateable<SchedulesTable>, "id" | "tenant_id" | "created_at">;

/** A schedule with the status of its last job (null: none, or gone), for the overlap rule. */
export type ScheduleWithLastJob = ScheduleRow & { last_job_status: string | null };

export async function insertSchedule(db: Db, row: ScheduleRow): Promise<void> {
  await db.insertInto("schedules").values(row).execute();
}

export async function findSchedule(db: Db, tenantId: string, id: string): Promise<ScheduleRow | undefined> {
  return db.selectFrom("schedules").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
}

/**
 * Locks one schedule's row until the transaction ends (PostgreSQL; SQLite
 * runs one write transaction at a time): an edit or a trigger then reads,
 * and builds on, the row as the last change (or fire) left it. False when
 * there is no such schedule.
 */
export async function lockSchedule(db: Db, tenantId: string, id: string): Promise<boolean> {
  if (!isPostgres(db)) return (await findSchedule(db, tenantId, id)) !== undefined;
  const row = await db.selectFrom("schedules").select("id").where("tenant_id", "=", tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
  return row !== undefined;
}

const withLastJob = (db: Db) =>
  db
    .selectFrom("schedules")
    .leftJoin("jobs", "jobs.id", "schedules.last_job_id")
    .selectAll("schedules")
    .select("jobs.status as last_job_status");

export async function findScheduleWithLastJob(db: Db, tenantId: string, id: string): Promise<ScheduleWithLastJob | undefined> {
  return withLastJob(db).where("schedules.tenant_id", "=", tenantId).where("schedules.id", "=", id).executeTakeFirst();
}

/** Newest first. */
export async function listSchedules(
  db: Db,
  tenantId: string,
  filter: { enabled?: boolean; workflow?: string; limit: number },
): Promise<ScheduleRow[]> {
  let query = db.selectFrom("schedules").selectAll().where("tenant_id", "=", tenantId);
  if (filter.enabled !== undefined) query = query.where("enabled", "=", filter.enabled ? 1 : 0);
  if (filter.workflow !== undefined) query = query.where("workflow", "=", filter.workflow);
  // Insertion order breaks a tie within one millisecond (ids are random below the millisecond).
  return query.orderBy("created_at", "desc").orderBy(insertionOrder(db), "desc").limit(filter.limit).execute();
}

export async function updateSchedule(db: Db, tenantId: string, id: string, patch: SchedulePatch): Promise<ScheduleRow | undefined> {
  return db.updateTable("schedules").set(patch).where("tenant_id", "=", tenantId).where("id", "=", id).returningAll().executeTakeFirst();
}

export async function deleteSchedule(db: Db, tenantId: string, id: string): Promise<boolean> {
  const result = await db.deleteFrom("schedules").where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/**
 * Enabled schedules due at `nowIso`, oldest due first (index schedules_due),
 * claimed for the caller's transaction. On PostgreSQL, where several
 * instances tick at once, the rows are locked FOR UPDATE and rows another
 * tick holds are skipped: that tick fires them and moves next_fire_at on
 * before it lets go, and a row whose lock comes free between this
 * statement's snapshot and its lock is checked again on its committed
 * version, so it is no longer due. One due time fires once, with no leader
 * to elect: an instance that dies mid-tick rolls back, and the next tick
 * anywhere fires what it held. SQLite has one writer, so the transaction is
 * the claim.
 */
export async function dueSchedules(db: Db, nowIso: string, limit: number): Promise<ScheduleWithLastJob[]> {
  const query = withLastJob(db)
    .where("schedules.enabled", "=", 1)
    .where("schedules.next_fire_at", "<=", nowIso)
    .orderBy("schedules.next_fire_at")
    .limit(limit);
  // "OF schedules": the joined job row is only read (and may be absent).
  return isPostgres(db) ? query.forUpdate("schedules").skipLocked().execute() : query.execute();
}

/** When the next enabled schedule is due; null when none is. */
export async function earliestFireAt(db: Db): Promise<string | null> {
  const row = await db
    .selectFrom("schedules")
    .select((eb) => eb.fn.min("next_fire_at").as("at"))
    .where("enabled", "=", 1)
    .executeTakeFirst();
  return row?.at ?? null;
}

/** What one fire of the scheduler changes on its schedule. */
export interface FireRecord {
  id: string;
  next_fire_at: string | null;
  /** Set when a job was queued. */
  fired_at?: string;
  job_id?: string;
  /** Set when the fire was skipped or could not queue its job. */
  error?: string;
  /** 1 when the fire could not queue its job. */
  failed?: 0 | 1;
}

/**
 * Writes the outcome of many fires in one statement: per-fire UPDATEs cost
 * more than the fires themselves when thousands are due at once.
 */
export async function recordFires(db: Db, fires: readonly FireRecord[]): Promise<void> {
  if (fires.length === 0) return;
  if (isPostgres(db)) {
    await sql`
      UPDATE schedules SET
        next_fire_at = f.next_fire_at,
        last_fire_at = coalesce(f.fired_at, schedules.last_fire_at),
        last_job_id = coalesce(f.job_id, schedules.last_job_id),
        last_error = coalesce(f.error, schedules.last_error),
        consecutive_failures = schedules.consecutive_failures + coalesce(f.failed, 0)
      FROM jsonb_to_recordset(${JSON.stringify(fires)}::jsonb) AS f(id text, next_fire_at text, fired_at text, job_id text, error text, failed integer)
      WHERE schedules.id = f.id`.execute(db);
    return;
  }
  await sql`
    UPDATE schedules SET
      next_fire_at = json_extract(f.value, '$.next_fire_at'),
      last_fire_at = coalesce(json_extract(f.value, '$.fired_at'), schedules.last_fire_at),
      last_job_id = coalesce(json_extract(f.value, '$.job_id'), schedules.last_job_id),
      last_error = coalesce(json_extract(f.value, '$.error'), schedules.last_error),
      consecutive_failures = schedules.consecutive_failures + coalesce(json_extract(f.value, '$.failed'), 0)
    FROM json_each(${JSON.stringify(fires)}) AS f
    WHERE schedules.id = json_extract(f.value, '$.id')`.execute(db);
}

/** A manual trigger: a fire that leaves next_fire_at as it is. */
export async function recordTrigger(db: Db, tenantId: string, id: string, firedAt: string, jobId: string): Promise<ScheduleRow | undefined> {
  return updateSchedule(db, tenantId, id, { last_fire_at: firedAt, last_job_id: jobId });
}

/** A job of the schedule ended: success clears the failure count and error, anything else adds to them. */
export async function recordJobEnd(db: Db, tenantId: string, id: string, outcome: { error: string | null }): Promise<void> {
  await db
    .updateTable("schedules")
    .set(
      outcome.error === null
        ? { last_error: null, consecutive_failures: 0 }
        : { last_error: outcome.error, consecutive_failures: sql<number>`consecutive_failures + 1` },
    )
    .where("tenant_id", "=", tenantId)
    .where("id", "=", id)
    .execute();
}
