import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { sql } from "kysely";
import { systemClock } from "../clock";
import { loadConfig } from "../config";
import { FatalError } from "../errors";
import { openDatabase, unusableDatabaseFile } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import { describeDatabaseUrl, openPostgres } from "../store/postgres";
import { decodeMasterKey, toMasterKey } from "../vault/master-key";
import { Vault } from "../vault/vault";
import { devPaths } from "./dev";
import { UsageError, type Io } from "./io";

type Values = Record<string, string | boolean | undefined>;

export const BACKUP_USAGE = `usage: understudy backup FILE [--force] [--db PATH | --dev]

Writes a consistent copy of the database to FILE (mode 0600), also while the
server runs (SQLite VACUUM INTO). Values stay encrypted in it: back up the
master key separately. An existing FILE is refused unless --force.
  --force       overwrite FILE
  --db PATH     the database file (default: UNDERSTUDY_DB, else ./data/understudy.db)
  --dev         use the dev-mode database, ./.understudy/understudy.db
With UNDERSTUDY_DATABASE_URL (PostgreSQL): runs pg_dump --format=custom (the
whole database, consistent while servers run) when it is on PATH, else says
what to run. The password goes to pg_dump in PGPASSWORD, never on its command line.`;

export const RESTORE_USAGE = `usage: understudy restore FILE [--force] [--db PATH | --dev]

Puts the backup FILE in place of the database; stop the server first. The
master key (UNDERSTUDY_MASTER_KEY or UNDERSTUDY_MASTER_KEY_FILE; with --dev,
./.understudy/master.key) must open the backup, or nothing is changed. The
database it replaces is kept as <db>.before-restore-<timestamp>.
  --force       restore even if the database seems in use by a running server
                (PostgreSQL: also into a database that has tables, replacing them)
  --db PATH     the database file to replace (default: UNDERSTUDY_DB, else ./data/understudy.db)
  --dev         use the dev-mode database, ./.understudy/understudy.db
With UNDERSTUDY_DATABASE_URL (PostgreSQL): FILE is a pg_dump custom archive; the
master key is checked against it first, then pg_restore loads it in one
transaction into a database with no tables and no other connections.`;

export const BACKUP_OPTIONS = {
  db: { type: "string" },
  dev: { type: "boolean" },
  force: { type: "boolean" },
} as const;

const SQLITE_HEADER = "SQLite format 3\0";
/** How long restore waits for the target's lock before calling it in use. */
const IN_USE_PROBE_MS = 250;

/** `understudy backup FILE`: VACUUM INTO a temporary file beside FILE (0600), then rename it into place. */
export async function backupDatabase(io: Io, values: Values, positionals: string[], dbPath: string): Promise<number> {
  const file = singleFile(positionals, "backup", BACKUP_USAGE);
  if (!existsSync(dbPath)) throw new FatalError(`There is no database at ${dbPath} to back up.`);
  if (resolve(file) === resolve(dbPath)) throw new FatalError("The backup file must not be the database itself.");
  if (existsSync(file) && !values.force) throw new FatalError(`${file} exists; choose another file or pass --force to overwrite it.`);
  if (!existsSync(dirname(file))) throw new FatalError(`The directory ${dirname(file)} does not exist.`);
  const config = loadConfig(io.env);
  // VACUUM INTO needs an absent or empty file: an empty one made 0600 up
  // front means the copy is never readable by others, not even for a moment.
  const temporary = join(dirname(file), `.${Date.now()}-${process.pid}.understudy-backup.tmp`);
  writeFileSync(temporary, "", { mode: 0o600, flag: "wx" });
  try {
    const db = await openDatabase({ path: dbPath, synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
    try {
      // One read transaction: a consistent snapshot even while the server writes (WAL).
      await sql`VACUUM INTO ${temporary}`.execute(db);
    } finally {
      await db.destroy();
    }
    chmodSync(temporary, 0o600);
    if (existsSync(file) && !values.force) throw new FatalError(`${file} appeared while backing up; pass --force to overwrite it.`);
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    if (error instanceof FatalError) throw error;
    throw new FatalError(`The backup failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  io.err(`Backed up ${dbPath} to ${file} (${statSync(file).size} bytes). Its values are encrypted: keep the master key backed up separately.\n`);
  return 0;
}

/**
 * `understudy restore FILE`: verifies a copy of the backup with the master
 * key (the same check the server runs at start), then swaps it in. The
 * backup itself is only read; the replaced database is kept beside it.
 */
export async function restoreDatabase(io: Io, values: Values, positionals: string[], dbPath: string): Promise<number> {
  const file = singleFile(positionals, "restore", RESTORE_USAGE);
  if (!existsSync(file)) throw new FatalError(`There is no backup file ${file}.`);
  if (!isSqliteFile(file)) throw new FatalError(`${file} is not an SQLite database (not an Understudy backup).`);
  if (resolve(file) === resolve(dbPath)) throw new FatalError("The backup file is the database itself.");
  const config = loadConfig(io.env);
  const keyring = { current: toMasterKey(restoreMasterKey(io, values, config.masterKey)) };

  // A file that is no database (empty, not SQLite) is what a restore repairs: no server can have it open.
  if (existsSync(dbPath) && !values.force && !unusableDatabaseFile(dbPath) && (await seemsInUse(dbPath))) {
    throw new FatalError(`The database ${dbPath} seems in use (a server has it open). Stop the server first, or pass --force.`);
  }

  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const staged = `${dbPath}.restore-${stamp}.tmp`;
  // A directory made here is removed again if the backup is refused: a refusal changes nothing.
  const madeDir = mkdirSync(dirname(dbPath), { recursive: true, mode: 0o700 });
  copyFileSync(file, staged);
  chmodSync(staged, 0o600);
  try {
    const db = await openDatabase({ path: staged, synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
    try {
      await Vault.open(db, keyring, systemClock);
    } finally {
      await db.destroy();
    }
  } catch (error) {
    removeDatabaseFiles(staged);
    if (madeDir) rmSync(madeDir, { recursive: true, force: true });
    const reason = error instanceof Error ? error.message : String(error);
    throw new FatalError(`Refusing to restore ${file}: ${reason} Nothing was changed.`);
  }

  let kept: string | undefined;
  if (existsSync(dbPath)) {
    kept = `${dbPath}.before-restore-${stamp}`;
    // The -wal holds commits not yet in the main file: it moves with it, and
    // must not stay beside the restored file, which SQLite would apply it to.
    for (const suffix of ["", "-wal", "-shm"]) {
      if (existsSync(dbPath + suffix)) renameSync(dbPath + suffix, kept + suffix);
    }
  }
  removeDatabaseFiles(staged, ["-wal", "-shm"]);
  renameSync(staged, dbPath);
  io.err(
    `Restored ${file} to ${dbPath} (master key ${keyring.current.id}).` +
      (kept ? ` The database it replaced is kept as ${kept}.` : "") +
      " Start the server to use it.\n",
  );
  return 0;
}

function singleFile(positionals: string[], command: string, usage: string): string {
  if (positionals.length !== 1 || !positionals[0]) throw new UsageError(`${command} needs exactly one FILE`, usage);
  return positionals[0];
}

function isSqliteFile(path: string): boolean {
  const fd = openSync(path, "r");
  try {
    const header = Buffer.alloc(16);
    return readSync(fd, header, 0, 16, 0) === 16 && header.toString("latin1") === SQLITE_HEADER;
  } finally {
    closeSync(fd);
  }
}

/** The key to check the backup with: from the environment, else (with --dev) the dev key file. Never generated. */
function restoreMasterKey(io: Io, values: Values, fromEnv: Uint8Array | undefined): Uint8Array {
  if (fromEnv) return fromEnv;
  if (values.dev) {
    const { masterKey } = devPaths(io.cwd);
    if (existsSync(masterKey)) {
      const decoded = decodeMasterKey(readFileSync(masterKey, "utf8"));
      if (!decoded.ok) throw new FatalError(`${masterKey} ${decoded.problem}.`);
      return decoded.key;
    }
    throw new FatalError(`restore --dev needs the dev master key ${masterKey} (or UNDERSTUDY_MASTER_KEY) to check the backup.`);
  }
  throw new FatalError("restore needs the master key the backup was made with: set UNDERSTUDY_MASTER_KEY (or UNDERSTUDY_MASTER_KEY_FILE).");
}

/**
 * A server keeps a shared lock on a WAL database for as long as it has it
 * open, idle or not. In exclusive locking mode a write transaction needs the
 * exclusive file lock, which that shared lock denies: a short busy timeout
 * turns "someone has it open" into a quick SQLITE_BUSY.
 */
async function seemsInUse(dbPath: string): Promise<boolean> {
  let db;
  try {
    db = await openDatabase({ path: dbPath, synchronous: "normal", busyTimeoutMs: IN_USE_PROBE_MS });
  } catch {
    return true;
  }
  try {
    await sql`PRAGMA locking_mode = EXCLUSIVE`.execute(db);
    await sql`BEGIN EXCLUSIVE`.execute(db);
    await sql`CREATE TABLE IF NOT EXISTS understudy_restore_probe (x)`.execute(db);
    await sql`ROLLBACK`.execute(db);
    return false;
  } catch {
    return true;
  } finally {
    await db.destroy();
  }
}

function removeDatabaseFiles(path: string, suffixes = ["", "-wal", "-shm", "-journal"]) {
  for (const suffix of suffixes) rmSync(path + suffix, { force: true });
}

// PostgreSQL (UNDERSTUDY_DATABASE_URL): pg_dump and pg_restore do the work;
// Understudy adds the same guards as on SQLite (0600 file, no overwrite
// without --force, the master key must open what is restored).

/** The archive signature pg_dump writes at the start of a custom-format file. */
const PG_DUMP_HEADER = "PGDMP";

/** The URL without its password (for argv and messages), and the password for PGPASSWORD. */
export function splitPassword(url: string): { url: string; password: string | undefined } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FatalError("UNDERSTUDY_DATABASE_URL is not a valid URL (postgres://user:password@host:port/database).");
  }
  let password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  parsed.password = "";
  const inQuery = parsed.searchParams.get("password");
  if (inQuery !== null) {
    password ??= inQuery;
    parsed.searchParams.delete("password");
  }
  return { url: parsed.toString(), password };
}

function onPath(tool: string, env: Record<string, string | undefined>): string | undefined {
  for (const dir of (env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

/**
 * A PostgreSQL client tool on PATH, with the URL to give it (no password:
 * that goes in PGPASSWORD), where it points (for messages) and its
 * environment; `missing` says what to do when the tool is not there.
 */
function pgTool(io: Io, databaseUrl: string, tool: string, missing: (where: string, url: string) => string) {
  const { url, password } = splitPassword(databaseUrl);
  const where = describeDatabaseUrl(databaseUrl);
  const path = onPath(tool, io.env);
  if (!path) throw new FatalError(missing(where, url));
  return { path, url, where, env: toolEnv(io, password) };
}

function toolEnv(io: Io, password: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(io.env)) if (value !== undefined) env[name] = value;
  // The URL names everything else; a PGPASSWORD of the caller's stays only if the URL has none.
  if (password !== undefined) env.PGPASSWORD = password;
  return env;
}

function runTool(path: string, args: string[], env: Record<string, string>): { code: number; stdout: Buffer; stderr: string } {
  const result = spawnSync(path, args, { env, maxBuffer: 256 * 1024 * 1024 });
  if (result.error) throw new FatalError(`${path} could not be run: ${result.error.message}`);
  return { code: result.status ?? 1, stdout: result.stdout, stderr: result.stderr.toString("utf8").trim() };
}

/** `understudy backup FILE` on PostgreSQL: pg_dump --format=custom to a 0600 temporary file beside FILE, renamed into place. */
export async function backupPostgres(io: Io, values: Values, positionals: string[], databaseUrl: string): Promise<number> {
  const file = singleFile(positionals, "backup", BACKUP_USAGE);
  if (existsSync(file) && !values.force) throw new FatalError(`${file} exists; choose another file or pass --force to overwrite it.`);
  if (!existsSync(dirname(file))) throw new FatalError(`The directory ${dirname(file)} does not exist.`);
  const { path: pgDump, url, where, env } = pgTool(io, databaseUrl, "pg_dump", (where, url) =>
    `pg_dump is not on PATH, so Understudy cannot back up ${where} itself. Install the PostgreSQL client tools ` +
    "(of the server's major version or newer; Debian: apt-get install postgresql-client) and run this again, or run:\n" +
    `  PGPASSWORD=... pg_dump --format=custom --file=${file} '${url}'\n` +
    "It is consistent while the servers run. Keep the master key backed up separately: the values in the dump stay encrypted.",
  );
  const temporary = join(dirname(file), `.${Date.now()}-${process.pid}.understudy-backup.tmp`);
  writeFileSync(temporary, "", { mode: 0o600, flag: "wx" });
  try {
    // One snapshot for the whole dump: consistent while the servers write.
    const { code, stderr } = runTool(pgDump, ["--format=custom", "--no-password", `--file=${temporary}`, `--dbname=${url}`], env);
    if (code !== 0) throw new FatalError(`pg_dump failed (exit ${code}) for ${where}: ${stderr || "no message"}`);
    chmodSync(temporary, 0o600);
    if (existsSync(file) && !values.force) throw new FatalError(`${file} appeared while backing up; pass --force to overwrite it.`);
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  io.err(`Backed up ${where} to ${file} with pg_dump (${statSync(file).size} bytes). Its values are encrypted: keep the master key backed up separately.\n`);
  return 0;
}

/**
 * `understudy restore FILE` on PostgreSQL: checks first that the master key
 * opens the dump (its vault_meta and tenant_keys rows, read with pg_restore
 * without touching the database, go through the same Vault.open as a server
 * start), then pg_restore in one transaction into a database without tables.
 */
export async function restorePostgres(io: Io, values: Values, positionals: string[], databaseUrl: string): Promise<number> {
  const file = singleFile(positionals, "restore", RESTORE_USAGE);
  if (!existsSync(file)) throw new FatalError(`There is no backup file ${file}.`);
  if (!isPgDumpFile(file)) {
    throw new FatalError(
      isSqliteFile(file)
        ? `${file} is an SQLite backup; UNDERSTUDY_DATABASE_URL selects PostgreSQL. Unset it (and set UNDERSTUDY_DB) to restore an SQLite database.`
        : `${file} is not a pg_dump custom-format archive (made by \`understudy backup\` on PostgreSQL, or pg_dump --format=custom).`,
    );
  }
  const config = loadConfig(io.env);
  const keyring = { current: toMasterKey(restoreMasterKey(io, values, config.masterKey)) };
  const { path: pgRestore, url, where, env } = pgTool(io, databaseUrl, "pg_restore", (where, url) =>
    `pg_restore is not on PATH, so Understudy cannot restore into ${where} itself. Install the PostgreSQL client tools ` +
    "(Debian: apt-get install postgresql-client) and run this again, so that it checks the master key first; or, servers stopped, " +
    "into an empty database, run:\n" +
    `  PGPASSWORD=... pg_restore --no-owner --no-privileges --single-transaction --exit-on-error --dbname='${url}' ${file}`,
  );

  // 1. The master key must open the dump: nothing is changed otherwise.
  const rows = runTool(pgRestore, ["--data-only", "--table=vault_meta", "--table=tenant_keys", "--file=-", file], env);
  if (rows.code !== 0) throw new FatalError(`pg_restore cannot read ${file} (exit ${rows.code}): ${rows.stderr || "no message"}`);
  try {
    await checkKeyOpens(rows.stdout.toString("utf8"), keyring);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new FatalError(`Refusing to restore ${file}: ${reason} Nothing was changed.`);
  }

  // 2. The target: no server connected, no tables (unless --force).
  const db = await openPostgres({ url: databaseUrl, poolSize: 1 });
  let tables: number;
  let others: number;
  try {
    const found = await sql<{ tables: number; others: number }>`
      SELECT (SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')) AS tables,
             (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()) AS others`.execute(db);
    ({ tables, others } = found.rows[0]!);
  } finally {
    await db.destroy();
  }
  if (others > 0 && !values.force) {
    throw new FatalError(`${where} has ${others} other connection(s), e.g. a running server. Stop the servers first, or pass --force.`);
  }
  if (tables > 0 && !values.force) {
    throw new FatalError(
      `${where} is not empty (${tables} tables). Restore into a new, empty database (createdb, then point UNDERSTUDY_DATABASE_URL at it), ` +
        "or pass --force to drop and replace the objects the backup holds.",
    );
  }

  // 3. One transaction: a failure leaves the database as it was.
  const args = ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--no-password", `--dbname=${url}`];
  if (tables > 0) args.push("--clean", "--if-exists");
  const restored = runTool(pgRestore, [...args, file], env);
  if (restored.code !== 0) throw new FatalError(`pg_restore failed (exit ${restored.code}) into ${where}; nothing was changed: ${restored.stderr || "no message"}`);
  io.err(`Restored ${file} into ${where} (master key ${keyring.current.id}). Start the servers to use it.\n`);
  return 0;
}

function isPgDumpFile(path: string): boolean {
  const fd = openSync(path, "r");
  try {
    const header = Buffer.alloc(PG_DUMP_HEADER.length);
    return readSync(fd, header, 0, header.length, 0) === header.length && header.toString("latin1") === PG_DUMP_HEADER;
  } finally {
    closeSync(fd);
  }
}

/**
 * Vault.open (the server's start-up check) on the dump's key rows, loaded
 * into a private in-memory database: a wrong key fails here exactly as it
 * would at the first start after the restore.
 */
async function checkKeyOpens(copyText: string, keyring: { current: ReturnType<typeof toMasterKey> }): Promise<void> {
  const db = await openDatabase({ path: ":memory:", synchronous: "normal", busyTimeoutMs: 1000 });
  try {
    await migrateToLatest(db);
    // Only the key rows are loaded, not the tenants they belong to.
    await sql`PRAGMA foreign_keys = OFF`.execute(db);
    for (const { table, rows } of parseCopyBlocks(copyText)) {
      if (table !== "vault_meta" && table !== "tenant_keys") continue;
      for (const row of rows) {
        const values: Record<string, unknown> = {};
        for (const [column, text] of Object.entries(row)) values[column] = text !== null && text.startsWith("\\x") ? new Uint8Array(Buffer.from(text.slice(2), "hex")) : text;
        await db.insertInto(table).values(values as never).execute();
      }
    }
    await Vault.open(db, keyring, systemClock);
  } finally {
    await db.destroy();
  }
}

/** The rows of the `COPY schema.table (cols) FROM stdin;` blocks of pg_restore's SQL output (text format, \N for NULL). */
function parseCopyBlocks(text: string): Array<{ table: string; rows: Array<Record<string, string | null>> }> {
  const blocks: Array<{ table: string; rows: Array<Record<string, string | null>> }> = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const header = /^COPY (?:[\w"]+\.)?"?(\w+)"? \(([^)]*)\) FROM stdin;$/.exec(lines[i]!);
    if (!header) continue;
    const columns = header[2]!.split(",").map((c) => c.trim().replace(/^"|"$/g, ""));
    const rows: Array<Record<string, string | null>> = [];
    for (i++; i < lines.length && lines[i] !== "\\."; i++) {
      const fields = lines[i]!.split("\t");
      rows.push(Object.fromEntries(columns.map((c, k) => [c, fields[k] === "\\N" ? null : unescapeCopy(fields[k] ?? "")])));
    }
    blocks.push({ table: header[1]!, rows });
  }
  return blocks;
}

function unescapeCopy(field: string): string {
  return field.replace(/\\(.)/g, (_, c: string) => ({ n: "\n", t: "\t", r: "\r", b: "\b", f: "\f", v: "\v" })[c] ?? c);
}
