import { sql } from "kysely";
import type { Db } from "./database";
import { isPostgres } from "./postgres";

/**
 * Serialises the write transactions of one tenant that must see each
 * other's effects (a credential's delete against a job taking a reference to
 * it, a profile's delete against a job using it). SQLite already runs one
 * write transaction at a time (BEGIN IMMEDIATE); on PostgreSQL (READ
 * COMMITTED, several instances) this takes a transaction-level advisory lock
 * per tenant, released at commit or rollback. Take several in a sorted order
 * (lockTenants) so that two transactions never wait on each other.
 */
export async function lockTenant(trx: Db, tenantId: string): Promise<void> {
  if (!isPostgres(trx)) return;
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`understudy:tenant:${tenantId}`}, 0))`.execute(trx);
}

export async function lockTenants(trx: Db, tenantIds: Iterable<string>): Promise<void> {
  if (!isPostgres(trx)) return;
  for (const id of [...new Set(tenantIds)].sort()) await lockTenant(trx, id);
}
