import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** A port that was free a moment ago (serve takes a fixed port, not 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => (port ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/** Runs one CLI command of the binary to completion (bounded) and returns its stdout; throws on a non-zero exit. */
export async function runCommand(command: string[], options: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<string> {
  const child = Bun.spawn(command, {
    cwd: options.cwd,
    env: options.env,
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs ?? 15_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (exitCode !== 0) throw new Error(`${command.slice(1).join(" ")} failed (exit ${exitCode ?? child.signalCode}):\n${stderr}`);
  return stdout;
}

/**
 * Creates a tenant with the binary's admin CLI and returns a new API key of
 * it: on a database file, or (no dbPath) on the database env names
 * (UNDERSTUDY_DATABASE_URL).
 */
export async function addTenant(binary: string, options: { cwd: string; env: Record<string, string>; dbPath?: string; name: string }): Promise<string> {
  const { cwd, env, dbPath, name } = options;
  const db = dbPath === undefined ? [] : ["--db", dbPath];
  await runCommand([binary, "tenants", "create", name, ...db], { cwd, env });
  return (await runCommand([binary, "keys", "create", "--tenant", name, ...db], { cwd, env })).trim();
}

/** `serve` of the binary on a database, as the benchmarks run it: rate limit and request log off. */
export function benchServe(binary: string, options: { cwd: string; env: Record<string, string>; masterKey: string; dbPath?: string }): StartOptions {
  return {
    command: [binary, "serve"],
    cwd: options.cwd,
    env: {
      ...options.env,
      UNDERSTUDY_MASTER_KEY: options.masterKey,
      ...(options.dbPath === undefined ? {} : { UNDERSTUDY_DB: options.dbPath }),
      UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0",
      UNDERSTUDY_REQUEST_LOG: "off",
    },
  };
}

export interface ServerProcess {
  readonly pid: number;
  readonly url: string;
  /** Milliseconds from spawn to the first 200 from /healthz. */
  readonly startupMs: number;
  /** What the server wrote on stderr so far (its banner, or why it failed). */
  stderr(): string;
  /** SIGTERM, then SIGKILL after the grace period; resolves to the exit code (null when it had to be killed). */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL now, for when this process itself is being stopped. */
  kill(): void;
}

export interface StartOptions {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  healthyTimeoutMs?: number;
}

/**
 * Starts `serve` and waits, polling tightly, for its first 200 from
 * /healthz. stdout (the request log) is discarded; stderr is kept.
 * On any failure the process is killed before the error is thrown.
 */
export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  const child = Bun.spawn(options.command, {
    cwd: options.cwd,
    env: { ...options.env, UNDERSTUDY_LISTEN: `127.0.0.1:${port}` },
    stdout: "ignore",
    stderr: "pipe",
  });
  let stderr = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) if (stderr.length < 64 * 1024) stderr += decoder.decode(chunk, { stream: true });
  })().catch(() => {});

  const stop = async (graceMs = 10_000): Promise<number | null> => {
    if (isRunning(child)) child.kill("SIGTERM");
    const exited = await Promise.race([child.exited, Bun.sleep(graceMs).then(() => undefined)]);
    if (exited === undefined) {
      child.kill("SIGKILL");
      await child.exited;
      return null;
    }
    return exited;
  };

  try {
    const deadline = started + (options.healthyTimeoutMs ?? 10_000);
    for (;;) {
      if (!isRunning(child)) throw new Error(`serve exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${stderr}`);
      try {
        const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (response.status === 200) break;
      } catch {
        // not listening yet
      }
      if (performance.now() > deadline) throw new Error(`serve was not healthy within ${options.healthyTimeoutMs ?? 10_000} ms:\n${stderr}`);
      await Bun.sleep(2);
    }
  } catch (error) {
    await stop(1000);
    throw error;
  }
  const startupMs = performance.now() - started;
  return { pid: child.pid, url, startupMs, stderr: () => stderr, stop, kill: () => void (isRunning(child) && child.kill("SIGKILL")) };
}

function isRunning(child: Subprocess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Resident set size now (VmRSS) and its peak so far (VmHWM), in bytes, from /proc (Linux only). */
export function readMemory(pid: number): { rssBytes: number; peakRssBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status);
    if (!match) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  return { rssBytes: field("VmRSS"), peakRssBytes: field("VmHWM") };
}

/** CPU time (user + system, all threads) a process has used so far, in seconds, from /proc (Linux only). */
export function readCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the line, in USER_HZ ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The machine's CPU counters (from /proc/stat, all cores), to tell how busy it was between two snapshots. */
export interface MachineCpu {
  busySeconds: number;
  atMs: number;
}

export function machineCpu(): MachineCpu {
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const ticks = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0); // idle + iowait
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busySeconds: (total - idle) / 100, atMs: performance.now() };
}

/** Cores kept busy on average between two snapshots, by every process on the machine. */
export function busyCores(before: MachineCpu, after: MachineCpu): number {
  const seconds = (after.atMs - before.atMs) / 1000;
  return seconds > 0 ? (after.busySeconds - before.busySeconds) / seconds : 0;
}
