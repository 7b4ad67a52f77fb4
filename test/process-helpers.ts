import { join } from "node:path";
import type { Subprocess } from "bun";
import { tempDir } from "./helpers";

const MAIN = join(import.meta.dir, "..", "src", "main.ts");

/** A free TCP port on 127.0.0.1, found by binding port 0 and letting go. */
export function freePort(): number {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  probe.stop(true);
  return port;
}

/** Environment for a child: the parent's PATH and HOME only, plus what the test gives. */
export function childEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...extra };
}

/** Runs `understudy ARGS` from source to completion (bounded) and returns its exit code and output. */
export async function runCliProcess(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; timeoutMs?: number },
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = Bun.spawn([process.execPath, MAIN, ...args], {
    cwd: options.cwd,
    env: childEnv(options.env ?? {}),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr, ms: performance.now() - started };
}

export interface ServerProcess {
  child: Subprocess<"ignore", "pipe", "pipe">;
  url: string;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then waits (bounded) for the exit code. */
  stop(): Promise<number>;
}

/** Starts `understudy ARGS` (serve or dev) and waits, bounded, until /healthz answers. */
export async function startServerProcess(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; port?: number; timeoutMs?: number },
): Promise<ServerProcess> {
  const port = options.port ?? freePort();
  const child = Bun.spawn([process.execPath, MAIN, ...args], {
    cwd: options.cwd,
    env: childEnv({ UNDERSTUDY_LISTEN: `127.0.0.1:${port}`, ...options.env }),
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  let err = "";
  const drain = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
  };
  void drain(child.stdout, (s) => (out += s));
  void drain(child.stderr, (s) => (err += s));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before answering: ${err}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server did not answer /healthz in time: ${err}`);
    }
    await Bun.sleep(25);
  }
  return {
    child,
    url,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await child.exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export async function postJson(url: string, path: string, key: string, body: unknown) {
  const response = await fetch(url + path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/**
 * Temp directories and server processes of one test file, cleaned up by
 * `cleanup()` (call it in afterAll): servers still running are killed.
 */
export function processScope() {
  const dirs: { remove(): void }[] = [];
  const servers: ServerProcess[] = [];
  return {
    /** A fresh temp directory, removed at cleanup. */
    workDir(): string {
      const dir = tempDir();
      dirs.push(dir);
      return dir.path;
    },
    /** Tracks a server being started, so cleanup can kill it. */
    async started(starting: Promise<ServerProcess>): Promise<ServerProcess> {
      const server = await starting;
      servers.push(server);
      return server;
    },
    cleanup() {
      for (const s of servers) if (s.child.exitCode === null) s.child.kill("SIGKILL");
      for (const d of dirs) d.remove();
    },
  };
}
