import { readdirSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Which runtime and build this process is: the questions that used to be
 * asked of the store. Nothing here imports anything of Understudy's, so the
 * worker process can use it too.
 */
export const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** A `bun build --compile` executable: its modules live in Bun's embedded file system. */
export const isCompiled = isBun && import.meta.url.includes("$bunfs");

/**
 * The argv that starts this same program with a subcommand: the compiled
 * binary runs itself; from source, Bun runs src/main.ts (with auto-install
 * off, since a worker's working directory has no bunfig.toml to say so);
 * under Node, the bundle runs itself.
 */
export function selfCommand(subcommand: readonly string[]): string[] {
  if (isCompiled) return [process.execPath, ...subcommand];
  if (isBun) return [process.execPath, "--no-install", fileURLToPath(new URL("./main.ts", import.meta.url)), ...subcommand];
  return [process.execPath, process.argv[1] ?? fileURLToPath(import.meta.url), ...subcommand];
}

/** The files a worker started with selfCommand() must be able to read: the program and, from source, the checkout. */
export function selfReadablePaths(): string[] {
  if (isCompiled) return [process.execPath];
  // From source: the Bun executable and the checkout (src/, node_modules/,
  // bunfig.toml, tsconfig.json); a node_modules that is a link to elsewhere
  // is bound where it really is, too.
  const checkout = fileURLToPath(new URL("..", import.meta.url));
  const paths = [process.execPath, realPathOf(process.execPath), checkout];
  const modules = join(checkout, "node_modules");
  const real = realPathOf(modules);
  if (real !== modules) paths.push(real);
  return [...new Set(paths)];
}

function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * The directories in the temporary directory named `<prefix><pid>-...` whose
 * server (that pid) is gone: a server killed with SIGKILL leaves its own
 * behind. Those of this process and of live ones are not listed.
 */
export function staleServerDirs(prefix: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    return [];
  }
  const pattern = new RegExp(`^${prefix}(\\d+)-`);
  return entries.flatMap((entry) => {
    const pid = Number(pattern.exec(entry)?.[1]);
    return pid && pid !== process.pid && !isAlive(pid) ? [join(tmpdir(), entry)] : [];
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
