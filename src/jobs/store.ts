import { sql } from "kysely";
import type { Db } from "../store/database";
import { isPostgres } from "../store/postgres";
import { listInput, listSlots, PreparedQueries, PreparedQuery } from "../store/prepared";
import type { JobRow } from "../store/schema";

export type JobStatus = "queued" | "starting_browser" | "running" | "completed" | "failed" | "cancelled";
export const TERMINAL: readonly JobStatus[] = ["completed", "failed", "cancelled"];
export const ACTIVE: readonly JobStatus[] = ["queued", "starting_browser", "running"];

export type { JobRow };

export type NewJob = Omit<JobRow, "seq">;

export async function insertJob(db: Db, job: NewJob): Promise<void> {
  await db.insertInto("jobs").values(job).execute();
}

// Rows per multi-row INSERT: well under SQLite's bound-parameter limit, and
// about where a larger statement stops being cheaper per row (measured).
export const ROWS_PER_INSERT = 100;

/** Many jobs, a few multi-row statements. */
export async function insertJobs(db: Db, jobs: readonly NewJob[]): Promise<void> {
  for (let i = 0; i < jobs.length; i += ROWS_PER_INSERT) {
    await db.insertInto("jobs").values(jobs.slice(i, i + ROWS_PER_INSERT)).execute();
  }
}

export async function findJob(db: Db, tenantId: string, id: string): Promise<JobRow | undefined> {
  return db.selectFrom("jobs").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
}

export async function findJobById(db: Db, id: string): Promise<JobRow | undefined> {
  return db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst();
}

export async function listJobs(
  db: Db,
  tenantId: string,
  filter: { status?: string; workflow?: string; beforeSeq?: number; limit: number },
): Promise<JobRow[]> {
  let query = db.selectFrom("jobs").selectAll().where("tenant_id", "=", tenantId);
  if (filter.status) query = query.where("status", "=", filter.status);
  if (filter.workflow) query = query.where("workflow", "=", filter.workflow);
  if (filter.beforeSeq !== undefined) query = query.where("seq", "<", filter.beforeSeq);
  return query.orderBy("seq", "desc").limit(filter.limit).execute();
}

const credentialIdsQueries = new PreparedQueries<Record<string, string>, { id: string; name: string }>(
  (size) =>
    new PreparedQuery((db, slot) =>
      db
        .selectFrom("credentials")
        .select(["id", "name"])
        .where("tenant_id", "=", slot("tenantId"))
        .where("name", "in", listSlots(slot, "name", Number(size))),
    ),
);

/** Stored credentials of the tenant with these names: what a job will use (on every create and claim: compiled once per count of names). */
export async function findCredentialIdsByName(db: Db, tenantId: string, names: readonly string[]) {
  if (names.length === 0) return [];
  return credentialIdsQueries.for(names.length).execute(db, { tenantId, ...listInput("name", names) });
}

export type NewReference = { job_id: string; credential_id: string; tenant_id: string; created_at: string };

/** References of many jobs at once. */
export async function insertReferenceRows(db: Db, rows: readonly NewReference[]): Promise<void> {
  for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
    const chunk = rows.slice(i, i + ROWS_PER_INSERT);
    const input: Record<string, string> = {};
    chunk.forEach((row, n) => Object.assign(input, { [`job${n}`]: row.job_id, [`credential${n}`]: row.credential_id, [`tenant${n}`]: row.tenant_id, [`at${n}`]: row.created_at }));
    await referenceInserts.for(chunk.length).execute(db, input);
  }
}

// On every create and claim of a job that uses credentials: compiled once per row count.
const referenceInserts = new PreparedQueries<Record<string, string>, unknown>(
  (size) =>
    new PreparedQuery((db, slot) =>
      db
        .insertInto("job_credentials")
        .values(
          Array.from({ length: Number(size) }, (_, n) => ({
            job_id: slot(`job${n}`),
            credential_id: slot(`credential${n}`),
            tenant_id: slot(`tenant${n}`),
            created_at: slot(`at${n}`),
          })),
        )
        .onConflict((oc) => oc.doNothing()),
    ),
);

const referenced = new PreparedQuery<{ jobId: string }, { id: string; name: string; version: number; sealed_value: Uint8Array; seal_format: number }>((db, slot) =>
  db
    .selectFrom("job_credentials")
    .innerJoin("credentials", "credentials.id", "job_credentials.credential_id")
    .select(["credentials.id", "credentials.name", "credentials.version", "credentials.sealed_value", "credentials.seal_format"])
    .where("job_credentials.job_id", "=", slot("jobId")),
);

/**
 * The credentials a job holds, with what is needed to open them: read just
 * before its handler starts. Through the main connection, not the read one:
 * a job's writes come just before and after, and each write makes the read
 * connection drop its page cache (measured: no gain, within the noise).
 */
export async function referencedCredentials(db: Db, jobId: string) {
  return referenced.execute(db, { jobId });
}

const releaseQueries = new PreparedQueries<Record<string, string>, unknown>(
  (size) => new PreparedQuery((db, slot) => db.deleteFrom("job_credentials").where("job_id", "in", listSlots(slot, "job", Number(size)))),
);

/** Removes a job's references: done in the transaction that ends the job. */
export async function releaseJobReferences(db: Db, jobIds: readonly string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await releaseQueries.for(jobIds.length).execute(db, listInput("job", jobIds));
}

/**
 * Candidates for a claim: the `perTenant` oldest queued jobs of each tenant,
 * with their rank inside the tenant. The runner orders them for fairness.
 *
 * Costs O(tenants with queued jobs x log n), not O(queued jobs): the tenants
 * come from a skip scan of the (status, tenant_id, seq) index, then each
 * tenant's head from the same index. (Ranking every queued row with a window
 * function cost 5 ms a claim with 3,000 queued, measured.)
 */
export async function queuedCandidates(db: Db, perTenant: number): Promise<Candidate[]> {
  if (isPostgres(db)) return queuedCandidatesWithRunning(db, perTenant);
  const tenants = await queuedTenants.execute(db, {});
  const candidates: Candidate[] = [];
  for (const { tenant_id } of tenants) {
    const head = await queuedHead.execute(db, { tenantId: tenant_id, limit: perTenant });
    head.forEach((row, i) => candidates.push({ ...row, rank: i + 1 }));
  }
  return candidates;
}

// Both run on every claim (SQLite): compiled once.
const queuedTenants = new PreparedQuery<Record<string, never>, { tenant_id: string }>(
  () => sql<{ tenant_id: string }>`
    WITH RECURSIVE queued(tenant_id) AS (
      SELECT MIN(tenant_id) FROM jobs WHERE status = 'queued'
      UNION ALL
      SELECT (SELECT MIN(tenant_id) FROM jobs WHERE status = 'queued' AND tenant_id > queued.tenant_id)
      FROM queued WHERE queued.tenant_id IS NOT NULL
    )
    SELECT tenant_id FROM queued WHERE tenant_id IS NOT NULL`,
);
const queuedHead = new PreparedQuery<{ tenantId: string; limit: number }, { id: string; tenant_id: string; seq: number }>((db, slot) =>
  db.selectFrom("jobs").select(["id", "tenant_id", "seq"]).where("status", "=", "queued").where("tenant_id", "=", slot("tenantId")).orderBy("seq").limit(slot("limit")),
);

export interface Candidate {
  id: string;
  tenant_id: string;
  seq: number;
  /** 1 for the tenant's oldest queued job, 2 for the next... */
  rank: number;
  /** PostgreSQL: the tenant's jobs running on every instance. */
  running?: number;
}

/**
 * The same candidates on PostgreSQL, in one round trip, each with its
 * tenant's running jobs over every instance (fairness counts those, not one
 * runner's own): the tenants from the skip scan, each tenant's head by a
 * LATERAL join on the (status, tenant_id, seq) index. The heads are locked
 * for the claim's transaction, skipping rows another instance's claim holds:
 * otherwise every instance woken by the same NOTIFY would choose the same
 * oldest jobs, all but one would find them taken, and would look again at
 * once while the winner's claim is still open.
 */
async function queuedCandidatesWithRunning(db: Db, perTenant: number): Promise<Candidate[]> {
  const result = await sql<Candidate>`
    WITH RECURSIVE queued(tenant_id) AS (
      SELECT MIN(tenant_id) FROM jobs WHERE status = 'queued'
      UNION ALL
      SELECT (SELECT MIN(tenant_id) FROM jobs WHERE status = 'queued' AND tenant_id > queued.tenant_id)
      FROM queued WHERE queued.tenant_id IS NOT NULL
    )
    SELECT head.id, head.tenant_id, head.seq, head.rank::int AS rank,
      (SELECT COUNT(*) FROM jobs r WHERE r.status IN ('running', 'starting_browser') AND r.tenant_id = queued.tenant_id)::int AS running
    FROM queued CROSS JOIN LATERAL (
      -- Numbered after the LIMIT: a window over the whole queue would read all of it.
      SELECT id, tenant_id, seq, ROW_NUMBER() OVER (ORDER BY seq) AS rank FROM (
        SELECT id, tenant_id, seq FROM jobs WHERE status = 'queued' AND tenant_id = queued.tenant_id ORDER BY seq LIMIT ${perTenant}
        FOR UPDATE SKIP LOCKED
      ) oldest
    ) head
    WHERE queued.tenant_id IS NOT NULL`.execute(db);
  return result.rows;
}

export interface Lease {
  /** The claiming instance's random id. */
  owner: string;
  /** ISO time at which the lease lapses unless renewed. */
  expiresAt: string;
}

const markRunningQueries = new PreparedQueries<Record<string, string | null>, JobRow>(
  (size) =>
    new PreparedQuery((db, slot) =>
      db
        .updateTable("jobs")
        .set({ status: "running", started_at: slot("at"), lease_owner: slot("owner"), lease_expires_at: slot("expiresAt") })
        .where("id", "in", listSlots(slot, "id", Number(size)))
        .where("status", "=", "queued")
        .returningAll(),
    ),
);

/**
 * Moves the given queued jobs to running, leased to this instance; returns
 * the rows that were still queued. On PostgreSQL, rows another instance is
 * claiming at this moment are skipped (FOR UPDATE SKIP LOCKED) rather than
 * waited for: each claimer takes what is free and moves on.
 */
export async function markRunning(db: Db, ids: readonly string[], at: string, lease: Lease): Promise<JobRow[]> {
  if (ids.length === 0) return [];
  if (!isPostgres(db)) {
    return markRunningQueries.for(ids.length).execute(db, { at, owner: lease.owner, expiresAt: lease.expiresAt, ...listInput("id", ids) });
  }
  return db
    .updateTable("jobs")
    .set({ status: "running", started_at: at, lease_owner: lease.owner, lease_expires_at: lease.expiresAt })
    .where("id", "in", (eb) => eb.selectFrom("jobs").select("id").where("id", "in", ids).where("status", "=", "queued").forUpdate().skipLocked())
    .returningAll()
    .execute();
}

/**
 * Extends the lease of every job this instance runs, in one statement;
 * returns those jobs with their cancel requests (a cancel sent through
 * another instance, should its NOTIFY have been missed).
 */
export async function renewLeases(db: Db, owner: string, expiresAt: string) {
  const mine = db.selectFrom("jobs").select("id").where("lease_owner", "=", owner).where("status", "in", ["running", "starting_browser"]);
  return (
    db
      .updateTable("jobs")
      .set({ lease_expires_at: expiresAt })
      // On PostgreSQL, rows a job's end holds are skipped, not waited for: the
      // renewal would lock its rows in another order than a batch of ends and
      // could deadlock with it (seen). Those jobs are ending; should the end
      // roll back, the next renewal has them.
      .where("id", "in", isPostgres(db) ? mine.forUpdate().skipLocked() : mine)
      .where("lease_owner", "=", owner)
      .where("status", "in", ["running", "starting_browser"])
      .returning(["id", "cancel_requested_at"])
      .execute()
  );
}

/**
 * Running jobs whose lease lapsed at `now` (their instance is gone), or that
 * have none (claimed before leases existed), locked for the caller's
 * transaction; rows another reaper holds are skipped.
 */
export async function lapsedJobIds(db: Db, now: string): Promise<string[]> {
  const rows = await db
    .selectFrom("jobs")
    .select("id")
    .where("status", "in", ["running", "starting_browser"])
    .where((eb) => eb.or([eb("lease_expires_at", "is", null), eb("lease_expires_at", "<", now)]))
    .forUpdate()
    .skipLocked()
    .execute();
  return rows.map((r) => r.id);
}

export interface JobEnd {
  status: "completed" | "failed" | "cancelled";
  failure_class: string | null;
  result: string | null;
  error: string | null;
  mapped_stack: string | null;
  completed_at: string;
}

const endQueries = new PreparedQueries<Record<string, string | null>, JobRow>((key) => {
  const [size, from] = [Number(key.split("|")[0]), key.split("|")[1]!.split(",") as JobStatus[]];
  const n = Array.from({ length: size }, (_, i) => i);
  return new PreparedQuery((db, slot) => {
    const byId = (column: keyof JobEnd) => sql<string | null>`CASE id ${sql.join(n.map((i) => sql`WHEN ${slot(`id${i}`)} THEN ${slot(`${column}${i}`)}`), sql` `)} END`;
    return db
      .updateTable("jobs")
      .set({
        status: byId("status") as unknown as JobEnd["status"],
        failure_class: byId("failure_class"),
        result: byId("result"),
        error: byId("error"),
        mapped_stack: byId("mapped_stack"),
        completed_at: byId("completed_at") as unknown as string,
      })
      .where("id", "in", listSlots(slot, "id", size))
      .where("status", "in", from)
      .returningAll();
  });
});

const END_COLUMNS = ["status", "failure_class", "result", "error", "mapped_stack", "completed_at"] as const;

/**
 * Ends the jobs that are in one of `from`, in one statement (each column a
 * CASE on the id); returns the rows it ended, in no particular order: a job
 * that had already ended is not among them. Compiled once per batch size.
 */
export async function endJobs(db: Db, ends: readonly { id: string; end: JobEnd }[], from: readonly JobStatus[]): Promise<JobRow[]> {
  if (ends.length === 0) return [];
  const input: Record<string, string | null> = {};
  ends.forEach(({ id, end }, i) => {
    input[`id${i}`] = id;
    for (const column of END_COLUMNS) input[`${column}${i}`] = end[column];
  });
  return endQueries.for(`${ends.length}|${from.join(",")}`).execute(db, input);
}

export async function requestCancel(db: Db, id: string, at: string): Promise<void> {
  await db.updateTable("jobs").set({ cancel_requested_at: at }).where("id", "=", id).where("cancel_requested_at", "is", null).execute();
}

/**
 * On PostgreSQL, tells every instance (at the caller's commit) that this
 * job's cancel was requested, so the instance running it aborts it at once.
 * Its lease renewal reads cancel_requested_at too, should this be missed.
 */
export async function notifyCancel(db: Db, id: string): Promise<void> {
  if (!isPostgres(db)) return;
  await sql`SELECT pg_notify('understudy_job_cancel', ${id})`.execute(db);
}

/** Jobs a crash left running (or starting). */
export async function orphanedJobIds(db: Db): Promise<string[]> {
  const rows = await db.selectFrom("jobs").select("id").where("status", "in", ["running", "starting_browser"]).execute();
  return rows.map((r) => r.id);
}

export async function insertJobLogs(
  db: Db,
  lines: { job_id: string; tenant_id: string; workflow: string; level: string; message: string; timestamp: string }[],
): Promise<void> {
  if (lines.length === 0) return;
  await db.insertInto("job_logs").values(lines).execute();
}

export async function listJobLogs(
  db: Db,
  tenantId: string,
  filter: { jobId?: string; workflow?: string; level?: string; afterId?: number; limit: number },
) {
  let query = db.selectFrom("job_logs").selectAll().where("tenant_id", "=", tenantId);
  if (filter.jobId) query = query.where("job_id", "=", filter.jobId);
  if (filter.workflow) query = query.where("workflow", "=", filter.workflow);
  if (filter.level) query = query.where("level", "=", filter.level);
  if (filter.afterId !== undefined) query = query.where("id", ">", filter.afterId);
  return query.orderBy("id", "asc").limit(filter.limit).execute();
}

export async function readTenantSettings(db: Db, tenantId: string) {
  return db.selectFrom("tenant_settings").selectAll().where("tenant_id", "=", tenantId).executeTakeFirst();
}

export async function writeTenantSettings(db: Db, tenantId: string, disableJobFailureNotifications: boolean, at: string) {
  await db
    .insertInto("tenant_settings")
    .values({ tenant_id: tenantId, disable_job_failure_notifications: disableJobFailureNotifications ? 1 : 0, updated_at: at })
    .onConflict((oc) =>
      oc.column("tenant_id").doUpdateSet({ disable_job_failure_notifications: disableJobFailureNotifications ? 1 : 0, updated_at: at }),
    )
    .execute();
}
