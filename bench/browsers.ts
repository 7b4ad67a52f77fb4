/**
 * `bun run bench/browsers.ts`: browser jobs through the API, as an operator
 * runs them: dist/understudy serve (rebuilt when older than the sources) with
 * bench/workflows, worker processes and warm browsers as configured by
 * default, real Chromium. A job opens a `data:` page and reads its title.
 *
 * Measured:
 * - latency, warm: one job at a time, from just before jobs/create is sent
 *   to the job's completed_at (whole ms; polled every 2 ms), after warm-up
 *   jobs that start the tenant's workers and browsers; 500 ms apart (the
 *   target: the worker has made the next page meanwhile) and 50 ms apart;
 * - the first job of a tenant (a worker and a browser to start), for contrast;
 * - throughput at the default concurrency (4): jobs per minute, one tenant;
 * - memory: proportional set size (PSS) of each warm worker with its browser;
 * - 20 tenants with one browser job each (all created at once): how long,
 *   how much memory the workers held at most, and how many stay warm under
 *   the cap (UNDERSTUDY_WARM_WORKERS).
 *
 * Options: --samples N (40) --jobs N (200) --tenants N (20) --binary PATH --rebuild
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compiledBinary } from "./lib/binary";
import { addTenant, benchServe, runCommand, startServer, type ServerProcess } from "./lib/server";

const { values: args } = parseArgs({
  options: {
    samples: { type: "string", default: "40" },
    jobs: { type: "string", default: "200" },
    tenants: { type: "string", default: "20" },
    binary: { type: "string" },
    rebuild: { type: "boolean", default: false },
  },
});
const SAMPLES = Number(args.samples);
const JOBS = Number(args.jobs);
const TENANTS = Number(args.tenants);
const WORKFLOW = "bench-browser-title";
const CONCURRENCY = 4;
const MB = 1_000_000;

const epochMs = () => performance.timeOrigin + performance.now();

function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: at(50), p90: at(90), p99: at(99), min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

interface Api {
  post(path: string, body: unknown): Promise<any>;
}

function api(url: string, key: string): Api {
  return {
    async post(path, body) {
      const response = await fetch(`${url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": key },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
      const json = await response.json();
      if (response.status !== 200) throw new Error(`${path}: HTTP ${response.status}: ${JSON.stringify(json)}`);
      return json;
    },
  };
}

async function waitForEnd(client: Api, id: string, timeoutMs = 60_000): Promise<any> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const job = await client.post("/v1/jobs/get", { id });
    if (["completed", "failed", "cancelled"].includes(job.status)) return job;
    if (performance.now() > deadline) throw new Error(`job ${id} still ${job.status} after ${timeoutMs} ms`);
    await Bun.sleep(2);
  }
}

/** One job, create to completed_at, in ms. */
async function oneJob(client: Api): Promise<number> {
  const sent = epochMs();
  const { job_id } = await client.post("/v1/jobs/create", { workflow: WORKFLOW, params: {} });
  const job = await waitForEnd(client, job_id);
  if (job.status !== "completed" || job.result?.title !== "bench page") throw new Error(`job ${job_id} ended ${job.status}: ${job.error ?? JSON.stringify(job.result)}`);
  return Math.round(Date.parse(job.completed_at) - sent);
}

/** Direct children of `pid` and their descendants, from /proc. */
function childrenOf(pid: number): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  return children;
}

function tree(children: Map<number, number[]>, root: number): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

function pss(pid: number): number {
  try {
    const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Each worker of the server (a child process and its tree, browser included) with its PSS. */
function workers(serverPid: number): { pid: number; processes: number; pssBytes: number }[] {
  const children = childrenOf(serverPid);
  return (children.get(serverPid) ?? []).map((pid) => {
    const all = tree(children, pid);
    return { pid, processes: all.length, pssBytes: all.reduce((sum, p) => sum + pss(p), 0) };
  });
}

let running: ServerProcess | undefined;

async function main() {
  const binary = await compiledBinary(args.binary, args.rebuild!);
  const work = mkdtempSync(join(tmpdir(), "understudy-bench-browsers-"));
  try {
    const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work };
    const dbPath = join(work, "bench.db");
    const masterKey = (await runCommand([binary, "keygen"], { cwd: work, env: baseEnv })).trim();
    const keys: string[] = [];
    for (let t = 0; t < TENANTS + 1; t++) keys.push(await addTenant(binary, { cwd: work, env: baseEnv, dbPath, name: `bench-${t}` }));
    const serve = benchServe(binary, { cwd: work, env: { ...baseEnv, UNDERSTUDY_WORKFLOWS_DIR: join(import.meta.dir, "workflows") }, masterKey, dbPath });
    const server = (running = await startServer(serve));
    console.log(`server ${server.url} (pid ${server.pid})`);
    const main = api(server.url, keys[0]!);

    // The first job of a tenant starts its worker and its browser.
    const cold = await oneJob(main);
    const first = workers(server.pid)[0];
    const sandbox = first && readFileSync(`/proc/${first.pid}/comm`, "utf8").trim() === "bwrap" ? "bubblewrap" : "none (the process boundary only)";
    console.log(`worker sandbox: ${sandbox}`);
    console.log(`first job of a tenant (worker and browser start): ${cold} ms`);

    // Warm latency, one job at a time: with a pause between jobs (the worker
    // makes the next page meanwhile, as between real jobs), and back to back.
    for (let i = 0; i < 5; i++) await oneJob(main);
    const sequence = async (gapMs: number) => {
      const latencies: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        latencies.push(await oneJob(main));
        await Bun.sleep(gapMs);
      }
      return percentiles(latencies);
    };
    const warm = await sequence(500);
    console.log(`warm, one at a time, 500 ms apart (${SAMPLES} jobs): p50 ${warm.p50} ms, p90 ${warm.p90} ms, p99 ${warm.p99} ms, min ${warm.min} ms, max ${warm.max} ms`);
    const backToBack = await sequence(50);
    console.log(
      `warm, one at a time, 50 ms apart (${SAMPLES} jobs; the next page is still being made): p50 ${backToBack.p50} ms, p90 ${backToBack.p90} ms, p99 ${backToBack.p99} ms`,
    );

    // Throughput at concurrency 4: warm all four workers, then the batch.
    const batch = async (count: number) => {
      const started = epochMs();
      const ids = await Promise.all(Array.from({ length: count }, async () => (await main.post("/v1/jobs/create", { workflow: WORKFLOW, params: {} })).job_id as string));
      let last = 0;
      for (const id of ids) {
        const job = await waitForEnd(main, id, 120_000 + count * 1000);
        if (job.status !== "completed") throw new Error(`job ${id} ended ${job.status}: ${job.error}`);
        last = Math.max(last, Date.parse(job.completed_at));
      }
      return (last - started) / 1000;
    };
    await batch(CONCURRENCY * 2);
    const seconds = await batch(JOBS);
    const perMinute = (JOBS / seconds) * 60;
    console.log(`throughput, concurrency ${CONCURRENCY}, one tenant: ${JOBS} jobs in ${seconds.toFixed(1)} s = ${perMinute.toFixed(0)} jobs/min`);

    const warmWorkers = workers(server.pid);
    const perWorker = warmWorkers.map((w) => w.pssBytes);
    console.log(
      `warm workers of the tenant: ${warmWorkers.length}, PSS each (worker + browser): ${perWorker.map((b) => (b / MB).toFixed(0)).join(", ")} MB; ` +
        `processes each: ${warmWorkers.map((w) => w.processes).join(", ")}`,
    );

    // 20 tenants, one browser job each, all created at once.
    let peakBytes = 0;
    let peakWorkers = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const now = workers(server.pid);
        peakWorkers = Math.max(peakWorkers, now.length);
        peakBytes = Math.max(peakBytes, now.reduce((sum, w) => sum + w.pssBytes, 0));
        await Bun.sleep(100);
      }
    })();
    const started = epochMs();
    const tenantJobs = await Promise.all(
      keys.slice(1).map(async (key) => {
        const client = api(server.url, key);
        const { job_id } = await client.post("/v1/jobs/create", { workflow: WORKFLOW, params: {} });
        return { client, job_id };
      }),
    );
    let lastDone = 0;
    for (const { client, job_id } of tenantJobs) {
      const job = await waitForEnd(client, job_id, 180_000);
      if (job.status !== "completed") throw new Error(`tenant job ${job_id} ended ${job.status}: ${job.error}`);
      lastDone = Math.max(lastDone, Date.parse(job.completed_at));
    }
    await Bun.sleep(1500); // the last releases settle under the cap
    sampling = false;
    await sampler;
    const after = workers(server.pid);
    console.log(
      `${TENANTS} tenants, one browser job each, created at once: all done in ${((lastDone - started) / 1000).toFixed(1)} s; ` +
        `at most ${peakWorkers} workers holding ${(peakBytes / MB).toFixed(0)} MB (PSS); afterwards ${after.length} warm workers, ${(after.reduce((s, w) => s + w.pssBytes, 0) / MB).toFixed(0)} MB`,
    );
    console.log(`server RSS after: ${(Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]) / 1000).toFixed(0)} MB`);

    const rows = [
      ["browser job, warm, create -> completed (p50)", `${warm.p50} ms`, "<= 250 ms", warm.p50 <= 250 ? "PASS" : "MISS"],
      ["browser jobs/min, concurrency 4", `${perMinute.toFixed(0)}`, ">= 100", perMinute >= 100 ? "PASS" : "MISS"],
    ];
    console.log("\ntarget                                          actual    target     result");
    for (const [name, actual, target, result] of rows) console.log(`${name!.padEnd(48)}${actual!.padStart(8)}  ${target!.padStart(9)}  ${result}`);
    const code = await server.stop();
    running = undefined;
    if (code !== 0) throw new Error(`serve exited ${code} after SIGTERM:\n${server.stderr()}`);
  } finally {
    running?.kill();
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
