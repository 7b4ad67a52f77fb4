import { Migrator, sql } from "kysely";
import { FatalError } from "../errors";
import type { Db } from "./database";
import { migrations } from "./migrations";
import { isPostgres } from "./postgres";

/**
 * Brings the schema up to date. A database that has a migration this build
 * does not know was written by a newer Understudy: running on it could
 * corrupt it, so it is refused. On PostgreSQL, instances starting together
 * migrate once: Kysely's migrator holds an advisory lock while it runs, and
 * the others then find nothing left to do.
 */
export async function migrateToLatest(db: Db): Promise<void> {
  const known = new Set(Object.keys(migrations));
  const table = isPostgres(db)
    ? await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'kysely_migration'`.execute(db)
    : await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'kysely_migration'`.execute(db);
  if (table.rows.length > 0) {
    const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db);
    const unknown = applied.rows.map((r) => r.name).filter((name) => !known.has(name));
    if (unknown.length > 0) {
      throw new FatalError(
        `This database was written by a newer version of Understudy (it has schema migration ${unknown.join(", ")}, ` +
          `which this version does not know). Run the newer version, or restore a backup made with this one.`,
      );
    }
  }
  // On PostgreSQL, the migration tables are looked for in the connection's own schema
  // (Kysely would otherwise take another schema's of the same name for them).
  const schema = isPostgres(db) ? (await sql<{ schema: string }>`SELECT current_schema() AS schema`.execute(db)).rows[0]?.schema : undefined;
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations }, ...(schema ? { migrationTableSchema: schema } : {}) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new FatalError(`Database migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
