import { sql, type RawBuilder } from "kysely";
import type { Db } from "./database";
import { isPostgres } from "./postgres";

/**
 * The order rows were inserted in, to break a tie of created_at within one
 * millisecond: SQLite's rowid; on PostgreSQL (no rowid) the id, a UUIDv7 that
 * increases within a millisecond too (src/clock.ts).
 */
export function insertionOrder(db: Db): RawBuilder<unknown> {
  return isPostgres(db) ? sql`id` : sql`rowid`;
}
