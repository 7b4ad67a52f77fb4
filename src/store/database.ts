import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import {
  CompiledQuery,
  Kysely,
  SqliteAdapter,
  SqliteDriver,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type SqliteDatabase,
  type SqliteStatement,
} from "kysely";
import type { Database } from "./schema";

export type Db = Kysely<Database>;

export interface OpenOptions {
  /** A file path, or ":memory:". */
  path: string;
  synchronous: "normal" | "full";
  busyTimeoutMs: number;
}

export const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/**
 * The one place that picks the SQLite driver by runtime: bun:sqlite under
 * Bun (Bun refuses better-sqlite3), better-sqlite3@12 under Node.
 */
async function openRaw(path: string): Promise<{ db: SqliteDatabase; exec: (sql: string) => void }> {
  if (isBun) {
    const { Database: BunDatabase } = await import("bun:sqlite");
    const raw = new BunDatabase(path, { create: true });
    const statements = new Map<string, SqliteStatement>();
    return {
      exec: (sql) => raw.run(sql),
      db: {
        close: () => raw.close(),
        prepare(sql) {
          let statement = statements.get(sql);
          if (!statement) {
            const stmt = raw.query(sql);
            statement = {
              // bun statements have no `reader` flag; a statement that returns
              // columns (SELECT, or RETURNING) is a reader.
              reader: stmt.columnNames.length > 0,
              all: (p) => stmt.all(...(p as never[])),
              run: (p) => stmt.run(...(p as never[])),
              iterate: (p) => stmt.iterate(...(p as never[])),
            };
            cacheStatement(statements, sql, statement);
          }
          return statement;
        },
      },
    };
  }
  const { default: BetterSqlite } = await import("better-sqlite3");
  const raw = new BetterSqlite(path);
  const statements = new Map<string, SqliteStatement>();
  return {
    exec: (sql) => void raw.exec(sql),
    db: {
      close: () => raw.close(),
      prepare(sql) {
        let statement = statements.get(sql);
        if (!statement) {
          statement = raw.prepare(sql) as unknown as SqliteStatement;
          cacheStatement(statements, sql, statement);
        }
        return statement;
      },
    },
  };
}

// Kysely prepares every query it runs; the same few hundred SQL strings recur,
// so preparing each once is a large share of a request's time saved.
function cacheStatement(cache: Map<string, SqliteStatement>, sql: string, statement: SqliteStatement) {
  if (cache.size >= 500) cache.clear();
  cache.set(sql, statement);
}

/**
 * Connection settings, in one place:
 * - WAL: readers never block the writer, and a crash never corrupts the file.
 * - synchronous=NORMAL (default): in WAL mode a commit survives a process
 *   crash (SIGKILL); only a power loss can drop the last commits. FULL
 *   fsyncs every commit, for those who want that too, at a large write cost.
 * - foreign_keys: SQLite leaves them off unless asked, per connection.
 * - busy_timeout: the CLI and the server may write the same file.
 */
function applyPragmas(exec: (sql: string) => void, options: OpenOptions) {
  exec("PRAGMA journal_mode = WAL");
  exec(`PRAGMA synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
  exec("PRAGMA foreign_keys = ON");
  exec(`PRAGMA busy_timeout = ${Math.floor(options.busyTimeoutMs)}`);
}

/**
 * Kysely's SQLite driver opens transactions with a deferred BEGIN; with more
 * than one process on the file that can fail with SQLITE_BUSY at the first
 * write instead of waiting. BEGIN IMMEDIATE takes the write lock up front,
 * honouring busy_timeout.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

export async function openDatabase(options: OpenOptions): Promise<Db> {
  if (options.path !== ":memory:" && !existsSync(options.path)) {
    // Created empty (a valid empty database) with owner-only permissions;
    // SQLite gives the -wal and -shm files the same mode.
    mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
    writeFileSync(options.path, "", { mode: 0o600 });
  }
  const { db: raw, exec } = await openRaw(options.path);
  applyPragmas(exec, options);
  const dialect: Dialect = {
    createAdapter: () => new SqliteAdapter(),
    createDriver: () => new ImmediateSqliteDriver({ database: raw }),
    createQueryCompiler: () => new SqliteQueryCompiler(),
    createIntrospector: (db) => new SqliteIntrospector(db),
  };
  return new Kysely<Database>({ dialect });
}
