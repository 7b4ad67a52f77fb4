/**
 * Helpers of the job tests: queue a job over HTTP, wait for it by polling its
 * status (bounded), and gates a test opens to let a handler go on.
 */
import { expect } from "bun:test";
import type { TestServer } from "../helpers";
import { expectOk } from "../http/wire";

export const TERMINAL = ["completed", "failed", "cancelled"] as const;

/** Settings every job test server uses: short grace periods, so a stuck handler cannot stall a test or its close(). */
export const FAST_ENV = { UNDERSTUDY_JOB_GRACE_MS: "200", UNDERSTUDY_SHUTDOWN_GRACE_MS: "100" } as const;

/** Queues a job as the holder of `key` (default alpha) and returns its id. */
export async function createJob(server: TestServer, input: Record<string, unknown>, key = server.keys.alpha): Promise<string> {
  const output = expectOk(await server.post("/v1/jobs/create", input, { key }), false);
  expect(output.status).toBe("queued");
  return output.job_id;
}

export async function getJob(server: TestServer, id: string, key = server.keys.alpha): Promise<any> {
  return expectOk(await server.post("/v1/jobs/get", { id }, { key }), false);
}

/** Polls jobs/get until `done(job)` holds; fails after `attempts` polls (about 10 ms apart). */
export async function waitForJob(
  server: TestServer,
  id: string,
  options: { key?: string; until?: (job: any) => boolean; attempts?: number } = {},
): Promise<any> {
  const until = options.until ?? ((job: any) => (TERMINAL as readonly string[]).includes(job.status));
  let job: any;
  for (let i = 0; i < (options.attempts ?? 1000); i++) {
    job = await getJob(server, id, options.key);
    if (until(job)) return job;
    await Bun.sleep(10);
  }
  throw new Error(`job ${id} did not reach the expected state; last seen: ${JSON.stringify(job)}`);
}

/** Waits until a job has ended and returns it. */
export const waitForEnd = (server: TestServer, id: string, key?: string) => waitForJob(server, id, { key });

/** Waits until a job is running (its handler has been called or is about to be). */
export const waitForRunning = (server: TestServer, id: string, key?: string) =>
  waitForJob(server, id, { key, until: (job) => job.status === "running" });

/** Polls `check` (bounded) until it returns true. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, attempts = 1000): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await check()) return;
    await Bun.sleep(5);
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** A promise the test resolves by hand: a handler awaits it to stay running. */
export function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open: () => open() };
}

/** Every log line of a job, oldest first, following page tokens. */
export async function jobLogs(server: TestServer, jobId: string, key = server.keys.alpha): Promise<any[]> {
  const lines: any[] = [];
  let pageToken: string | null = null;
  for (let page = 0; page < 100; page++) {
    const input: Record<string, unknown> = { jobId, limit: 1000 };
    if (pageToken) input.pageToken = pageToken;
    const output = expectOk(await server.post("/v1/logs/list", input, { key }), false);
    lines.push(...output.logs);
    pageToken = output.nextPageToken;
    if (pageToken === null) return lines;
  }
  throw new Error("logs/list never ended");
}

/** The job's row as stored, every column, as one JSON string (blobs as hex). */
export async function rawJobRow(server: TestServer, id: string): Promise<string> {
  const row = await server.db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
  return JSON.stringify(row, (_, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v));
}

export async function referencesOf(server: TestServer, jobId: string) {
  return server.db.selectFrom("job_credentials").selectAll().where("job_id", "=", jobId).execute();
}
