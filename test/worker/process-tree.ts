import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { serveDeployment, type ServeDeployment } from "../e2e/serve-child";
import { tempDir } from "../helpers";
import type { ServerProcess } from "../process-helpers";

/** The workflow files of the worker tests. */
export const WORKER_WORKFLOWS = join(import.meta.dir, "..", "fixtures", "worker-workflows");

/**
 * `serve` deployments of test/fixtures/worker-workflows (test/e2e/serve-child.ts)
 * for one test file, and the servers started from them. cleanup() (afterAll)
 * stops servers still running with SIGTERM, so that they remove their
 * workers' directories (a SIGKILLed server leaves them in /tmp), then removes
 * the deployments and the directories of dir() and removeLater().
 */
export function workerScope() {
  const deployments: ServeDeployment[] = [];
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  return {
    /** A deployment; `env` is added to every child's (a short shutdown grace unless it says otherwise). */
    deployment(env: Record<string, string> = {}, workflowsDir = WORKER_WORKFLOWS): ServeDeployment {
      const deployment = serveDeployment({ workflowsDir, env: { UNDERSTUDY_SHUTDOWN_GRACE_MS: "2000", ...env } });
      deployments.push(deployment);
      return deployment;
    },
    async start(deployment: ServeDeployment, env: Record<string, string> = {}): Promise<ServerProcess> {
      const server = await deployment.start(env);
      servers.push(server);
      return server;
    },
    /** A temp directory removed at cleanup. */
    dir(prefix: string): string {
      const dir = tempDir(prefix);
      dirs.push(dir.path);
      return dir.path;
    },
    /** A directory to remove at cleanup (what a SIGKILLed server left behind). */
    removeLater(path: string): void {
      dirs.push(path);
    },
    async cleanup(): Promise<void> {
      await Promise.all(servers.filter((s) => s.child.exitCode === null && s.child.signalCode === null).map((s) => s.stop()));
      for (const deployment of deployments) deployment.remove();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One process as /proc shows it to the test (the host's view, whatever namespace it runs in). */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** Clock ticks after boot: with the pid, it names one process even after the pid is reused. */
  startTime: string;
  /** The executable's name and arguments. */
  cmdline: string;
}

function readProcess(pid: number): (ProcessInfo & { state: string }) | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The second field (comm) may hold spaces and parentheses: the state follows the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    return { pid, ppid: Number(fields[1]), state: fields[0]!, startTime: fields[19]!, cmdline };
  } catch {
    return undefined; // ended meanwhile
  }
}

/** Every living process on the host whose command line holds `text` (a worker's own directory names its browser's processes). */
export function processesMentioning(text: string): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const info = readProcess(Number(entry));
    if (info && info.state !== "Z" && info.cmdline.includes(text)) found.push({ pid: info.pid, ppid: info.ppid, startTime: info.startTime, cmdline: info.cmdline });
  }
  return found;
}

/** Every living descendant of `root`, walked from the test through the parent links in /proc. */
export function descendantsOf(root: number): ProcessInfo[] {
  const all: (ProcessInfo & { state: string })[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readProcess(Number(entry));
    if (info && info.state !== "Z") all.push(info);
  }
  const found: ProcessInfo[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const p of all) {
      if (p.ppid !== parent) continue;
      found.push({ pid: p.pid, ppid: p.ppid, startTime: p.startTime, cmdline: p.cmdline });
      queue.push(p.pid);
    }
  }
  return found;
}

/** Whether this very process (same pid and start time) still runs; a zombie does not. */
export function stillRunning(p: ProcessInfo): boolean {
  const now = readProcess(p.pid);
  return now !== undefined && now.startTime === p.startTime && now.state !== "Z";
}

export const isChromium = (p: ProcessInfo) => /chrom/i.test(p.cmdline.split(" ")[0] ?? "");
/** A worker process: `understudy __worker ...`, or the bubblewrap sandbox around one. */
export const isWorker = (p: ProcessInfo) => p.cmdline.includes("__worker") || /(^|\/)bwrap /.test(p.cmdline);

/** Polls `condition` until it holds or `timeoutMs` passes (process state, which no clock controls); says what is still wrong. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms: ${what()}`);
    await Bun.sleep(25);
  }
}

/** Short lines naming processes, for failure messages. */
export const describeProcesses = (ps: ProcessInfo[]) => ps.map((p) => `${p.pid} (parent ${p.ppid}): ${p.cmdline.slice(0, 120)}`).join("\n");
