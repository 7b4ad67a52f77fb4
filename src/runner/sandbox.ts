import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, realpathSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import { FatalError } from "../errors";

/**
 * How a worker process is confined beyond the process boundary.
 *
 * - `bwrap`: bubblewrap (Debian's `bubblewrap`) gives the worker its own
 *   mount, PID, IPC and UTS namespaces and a user namespace with no
 *   capabilities. It sees the system directories read-only, the program,
 *   the code it runs, and its own temporary directory; the data directory
 *   (database, deployments of other tenants), the master key file and the
 *   other workers' directories do not exist in its view, and neither does any
 *   other process (so no /proc/<server>/environ or /mem). When the server
 *   dies, the whole sandbox dies with it (--die-with-parent).
 * - `none`: the process boundary only (a fresh environment, a private
 *   temporary directory, no database handle, its own process group). Code
 *   running there can read whatever files the server's user can.
 */
export type SandboxMode = "bwrap" | "none";

export interface SandboxPaths {
  /** The worker's own directory: its HOME, TMPDIR and working directory, writable. */
  tmpDir: string;
  /** What it must read: the program, the workflow files or the tenant's deployments. */
  readOnly: readonly string[];
}

export interface WorkerSandbox {
  readonly mode: SandboxMode;
  /** Why bwrap is not used, when it is not. */
  readonly reason: string | undefined;
  /** The argv that runs `command` inside the sandbox. */
  wrap(command: readonly string[], paths: SandboxPaths): string[];
}

/** What must never be visible inside a sandbox: the data directory, key files, other workers' directories. */
export interface SandboxPolicy {
  hidden: readonly string[];
  /** Always readable: the program (selfReadablePaths()). */
  programPaths: readonly string[];
}

const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/etc", "/sys"];
// Inside the sandbox the worker's uid owns what the server's uid owns: files
// of /etc that only root should read are masked.
const ETC_SECRETS = ["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh", "/etc/ssl/private", "/etc/sudoers", "/etc/sudoers.d"];
/** The uid and gid a worker has inside its user namespace ("nobody"). */
const SANDBOX_ID = "65534";

/**
 * Picks the sandbox for `setting` (UNDERSTUDY_WORKER_SANDBOX): `auto` uses
 * bubblewrap when a probe run works here, else none; `bwrap` requires it.
 * Throws (a start-up error) when bwrap is required and does not work.
 */
export function chooseSandbox(setting: "auto" | "bwrap" | "none", policy: SandboxPolicy): WorkerSandbox {
  if (setting === "none") return noSandbox("UNDERSTUDY_WORKER_SANDBOX is none");
  const bwrap = findOnPath("bwrap");
  const problem = bwrap ? probeBwrap(bwrap, policy) : "bubblewrap (bwrap) is not installed; on Debian/Ubuntu: apt-get install bubblewrap";
  if (problem === undefined && bwrap) return bwrapSandbox(bwrap, policy);
  if (setting === "bwrap") throw new FatalError(`UNDERSTUDY_WORKER_SANDBOX is bwrap, but ${problem}.`);
  return noSandbox(problem ?? "bwrap not found");
}

function noSandbox(reason: string): WorkerSandbox {
  return { mode: "none", reason, wrap: (command) => [...command] };
}

function bwrapSandbox(bwrap: string, policy: SandboxPolicy): WorkerSandbox {
  return {
    mode: "bwrap",
    reason: undefined,
    wrap: (command, paths) => [bwrap, ...bwrapArgs(policy, paths), "--", ...command],
  };
}

/** bwrap applies its options in order: system directories, the program, masks over hidden paths, then the worker's own paths. */
export function bwrapArgs(policy: SandboxPolicy, paths: SandboxPaths): string[] {
  const args = [
    "--die-with-parent",
    "--new-session",
    "--unshare-user",
    "--uid",
    SANDBOX_ID,
    "--gid",
    SANDBOX_ID,
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--cap-drop",
    "ALL",
    "--hostname",
    "understudy-worker",
  ];
  for (const dir of SYSTEM_DIRS) if (existsSync(dir)) args.push("--ro-bind", dir, dir);
  args.push("--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp");
  const bound: string[] = SYSTEM_DIRS.filter((d) => existsSync(d));
  for (const path of policy.programPaths) {
    if (!existsSync(path)) continue;
    args.push("--ro-bind", path, path);
    bound.push(path);
  }
  const hiddenPaths = [...ETC_SECRETS, ...policy.hidden];
  const mask = (hidden: string) => {
    if (statSync(hidden).isDirectory()) args.push("--tmpfs", hidden);
    else args.push("--ro-bind", "/dev/null", hidden);
  };
  for (const hidden of hiddenPaths) {
    if (!existsSync(hidden) || !bound.some((b) => isInside(hidden, b))) continue;
    mask(hidden);
  }
  const readOnly = paths.readOnly.filter((path) => existsSync(path));
  for (const path of readOnly) args.push("--ro-bind", path, path);
  // A read-only path binds the real directory again, over the masks made
  // above: a data directory or key file inside it (UNDERSTUDY_WORKFLOWS_DIR=.
  // with ./data/understudy.db) was visible to the worker again. Mask what lies
  // strictly inside one once more. (A read-only path inside a hidden one, a
  // tenant's deployments under the data directory, stays visible: that is why
  // it is bound after the masks.)
  for (const hidden of hiddenPaths) {
    if (!existsSync(hidden) || !readOnly.some((path) => hidden !== path && isInside(hidden, path))) continue;
    mask(hidden);
  }
  args.push("--bind", paths.tmpDir, paths.tmpDir, "--chdir", paths.tmpDir);
  return args;
}

function probeBwrap(bwrap: string, policy: SandboxPolicy): string | undefined {
  const tmp = mkdtempSync(join(tmpdir(), "understudy-probe-"));
  const result = spawnSync(bwrap, [...bwrapArgs(policy, { tmpDir: tmp, readOnly: [] }), "--", "/bin/sh", "-c", "exit 0"], {
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 10_000,
    env: { PATH: "/usr/bin:/bin" },
  });
  rmSync(tmp, { recursive: true, force: true });
  if (result.status === 0) return undefined;
  const said = result.stderr?.toString().trim().split("\n")[0] ?? "";
  // Docker refuses both by default: its seccomp profile the user namespace
  // ("No permissions to create new namespace"), and its masks over parts of
  // /proc a new proc mount ("Can't mount proc": the kernel refuses a proc less
  // masked than the one already there).
  return `bubblewrap cannot create a sandbox here (${said || (result.error ? result.error.message : `exit ${result.status}`)}); in Docker this needs --security-opt seccomp=unconfined and --security-opt systempaths=unconfined`;
}

function findOnPath(name: string): string | undefined {
  for (const dir of ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin"]) {
    const candidate = resolve(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** A path with its symlinks resolved when it exists (bwrap binds resolve them too). */
export function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
