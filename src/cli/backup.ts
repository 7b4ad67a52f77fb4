import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { sql } from "kysely";
import { systemClock } from "../clock";
import { loadConfig } from "../config";
import { FatalError } from "../errors";
import { openDatabase, unusableDatabaseFile } from "../store/database";
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
  --dev         use the dev-mode database, ./.understudy/understudy.db`;

export const RESTORE_USAGE = `usage: understudy restore FILE [--force] [--db PATH | --dev]

Puts the backup FILE in place of the database; stop the server first. The
master key (UNDERSTUDY_MASTER_KEY or UNDERSTUDY_MASTER_KEY_FILE; with --dev,
./.understudy/master.key) must open the backup, or nothing is changed. The
database it replaces is kept as <db>.before-restore-<timestamp>.
  --force       restore even if the database seems in use by a running server
  --db PATH     the database file to replace (default: UNDERSTUDY_DB, else ./data/understudy.db)
  --dev         use the dev-mode database, ./.understudy/understudy.db`;

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
