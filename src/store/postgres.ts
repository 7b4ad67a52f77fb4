import type pg from "pg";
import { Kysely, PostgresAdapter, PostgresDialect, sql, type DatabaseIntrospector, type DatabaseMetadata, type SchemaMetadata, type TableMetadata } from "kysely";
import { FatalError } from "../errors";
import type { Db } from "./database";
import type { Database } from "./schema";

/**
 * PostgreSQL (UNDERSTUDY_DATABASE_URL), for several Understudy instances on
 * one database: the same store functions as SQLite, through Kysely's
 * Postgres dialect over a `pg` pool.
 */

/**
 * The `pg` module, loaded on first use: a server on SQLite never pays for
 * loading it (about 15 ms of every start, measured).
 */
let loaded: Promise<typeof pg> | undefined;
export function loadPg(): Promise<typeof pg> {
  return (loaded ??= import("pg").then(({ default: module }) => {
    // COUNT(*) and bigserial ids are int8, SUM() is numeric: pg gives them as
    // strings unless told; every such value here fits a double.
    module.types.setTypeParser(module.types.builtins.INT8, (value) => Number(value));
    module.types.setTypeParser(module.types.builtins.NUMERIC, (value) => Number(value));
    return module;
  }));
}

export interface PostgresOptions {
  url: string;
  poolSize: number;
}

/** Where the URL points, for messages: host, port, database and user, never the password. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const host = parsed.hostname || parsed.searchParams.get("host") || "localhost";
    return `PostgreSQL ${parsed.username ? `${decodeURIComponent(parsed.username)}@` : ""}${host}:${parsed.port || 5432}${parsed.pathname && parsed.pathname !== "/" ? parsed.pathname : ""}`;
  } catch {
    return "PostgreSQL";
  }
}

/** Opens the pool and checks that the server answers; a failure is a start-up error naming where, never the password. */
export async function openPostgres(options: PostgresOptions): Promise<Db> {
  const pg = await loadPg();
  const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 });
  // An idle client that loses its connection (the database restarted) must not crash the process.
  pool.on("error", () => {});
  try {
    const client = await pool.connect();
    client.release();
  } catch (error) {
    await pool.end().catch(() => {});
    const code = (error as { code?: string }).code;
    const why = error instanceof Error ? error.message.replaceAll(options.url, "<UNDERSTUDY_DATABASE_URL>") : String(error);
    throw new FatalError(`Cannot connect to ${describeDatabaseUrl(options.url)}${code ? ` (${code})` : ""}: ${why}. Check UNDERSTUDY_DATABASE_URL and that the database server runs.`);
  }
  return new Kysely<Database>({ dialect: new OwnSchemaPostgresDialect({ pool }) });
}

/**
 * Kysely's Postgres dialect, introspecting only the connection's own schema
 * (the one migrations run in). Kysely's own introspector reads every schema
 * of the database and fails when another schema is dropped meanwhile (seen
 * with one database shared by many test schemas).
 */
class OwnSchemaPostgresDialect extends PostgresDialect {
  override createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new OwnSchemaIntrospector(db);
  }
}

class OwnSchemaIntrospector implements DatabaseIntrospector {
  constructor(private readonly db: Kysely<any>) {}

  async getSchemas(): Promise<SchemaMetadata[]> {
    const { rows } = await sql<{ name: string }>`SELECT current_schema() AS name`.execute(this.db);
    return rows.filter((row) => row.name !== null);
  }

  async getTables(): Promise<TableMetadata[]> {
    const { rows } = await sql<{ name: string; schema: string; type: string }>`
      SELECT table_name AS name, table_schema AS schema, table_type AS type
      FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`.execute(this.db);
    return rows.map((row) => ({ name: row.name, schema: row.schema, isView: row.type === "VIEW", columns: [] }));
  }

  async getMetadata(): Promise<DatabaseMetadata> {
    return { tables: await this.getTables() };
  }
}

/** Which engine a database (or a transaction on it) runs on. */
export function isPostgres(db: Db): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}
