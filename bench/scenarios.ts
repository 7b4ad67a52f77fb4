/**
 * The benchmark scenarios. To add one, append to `scenarios`: an HTTP load is
 * `httpScenario({...})`; jobs are `jobThroughputScenario`, `jobBacklogScenario`
 * or `startDelayScenario`; anything else implements `Scenario` itself.
 * Targets (targets.ts) refer to scenarios by `id`.
 *
 * Scenarios run in order, grouped by the server they need: those with no
 * `serverEnv` share the default server (no workflows); each distinct
 * `serverEnv` gets a server of its own, started after the default one.
 */
import { join } from "node:path";
import { measureBacklog, measureStartDelay, measureThroughput, type BacklogFigures, type StartDelayFigures, type ThroughputFigures } from "./lib/jobs";
import { runLoad, type LoadRequest, type LoadResult, type LoadSettings } from "./lib/load";

export interface JobSettings {
  /** Jobs in each throughput batch (a warm-up batch of a tenth, at most 300, comes first). */
  count: number;
  /** Jobs in the start-delay run (10 warm-up jobs come first). */
  delaySamples: number;
  /** Create requests in flight at once during a throughput run. */
  inFlight: number;
}

export interface BenchContext {
  /** The server's base URL, e.g. http://127.0.0.1:40123. */
  url: string;
  /** An API key of the tenant the benchmark uses (rate limit off). */
  apiKey: string;
  nodePath: string;
  load: LoadSettings;
  jobs: JobSettings;
  /** A POST with the API key (from this process, with fetch); it gives up after timeoutMs (default 5 s). */
  post(path: string, body: unknown, timeoutMs?: number): Promise<Response>;
  /** CPU time the server process has used so far, in seconds, for figures of one phase of a scenario. */
  serverCpuSeconds(): number;
}

/** What the run loop needs from every scenario, whatever it measures. */
interface ResultBase {
  /** One unit of the scenario's work: the server's CPU time is shown per unit. */
  unit: "req" | "job";
  /** Units the server handled during the scenario, warm-up included. */
  units: number;
  /** CPU time (user + system) of what generated the load: autocannon's process, or this one. */
  generatorCpuSeconds: number;
}

/** An HTTP load, with autocannon's figures. */
export interface HttpResult extends ResultBase, LoadResult {
  kind: "http";
  unit: "req";
}

/** Jobs created through the API until the last completed. */
export interface JobThroughputResult extends ResultBase, ThroughputFigures {
  kind: "jobs.throughput";
  unit: "job";
  workflow: string;
}

/** A batch created with every runner slot held, then run: each half alone. */
export interface JobBacklogResult extends ResultBase, BacklogFigures {
  kind: "jobs.backlog";
  unit: "job";
  workflow: string;
}

/** Create to handler start, one job at a time on an idle server. */
export interface StartDelayResult extends ResultBase, StartDelayFigures {
  kind: "jobs.start_delay";
  unit: "job";
  workflow: string;
}

export type ScenarioResult = HttpResult | JobThroughputResult | JobBacklogResult | StartDelayResult;

export interface Scenario {
  /** Stable key, used in results JSON, by targets and by --only. */
  id: string;
  /** What the table shows. */
  title: string;
  /** The scenario every other HTTP throughput is compared with (the server's ceiling). */
  ceiling?: boolean;
  /** Environment the server needs beyond the default. */
  serverEnv?: Record<string, string>;
  /** One line on what is about to run. */
  plan(ctx: BenchContext): string;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

/** A scenario that fires one kind of request at the server with autocannon, after an optional setup. */
export function httpScenario(definition: {
  id: string;
  title: string;
  ceiling?: boolean;
  setup?: (ctx: BenchContext) => Promise<void>;
  request: (ctx: BenchContext) => LoadRequest;
}): Scenario {
  return {
    id: definition.id,
    title: definition.title,
    ceiling: definition.ceiling,
    plan: (ctx) => `${ctx.load.connections} connections, ${ctx.load.warmupSeconds} s warm-up + ${ctx.load.durationSeconds} s`,
    async run(ctx) {
      await definition.setup?.(ctx);
      const load = await runLoad(ctx.nodePath, ctx.url, definition.request(ctx), ctx.load);
      return { kind: "http", unit: "req", units: load.total + load.warmupTotal, ...load };
    },
  };
}

/** A 32-byte value, like a typical password or token. */
export const VALUE = "v".repeat(16) + "0123456789abcdef";

const json = (ctx: BenchContext) => ({ "content-type": "application/json", "x-api-key": ctx.apiKey });

async function expectOk(response: Response, what: string) {
  if (response.status !== 200) throw new Error(`${what}: HTTP ${response.status}: ${await response.text()}`);
}

/** The workflows the job scenarios run (bench/workflows/*.ts). */
export const WORKFLOWS_DIR = join(import.meta.dir, "workflows");
/** The credential bench-noop-cred declares. */
const BENCH_CREDENTIAL = "bench_token";

/** Setup of every job scenario: the workflow loaded, and the credential it declares stored. */
async function prepareWorkflow(ctx: BenchContext, workflow: string, credential?: string) {
  const response = await ctx.post("/v1/workflows/get", { workflow });
  await expectOk(response, `workflow ${workflow} (from ${WORKFLOWS_DIR})`);
  const found = (await response.json()) as { deployment_status: string; error: string | null };
  if (found.deployment_status !== "ready") throw new Error(`workflow ${workflow} did not load: ${found.error}`);
  if (credential) await expectOk(await ctx.post("/v1/credentials/upsert", { name: credential, value: VALUE }), `storing ${credential}`);
}

/** Runs `measure` and returns its figures with the CPU time this process (the load generator of a job scenario) used meanwhile. */
async function withOwnCpu<T>(measure: () => Promise<T>): Promise<T & { generatorCpuSeconds: number }> {
  const before = process.cpuUsage();
  const figures = await measure();
  const used = process.cpuUsage(before);
  return { ...figures, generatorCpuSeconds: (used.user + used.system) / 1e6 };
}

/** A tenth of the batch, at most 300, run first and left out of the figures. */
const warmupJobs = (ctx: BenchContext) => Math.min(300, Math.ceil(ctx.jobs.count / 10));

/** Create `ctx.jobs.count` jobs of a workflow through the API, `ctx.jobs.inFlight` at a time, until all completed. */
export function jobThroughputScenario(definition: {
  id: string;
  title: string;
  workflow: string;
  credential?: string;
  serverEnv: Record<string, string>;
}): Scenario {
  const { workflow } = definition;
  return {
    id: definition.id,
    title: definition.title,
    serverEnv: definition.serverEnv,
    plan: (ctx) => `${warmupJobs(ctx)} warm-up + ${ctx.jobs.count} jobs of ${workflow}, ${ctx.jobs.inFlight} creates in flight`,
    async run(ctx) {
      await prepareWorkflow(ctx, workflow, definition.credential);
      const settings = { workflow, jobs: ctx.jobs.count, warmupJobs: warmupJobs(ctx), inFlight: ctx.jobs.inFlight };
      const figures = await withOwnCpu(() => measureThroughput(ctx, settings));
      return { kind: "jobs.throughput", unit: "job", units: figures.jobs + figures.warmupJobs, workflow, ...figures };
    },
  };
}

/**
 * Create `ctx.jobs.count` jobs while bench-hold jobs take all `concurrency`
 * runner slots, then release the slots and run the queued batch.
 */
export function jobBacklogScenario(definition: {
  id: string;
  title: string;
  workflow: string;
  credential?: string;
  concurrency: number;
  serverEnv: Record<string, string>;
}): Scenario {
  const { workflow, concurrency } = definition;
  return {
    id: definition.id,
    title: definition.title,
    serverEnv: definition.serverEnv,
    plan: (ctx) =>
      `${warmupJobs(ctx)} warm-up, then ${ctx.jobs.count} jobs of ${workflow} created while ${concurrency} bench-hold jobs hold the runner, then run`,
    async run(ctx) {
      await prepareWorkflow(ctx, "bench-hold");
      await prepareWorkflow(ctx, workflow, definition.credential);
      const settings = {
        workflow,
        holdWorkflow: "bench-hold",
        holders: concurrency,
        jobs: ctx.jobs.count,
        warmupJobs: warmupJobs(ctx),
        inFlight: ctx.jobs.inFlight,
      };
      const figures = await withOwnCpu(() => measureBacklog(ctx, settings));
      return { kind: "jobs.backlog", unit: "job", units: figures.jobs + figures.warmupJobs + figures.holders, workflow, ...figures };
    },
  };
}

/** One job at a time on an idle server: how long from create to the handler's start. */
export function startDelayScenario(definition: { id: string; title: string; workflow: string; serverEnv: Record<string, string> }): Scenario {
  const { workflow } = definition;
  const warmup = 10;
  return {
    id: definition.id,
    title: definition.title,
    serverEnv: definition.serverEnv,
    plan: (ctx) => `${warmup} warm-up + ${ctx.jobs.delaySamples} jobs of ${workflow}, one at a time`,
    async run(ctx) {
      await prepareWorkflow(ctx, workflow);
      const figures = await withOwnCpu(() => measureStartDelay(ctx, { workflow, samples: ctx.jobs.delaySamples, warmupJobs: warmup }));
      return { kind: "jobs.start_delay", unit: "job", units: figures.samples + figures.warmupJobs, workflow, ...figures };
    },
  };
}

/** UNDERSTUDY_CONCURRENCY when it is not set (README, Environment). */
const DEFAULT_CONCURRENCY = 4;
/** A server that loads the bench workflows, at the default concurrency. */
const JOB_SERVER = { UNDERSTUDY_WORKFLOWS_DIR: WORKFLOWS_DIR };
const JOB_SERVER_32 = { ...JOB_SERVER, UNDERSTUDY_CONCURRENCY: "32" };

export const scenarios: Scenario[] = [
  httpScenario({
    id: "healthz",
    title: "GET /healthz (ceiling)",
    ceiling: true,
    request: () => ({ method: "GET", path: "/healthz" }),
  }),
  httpScenario({
    id: "credentials.get",
    title: "POST /v1/credentials/get",
    async setup(ctx) {
      await expectOk(await ctx.post("/v1/credentials/upsert", { name: "bench_get", value: VALUE }), "seeding bench_get");
    },
    request: (ctx) => ({ method: "POST", path: "/v1/credentials/get", headers: json(ctx), body: JSON.stringify({ name: "bench_get" }) }),
  }),
  httpScenario({
    id: "credentials.upsert",
    title: "POST /v1/credentials/upsert (overwrite)",
    request: (ctx) => ({
      method: "POST",
      path: "/v1/credentials/upsert",
      headers: json(ctx),
      body: JSON.stringify({ name: "bench_upsert", value: VALUE }),
    }),
  }),
  httpScenario({
    id: "credentials.upsert.new",
    title: "POST /v1/credentials/upsert (new name)",
    request: (ctx) => ({
      method: "POST",
      path: "/v1/credentials/upsert",
      headers: json(ctx),
      bodyTemplate: JSON.stringify({ name: "bench_new_{n}", value: VALUE }),
    }),
  }),
  // Start delay first, while the job server is fresh and idle.
  startDelayScenario({
    id: "jobs.start_delay",
    title: "jobs: create -> handler start, idle",
    workflow: "bench-stamp",
    serverEnv: JOB_SERVER,
  }),
  // The headline: a no-op that declares a credential, so injection and decryption are in the path.
  jobThroughputScenario({
    id: "jobs.throughput",
    title: "jobs: no-op + 1 credential, concurrency 4",
    workflow: "bench-noop-cred",
    credential: BENCH_CREDENTIAL,
    serverEnv: JOB_SERVER,
  }),
  jobThroughputScenario({
    id: "jobs.throughput.nocred",
    title: "jobs: no-op, concurrency 4",
    workflow: "bench-noop",
    serverEnv: JOB_SERVER,
  }),
  // Where the time goes: the same jobs created with the runner taking none, then run from a full queue.
  jobBacklogScenario({
    id: "jobs.throughput.backlog",
    title: "jobs: no-op + 1 credential, concurrency 4, queued first",
    workflow: "bench-noop-cred",
    credential: BENCH_CREDENTIAL,
    concurrency: DEFAULT_CONCURRENCY,
    serverEnv: JOB_SERVER,
  }),
  jobThroughputScenario({
    id: "jobs.throughput.c32",
    title: "jobs: no-op + 1 credential, concurrency 32",
    workflow: "bench-noop-cred",
    credential: BENCH_CREDENTIAL,
    serverEnv: JOB_SERVER_32,
  }),
];
