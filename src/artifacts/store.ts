import { sql } from "kysely";
import type { Db } from "../store/database";
import type { JobArtifactsTable } from "../store/schema";

export type ArtifactRow = JobArtifactsTable;
export type ArtifactSummary = Omit<ArtifactRow, "bytes">;

const SUMMARY = ["id", "tenant_id", "job_id", "kind", "content_type", "size_bytes", "created_at"] as const;

export async function insertArtifacts(db: Db, rows: readonly ArtifactRow[]): Promise<void> {
  for (const row of rows) await db.insertInto("job_artifacts").values(row).execute();
}

/** A job's artifacts, oldest first; empty for another tenant's job. */
export async function listJobArtifacts(db: Db, tenantId: string, jobId: string): Promise<ArtifactSummary[]> {
  return db.selectFrom("job_artifacts").select(SUMMARY).where("tenant_id", "=", tenantId).where("job_id", "=", jobId).orderBy("created_at").orderBy("kind").orderBy("id").execute();
}

export async function findArtifact(db: Db, tenantId: string, id: string): Promise<ArtifactRow | undefined> {
  return db.selectFrom("job_artifacts").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
}

/** Rows deleted per statement: each delete is a short write transaction of its own. */
export const PRUNE_BATCH = 500;

/** Deletes one batch of artifacts created before `before`; returns how many. */
export async function deleteArtifactsBefore(db: Db, before: string): Promise<number> {
  const result = await sql`DELETE FROM job_artifacts WHERE id IN (SELECT id FROM job_artifacts WHERE created_at < ${before} LIMIT ${PRUNE_BATCH})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Keeps a tenant's artifacts under `maxBytes`: its oldest are deleted until
 * the rest fit (at most one batch per call). Returns how many were deleted.
 */
export async function enforceTenantCap(db: Db, tenantId: string, maxBytes: number): Promise<number> {
  if (maxBytes <= 0) return 0;
  const rows = await db
    .selectFrom("job_artifacts")
    .select(["id", "size_bytes"])
    .where("tenant_id", "=", tenantId)
    .orderBy("created_at", "desc")
    .orderBy("id", "desc")
    .execute();
  let total = 0;
  const drop: string[] = [];
  for (const row of rows) {
    total += row.size_bytes;
    if (total > maxBytes) drop.push(row.id);
  }
  for (let i = 0; i < drop.length; i += PRUNE_BATCH) {
    await db.deleteFrom("job_artifacts").where("id", "in", drop.slice(i, i + PRUNE_BATCH)).execute();
  }
  return drop.length;
}

/** Tenants whose artifacts add up to more than `maxBytes`. */
export async function tenantsOverCap(db: Db, maxBytes: number): Promise<string[]> {
  if (maxBytes <= 0) return [];
  const rows = await db
    .selectFrom("job_artifacts")
    .select(["tenant_id", sql<number>`SUM(size_bytes)`.as("total")])
    .groupBy("tenant_id")
    .having(sql`SUM(size_bytes)`, ">", maxBytes)
    .execute();
  return rows.map((r) => r.tenant_id);
}

/** One batch of log lines of jobs that ended before `before`. */
export async function deleteJobLogsBefore(db: Db, before: string): Promise<number> {
  const result = await sql`DELETE FROM job_logs WHERE id IN (
    SELECT l.id FROM job_logs l JOIN jobs j ON j.id = l.job_id
    WHERE j.status IN ('completed', 'failed', 'cancelled') AND j.completed_at IS NOT NULL AND j.completed_at < ${before}
    LIMIT ${PRUNE_BATCH})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** One batch of finished (succeeded or failed) webhook deliveries that ended before `before`; pending ones are kept. */
export async function deleteDeliveriesBefore(db: Db, before: string): Promise<number> {
  const result = await sql`DELETE FROM webhook_deliveries WHERE seq IN (
    SELECT seq FROM webhook_deliveries
    WHERE status IN ('succeeded', 'failed') AND COALESCE(completed_at, updated_at) < ${before}
    LIMIT ${PRUNE_BATCH})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
