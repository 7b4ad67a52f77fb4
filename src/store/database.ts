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
import { isBun } from "../runtime";
import { requireWritableDataDir } from "./data-dir";
import type { Database } from "./schema";

export type Db = Kysely<Database>;

/**
 * A second connection, for the few reads on the hot path (API key and
 * credential lookups): plain prepared statements, no query builder, no
 * connection queue. It sees only committed data, like any other reader of a
 * WAL database, so it never sees a transaction of the main connection half way.
 */
export interface Reader {
  get<T>(sql: string, params: readonly unknown[]): T | undefined;
  close(): void;
}

const readers = new WeakMap<object, Reader>();

/** The read connection of a database opened by openDatabase; undefined inside a transaction or for :memory:. */
export function readerOf(db: Db): Reader | undefined {
  return readers.get(db);
}

export interface OpenOptions {
  /** A file path, or ":memory:". */
  path: string;
  synchronous: "normal" | "full";
  busyTimeoutMs: number;
}


/**
 * The one place that picks the SQLite driver by runtime: bun:sqlite under
 * Bun (Bun refuses better-sqlite3), better-sqlite3@12 under Node.
 */
async function openRaw(path: string, busyTimeoutMs: number): Promise<{ db: SqliteDatabase; exec: (sql: string) => void; reader: () => Reader }> {
  if (isBun) {
    const { Database: BunDatabase } = await import("bun:sqlite");
    const raw = new BunDatabase(path, { create: true });
    const statements = new Map<string, SqliteStatement>();
    return {
      exec: (sql) => raw.run(sql),
      reader() {
        const conn = new BunDatabase(path);
        conn.run("PRAGMA query_only = ON");
        conn.run(`PRAGMA busy_timeout = ${Math.floor(busyTimeoutMs)}`);
        return {
          get: <T>(sql: string, params: readonly unknown[]) => (conn.query(sql).get(...(params as never[])) as T | null) ?? undefined,
          close: () => conn.close(),
        };
      },
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
    reader() {
      const conn = new BetterSqlite(path);
      conn.pragma("query_only = ON");
      conn.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
      const cache = new Map<string, { get(...params: unknown[]): unknown }>();
      return {
        get<T>(sql: string, params: readonly unknown[]) {
          let statement = cache.get(sql);
          if (!statement) cache.set(sql, (statement = conn.prepare(sql) as unknown as { get(...params: unknown[]): unknown }));
          return statement.get(...(params as unknown[])) as T | undefined;
        },
        close: () => conn.close(),
      };
    },
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
  constructor(
    config: ConstructorParameters<typeof SqliteDriver>[0],
    private readonly onDestroy: () => void,
  ) {
    super(config);
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }

  override async destroy(): Promise<void> {
    this.onDestroy();
    await super.destroy();
  }
}

export async function openDatabase(options: OpenOptions): Promise<Db> {
  requireWritableDataDir(options.path);
  if (options.path !== ":memory:" && !existsSync(options.path)) {
    // Created empty (a valid empty database) with owner-only permissions;
    // SQLite gives the -wal and -shm files the same mode.
    mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
    writeFileSync(options.path, "", { mode: 0o600 });
  }
  const { db: raw, exec, reader: openReader } = await openRaw(options.path, options.busyTimeoutMs);
  applyPragmas(exec, options);
  // :memory: is private to its connection: no second one can read it.
  const reader = options.path === ":memory:" ? undefined : openReader();
  const dialect: Dialect = {
    createAdapter: () => new SqliteAdapter(),
    createDriver: () => new ImmediateSqliteDriver({ database: raw }, () => reader?.close()),
    createQueryCompiler: () => new SqliteQueryCompiler(),
    createIntrospector: (db) => new SqliteIntrospector(db),
  };
  const db = new Kysely<Database>({ dialect });
  if (reader) readers.set(db, reader);
  return db;
}
