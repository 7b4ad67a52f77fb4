import { expect } from "bun:test";
import { join } from "node:path";
import { newMasterKey, tempDir } from "../helpers";
import { postJson, runCliProcess, startServerProcess, type ServerProcess } from "../process-helpers";

/**
 * A `serve` deployment on disk for tests that run the real server as a child
 * process: a working directory, a fixed database file and master key (so the
 * server can be killed and started again on the same data), and tenants made
 * with the admin CLI, as an operator would.
 */
export interface ServeDeployment {
  readonly cwd: string;
  readonly dbPath: string;
  /** The environment every child gets (database, master key, workflows directory, and what the test adds). */
  readonly env: Record<string, string>;
  /** Creates a tenant and returns a fresh API key of it. */
  addTenant(name: string): Promise<string>;
  /** Starts `understudy serve`; `env` is added to the deployment's. */
  start(env?: Record<string, string>): Promise<ServerProcess>;
  remove(): void;
}

export const FIXTURE_WORKFLOWS = join(import.meta.dir, "..", "fixtures", "workflows");

export function serveDeployment(options: { workflowsDir: string; env?: Record<string, string> }): ServeDeployment {
  const dir = tempDir("understudy-serve-");
  const dbPath = join(dir.path, "understudy.db");
  const env = {
    UNDERSTUDY_DB: dbPath,
    UNDERSTUDY_MASTER_KEY: newMasterKey().text,
    UNDERSTUDY_WORKFLOWS_DIR: options.workflowsDir,
    UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0",
    // Queued jobs are picked up at once (jobs/create wakes the runner); the poll is only a backstop.
    UNDERSTUDY_RUNNER_POLL_MS: "200",
    ...options.env,
  };
  return {
    cwd: dir.path,
    dbPath,
    env,
    async addTenant(name) {
      const tenant = await runCliProcess(["tenants", "create", name], { cwd: dir.path, env });
      expect(tenant.code, tenant.stderr).toBe(0);
      const key = await runCliProcess(["keys", "create", "--tenant", name], { cwd: dir.path, env });
      expect(key.code, key.stderr).toBe(0);
      return key.stdout.trim();
    },
    start: (extra = {}) => startServerProcess(["serve"], { cwd: dir.path, env: { ...env, ...extra } }),
    remove: () => dir.remove(),
  };
}

/** POSTs `input` enveloped, as the libretto CLI does, and unwraps the mirrored envelope. */
export async function call(server: { url: string }, key: string, path: string, input: unknown = {}): Promise<{ status: number; body: any }> {
  const response = await postJson(server.url, path, key, { json: input });
  return { status: response.status, body: response.body?.json };
}

const TERMINAL = ["completed", "failed", "cancelled"];

/** Polls jobs/get until `until` holds for the job (default: it ended), bounded. */
export async function waitForJob(
  server: { url: string },
  key: string,
  id: string,
  options: { until?: (job: any) => boolean; timeoutMs?: number; what?: string } = {},
): Promise<any> {
  const until = options.until ?? ((job) => TERMINAL.includes(job.status));
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let last: any;
  for (;;) {
    const got = await call(server, key, "/v1/jobs/get", { id });
    expect(got.status).toBe(200);
    last = got.body;
    if (until(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting until job ${id} ${options.what ?? "ended"}; last seen: ${JSON.stringify(last)}`);
    }
    await Bun.sleep(20);
  }
}

/** Polls deployments/sync (with `{id}`, as the CLI does) until the build ends, bounded. */
export async function waitForBuild(server: { url: string }, key: string, id: string, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const synced = await call(server, key, "/v1/deployments/sync", { id });
    expect(synced.status).toBe(200);
    if (synced.body.status !== "building") return synced.body;
    if (Date.now() > deadline) throw new Error(`deployment ${id} still building after ${timeoutMs} ms`);
    await Bun.sleep(25);
  }
}

/** Waits, bounded, until the job's log has a line containing `text` (fixture workflows log their start). */
export async function waitForJobLog(server: { url: string }, key: string, jobId: string, text: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const logs = await call(server, key, "/v1/logs/list", { jobId });
    expect(logs.status).toBe(200);
    if ((logs.body.logs as { message: string }[]).some((l) => l.message.includes(text))) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for job ${jobId} to log "${text}"; it logged: ${JSON.stringify(logs.body.logs)}`);
    await Bun.sleep(20);
  }
}

/** Waits, bounded, until the child wrote `text` to stderr. */
export async function waitForStderr(server: ServerProcess, text: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!server.stderr().includes(text)) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for the server to write "${text}" to stderr; it wrote: ${server.stderr()}`);
    await Bun.sleep(10);
  }
}

/**
 * Sends `signal` and waits at most `timeoutMs` for the child to exit on its
 * own; a child still alive then is SIGKILLed and reported as not exited.
 */
export async function signalAndWait(
  server: ServerProcess,
  signal: "SIGTERM" | "SIGKILL",
  timeoutMs: number,
): Promise<{ exited: boolean; code: number | null; ms: number }> {
  const started = performance.now();
  server.child.kill(signal);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    server.child.exited.then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(resolve, timeoutMs, false))),
  ]);
  clearTimeout(timer);
  const ms = performance.now() - started;
  if (!exited) {
    server.child.kill("SIGKILL");
    await server.child.exited;
  }
  return { exited, code: server.child.exitCode, ms };
}

/** Kills a child a test left running (afterAll); harmless when it already exited. */
export async function killChild(server: ServerProcess | undefined): Promise<void> {
  if (!server || server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill("SIGKILL");
  await server.child.exited;
}
