import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
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
import { FatalError } from "../errors";
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

const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");
const RESTORE_HINT = "restore the database from a backup (`understudy restore FILE`, server stopped)";

/**
 * Why an existing file cannot be opened as the database, or undefined when
 * it can. Only a first start (no file at all) makes a new database: a file
 * that is there but empty, unreadable or not SQLite would otherwise start
 * as a new, empty database and hide every stored row (every API key 401,
 * with no word why).
 */
export function unusableDatabaseFile(path: string): string | undefined {
  let header: Buffer;
  try {
    if (!statSync(path).isFile()) return `The database path ${path} is not a file. Set UNDERSTUDY_DB (or --db) to the database file.`;
    const fd = openSync(path, "r");
    try {
      header = Buffer.alloc(SQLITE_HEADER.length);
      header = header.subarray(0, readSync(fd, header, 0, header.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    return `The database file ${path} cannot be read (${code}). Make it readable and writable by the user the server runs as.`;
  }
  if (header.length === 0) {
    return (
      `The database file ${path} exists but is empty (0 bytes). Understudy makes a new database only where there is no file at all. ` +
      `If this is meant to be a fresh start, delete the file; otherwise ${RESTORE_HINT}.`
    );
  }
  if (!header.equals(SQLITE_HEADER)) {
    return (
      `The database file ${path} is not an SQLite database (it does not start with the SQLite header): it is damaged, or another kind of file. ` +
      `Point UNDERSTUDY_DB (or --db) at the right file, or ${RESTORE_HINT}.`
    );
  }
  return undefined;
}

/** SQLite's own word that a file with an SQLite header is damaged, as a start-up error that says what to do; else undefined. */
export function damagedDatabaseError(path: string, error: unknown): FatalError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return undefined;
  return new FatalError(`The database file ${path} is damaged (SQLite: ${(error as Error).message}); ${RESTORE_HINT}.`);
}

export async function openDatabase(options: OpenOptions): Promise<Db> {
  requireWritableDataDir(options.path);
  if (options.path !== ":memory:" && existsSync(options.path)) {
    const problem = unusableDatabaseFile(options.path);
    if (problem) throw new FatalError(problem);
  }
  if (options.path !== ":memory:" && !existsSync(options.path)) {
    // Created empty (a valid empty database) with owner-only permissions;
    // SQLite gives the -wal and -shm files the same mode.
    mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
    writeFileSync(options.path, "", { mode: 0o600 });
  }
  const { db: raw, exec, reader: openReader } = await openRaw(options.path, options.busyTimeoutMs);
  try {
    applyPragmas(exec, options);
  } catch (error) {
    raw.close();
    throw damagedDatabaseError(options.path, error) ?? error;
  }
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
