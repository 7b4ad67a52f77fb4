/**
 * Job drivers. Jobs are created through the API from this (the benchmark)
 * process with fetch and followed until they end; the server runs them in its
 * in-process runner. Every wait is bounded.
 *
 * Times that cross the two processes are epoch milliseconds from
 * `performance.timeOrigin + performance.now()` (sub-millisecond) or the
 * server's ISO timestamps (whole milliseconds): both read the same machine's
 * clock.
 */

/** The part of the benchmark context the drivers use. */
export interface JobsApi {
  /** A POST with the API key; it gives up after timeoutMs (default 5 s). */
  post(path: string, body: unknown, timeoutMs?: number): Promise<Response>;
  /** CPU time the server process has used so far, in seconds (10 ms ticks). */
  serverCpuSeconds(): number;
}

export interface Percentiles {
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

export interface ThroughputFigures {
  /** Jobs in the measured batch (after the warm-up batch). */
  jobs: number;
  warmupJobs: number;
  /** Requests in flight while creating. */
  inFlight: number;
  /** From the first create sent to the last job's completed_at. */
  seconds: number;
  jobsPerSecond: number;
  /** The creates of the same run (the runner working meanwhile): first create sent to last answered. */
  createSeconds: number;
  createsPerSecond: number;
  /** Round trip of one jobs/create, as this process saw it (0.1 ms resolution). */
  createLatencyMs: Percentiles;
  /** Server CPU time per job of the measured batch (create and run; the polling is in it). */
  serverCpuUsPerJob: number;
  /** How long after the last completed_at this process saw that nothing was left (polling lag). */
  detectionLagMs: number;
  /** jobs/list requests made while waiting for the batch to end. */
  pollRequests: number;
  /** The longest a jobs/list request of that polling waited for its answer. */
  longestPollMs: number;
}

export interface BacklogFigures {
  jobs: number;
  warmupJobs: number;
  inFlight: number;
  /** Jobs that held every runner slot while the batch was created. */
  holders: number;
  /** Creates alone, with the runner taking nothing: first create sent to last answered. */
  createSeconds: number;
  createsPerSecond: number;
  createLatencyMs: Percentiles;
  serverCpuUsPerCreate: number;
  /** The queued batch run alone: from releasing the slots to the last completed_at. */
  runSeconds: number;
  jobsPerSecond: number;
  serverCpuUsPerRun: number;
  /** The longest a jobs/list request sent while the queue ran waited for its answer. */
  longestPollMs: number;
}

export interface StartDelayFigures {
  samples: number;
  warmupJobs: number;
  /** From just before jobs/create was sent to the handler's first line (0.1 ms resolution). */
  delayMs: Percentiles;
  /** Round trip of one jobs/create on the idle server, for comparison. */
  createLatencyMs: Percentiles;
}

const epochMs = () => performance.timeOrigin + performance.now();
const tenth = (x: number) => Math.round(x * 10) / 10;

/** Nearest-rank percentiles, rounded to 0.1 ms. */
export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) throw new Error("no samples");
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { p50: tenth(at(50)), p99: tenth(at(99)), min: tenth(sorted[0]!), max: tenth(sorted[sorted.length - 1]!), mean: tenth(mean) };
}

async function postJson<T>(api: JobsApi, path: string, body: unknown, timeoutMs?: number): Promise<T> {
  const response = await api.post(path, body, timeoutMs);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${path}: HTTP ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

interface JobView {
  job_id: string;
  status: string;
  completed_at: string | null;
  result?: unknown;
  error?: string | null;
}

/** Creates `count` jobs of `workflow` with `inFlight` requests at a time; the ids come back in request order. */
async function createJobs(api: JobsApi, workflow: string, count: number, inFlight: number) {
  const ids = new Array<string>(count);
  const latencies: number[] = [];
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < count && failure === undefined) {
      const i = next++;
      const sent = performance.now();
      try {
        ids[i] = (await postJson<{ job_id: string }>(api, "/v1/jobs/create", { workflow, params: {} })).job_id;
      } catch (error) {
        failure ??= error;
        return;
      }
      latencies.push(performance.now() - sent);
    }
  };
  const firstSent = epochMs();
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
  const lastAnswered = epochMs();
  if (failure !== undefined) throw new Error(`creating ${workflow} jobs: ${failure instanceof Error ? failure.message : String(failure)}`);
  return { ids, latencies, firstSent, lastAnswered };
}

/**
 * Waits until the tenant has no queued or running job, polling jobs/list
 * (one row, by the status index) every `intervalMs`. Each request may wait
 * up to the deadline: the server answers nothing while its runner works
 * through a queue. Returns the requests made and the longest answer.
 */
async function waitUntilNothingLeft(api: JobsApi, timeoutMs: number, intervalMs = 10): Promise<{ requests: number; longestMs: number }> {
  const deadline = performance.now() + timeoutMs;
  let requests = 0;
  let longestMs = 0;
  for (;;) {
    let busy = false;
    for (const status of ["queued", "running"]) {
      requests++;
      const sent = performance.now();
      const page = await postJson<{ jobs: JobView[] }>(api, "/v1/jobs/list", { status, limit: 1 }, Math.max(1000, deadline - sent));
      longestMs = Math.max(longestMs, performance.now() - sent);
      if (page.jobs.length > 0) {
        busy = true;
        break;
      }
    }
    if (!busy) return { requests, longestMs: tenth(longestMs) };
    if (performance.now() > deadline) throw new Error(`jobs were still queued or running after ${timeoutMs} ms`);
    await Bun.sleep(intervalMs);
  }
}

/**
 * Reads back every job in `ids` (jobs/list of the workflow, newest first,
 * 100 a page) and throws unless all completed. Returns the latest completed_at.
 */
async function checkAllCompleted(api: JobsApi, workflow: string, ids: readonly string[]): Promise<{ first: number; last: number }> {
  const wanted = new Set(ids);
  const byStatus = new Map<string, number>();
  let notCompleted: string | undefined;
  let firstCompletedAt = Infinity;
  let lastCompletedAt = 0;
  let cursor: string | null = null;
  const maxPages = Math.ceil(ids.length / 100) + 20;
  for (let page = 0; page < maxPages && wanted.size > 0; page++) {
    const body: { jobs: JobView[]; next_cursor: string | null } = await postJson(api, "/v1/jobs/list", { workflow, limit: 100, cursor });
    for (const job of body.jobs) {
      if (!wanted.delete(job.job_id)) continue;
      byStatus.set(job.status, (byStatus.get(job.status) ?? 0) + 1);
      if (job.status !== "completed") notCompleted ??= job.job_id;
      else {
        const at = Date.parse(job.completed_at!);
        firstCompletedAt = Math.min(firstCompletedAt, at);
        lastCompletedAt = Math.max(lastCompletedAt, at);
      }
    }
    cursor = body.next_cursor;
    if (cursor === null) break;
  }
  if (wanted.size > 0) throw new Error(`${wanted.size} of ${ids.length} ${workflow} jobs were not found by jobs/list`);
  if (notCompleted !== undefined) {
    const job = await postJson<JobView>(api, "/v1/jobs/get", { id: notCompleted });
    const counts = [...byStatus].map(([status, n]) => `${n} ${status}`).join(", ");
    throw new Error(`not every ${workflow} job completed (${counts}); e.g. ${job.job_id} ${job.status}: ${job.error ?? "(no error)"}`);
  }
  return { first: firstCompletedAt, last: lastCompletedAt };
}

/** Bounded waits: far longer than a healthy run (1,000 jobs/s would be 1 ms a job). */
const batchTimeoutMs = (jobs: number) => 30_000 + jobs * 20;

/** A batch run end to end and checked, unmeasured: JIT and caches warm before the figures. */
async function warmUp(api: JobsApi, workflow: string, jobs: number, inFlight: number) {
  if (jobs === 0) return;
  const warm = await createJobs(api, workflow, jobs, inFlight);
  await waitUntilNothingLeft(api, batchTimeoutMs(jobs));
  await checkAllCompleted(api, workflow, warm.ids);
}

/**
 * Jobs per second end to end: a warm-up batch, then `jobs` creates with
 * `inFlight` at a time, until the last one completed. Polling starts once
 * every create is answered; the end is the server's latest completed_at, so
 * the polling interval does not count.
 */
export async function measureThroughput(
  api: JobsApi,
  settings: { workflow: string; jobs: number; warmupJobs: number; inFlight: number },
): Promise<ThroughputFigures> {
  const { workflow, jobs, warmupJobs, inFlight } = settings;
  await warmUp(api, workflow, warmupJobs, inFlight);
  const cpuBefore = api.serverCpuSeconds();
  const run = await createJobs(api, workflow, jobs, inFlight);
  const polling = await waitUntilNothingLeft(api, batchTimeoutMs(jobs));
  const detectedAt = epochMs();
  const serverCpuUsPerJob = ((api.serverCpuSeconds() - cpuBefore) * 1e6) / jobs;
  const lastCompletedAt = (await checkAllCompleted(api, workflow, run.ids)).last;
  const seconds = (lastCompletedAt - run.firstSent) / 1000;
  const createSeconds = (run.lastAnswered - run.firstSent) / 1000;
  return {
    jobs,
    warmupJobs,
    inFlight,
    seconds,
    jobsPerSecond: jobs / seconds,
    createSeconds,
    createsPerSecond: jobs / createSeconds,
    createLatencyMs: percentiles(run.latencies),
    serverCpuUsPerJob,
    detectionLagMs: tenth(detectedAt - lastCompletedAt),
    pollRequests: polling.requests,
    longestPollMs: polling.longestMs,
  };
}

/**
 * Creates and runs apart: `holders` jobs of `holdWorkflow` take every runner
 * slot, the batch is created (the runner takes none of it), then the holders
 * are released together (the request they wait on is answered) and the queued batch
 * runs. Reports each half alone. Throws when a job of the batch ended before
 * the release (the server had more slots than `holders`).
 */
export async function measureBacklog(
  api: JobsApi,
  settings: { workflow: string; holdWorkflow: string; holders: number; jobs: number; warmupJobs: number; inFlight: number },
): Promise<BacklogFigures> {
  const { workflow, holdWorkflow, holders, jobs, warmupJobs, inFlight } = settings;
  await warmUp(api, workflow, warmupJobs, inFlight);

  // The holders wait on a request to this server; answering them all at once releases every slot together.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const releaser = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: async () => (await released, new Response("released")) });
  const releaseUrl = `http://127.0.0.1:${releaser.port}/release`;
  try {
    const holdMs = batchTimeoutMs(jobs);
    const held: string[] = [];
    for (let i = 0; i < holders; i++) {
      const params = { releaseUrl, holdMs };
      held.push((await postJson<{ job_id: string }>(api, "/v1/jobs/create", { workflow: holdWorkflow, params })).job_id);
    }
    const deadline = performance.now() + 10_000;
    for (const id of held) {
      for (;;) {
        const job = await postJson<JobView>(api, "/v1/jobs/get", { id });
        if (job.status === "running") break;
        if (job.status !== "queued" || performance.now() > deadline) throw new Error(`${holdWorkflow} job ${id} is ${job.status}, not running`);
        await Bun.sleep(5);
      }
    }

    const cpuBeforeCreates = api.serverCpuSeconds();
    const batch = await createJobs(api, workflow, jobs, inFlight);
    const serverCpuUsPerCreate = ((api.serverCpuSeconds() - cpuBeforeCreates) * 1e6) / jobs;

    const cpuBeforeRun = api.serverCpuSeconds();
    const releasedAt = epochMs();
    release();
    const polling = await waitUntilNothingLeft(api, batchTimeoutMs(jobs));
    const serverCpuUsPerRun = ((api.serverCpuSeconds() - cpuBeforeRun) * 1e6) / jobs;
    await checkAllCompleted(api, holdWorkflow, held);
    const completed = await checkAllCompleted(api, workflow, batch.ids);
    // completed_at has whole milliseconds, releasedAt a fraction: allow the rounding.
    if (completed.first < Math.floor(releasedAt)) {
      throw new Error(`a ${workflow} job completed before the runner slots were released: the server has more than ${holders} slots`);
    }
    const createSeconds = (batch.lastAnswered - batch.firstSent) / 1000;
    const runSeconds = (completed.last - releasedAt) / 1000;
    return {
      jobs,
      warmupJobs,
      inFlight,
      holders,
      createSeconds,
      createsPerSecond: jobs / createSeconds,
      createLatencyMs: percentiles(batch.latencies),
      serverCpuUsPerCreate,
      runSeconds,
      jobsPerSecond: jobs / runSeconds,
      serverCpuUsPerRun,
      longestPollMs: polling.longestMs,
    };
  } finally {
    release();
    releaser.stop(true);
  }
}

/** Leave the idle server alone this long after a create, so that polling does not compete with the job's start. */
const QUIET_MS = 20;

/**
 * The delay from create to handler start on an idle server: one job at a
 * time, each waited for before the next. The workflow's handler must return
 * `{ started: performance.timeOrigin + performance.now() }`.
 */
export async function measureStartDelay(api: JobsApi, settings: { workflow: string; samples: number; warmupJobs: number }): Promise<StartDelayFigures> {
  const { workflow, samples, warmupJobs } = settings;
  const delays: number[] = [];
  const roundTrips: number[] = [];
  for (let i = 0; i < warmupJobs + samples; i++) {
    const sent = epochMs();
    const { job_id } = await postJson<{ job_id: string }>(api, "/v1/jobs/create", { workflow, params: {} });
    const answered = epochMs();
    await Bun.sleep(QUIET_MS);
    const job = await waitForEnd(api, job_id, 5_000);
    if (job.status !== "completed") throw new Error(`${workflow} job ${job_id} ended ${job.status}: ${job.error ?? "(no error)"}`);
    const started = (job.result as { started?: unknown } | null)?.started;
    if (typeof started !== "number") throw new Error(`${workflow} job ${job_id} returned ${JSON.stringify(job.result)}, not { started }`);
    if (i < warmupJobs) continue;
    delays.push(started - sent);
    roundTrips.push(answered - sent);
  }
  return { samples, warmupJobs, delayMs: percentiles(delays), createLatencyMs: percentiles(roundTrips) };
}

async function waitForEnd(api: JobsApi, id: string, timeoutMs: number): Promise<JobView> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const job = await postJson<JobView>(api, "/v1/jobs/get", { id });
    if (job.status === "completed" || job.status === "failed" || job.status === "cancelled") return job;
    if (performance.now() > deadline) throw new Error(`job ${id} was still ${job.status} after ${timeoutMs} ms`);
    await Bun.sleep(2);
  }
}
