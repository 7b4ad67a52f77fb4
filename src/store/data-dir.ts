import { accessSync, constants, existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { FatalError } from "../errors";

/** The uid the Docker image runs as (Dockerfile). */
export const IMAGE_UID = 10001;

/**
 * Fails, before SQLite is asked, when the database's directory (or the
 * nearest part of it that exists, since it is created on first start) or the
 * file itself cannot be written by this process. WAL mode creates the -wal
 * and -shm files beside the database, so the directory must be writable too.
 * Without this a root-owned bind mount on /data gave a bare "EACCES:
 * permission denied, open '/data/understudy.db'".
 */
export function requireWritableDataDir(dbPath: string): void {
  if (dbPath === ":memory:") return;
  const file = resolve(dbPath);
  const dir = dirname(file);
  let existing = dir;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  for (const path of existsSync(file) ? [existing, file] : [existing]) {
    try {
      accessSync(path, constants.W_OK);
    } catch (error) {
      throw new FatalError(notWritableMessage(path === file ? "database file" : "data directory", path, file, (error as NodeJS.ErrnoException).code));
    }
  }
}

function notWritableMessage(what: string, path: string, file: string, code: string | undefined): string {
  const dir = dirname(file);
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  const who = uid === undefined ? "this process" : `this process (uid ${uid})`;
  const owner = uid === undefined ? "the user that runs understudy" : `${uid}:${gid}`;
  if (code === "EROFS") {
    return `The ${what} ${path} is on a read-only file system (EROFS): the database ${file} and its -wal and -shm files need a writable directory. Set UNDERSTUDY_DB to a file on a writable volume (in Docker, /data is one).`;
  }
  return (
    `The ${what} ${path} is not writable by ${who} (${code ?? "not writable"}): the database ${file} and its -wal and -shm files are written there. ` +
    `Give the directory to that user (\`chown -R ${owner} ${dir}\`) or set UNDERSTUDY_DB to a file in a writable directory. ` +
    `The Docker image runs as uid ${IMAGE_UID}: for a bind mount on /data, run \`chown -R ${IMAGE_UID}:${IMAGE_UID}\` on the host directory, or use a named volume.`
  );
}
