/**
 * `npm run bench`: measures the compiled binary as an operator runs it.
 *
 * The server is dist/understudy (rebuilt when older than the sources) on a
 * fresh database, rate limit and request log off, run from an empty
 * directory. HTTP load comes from autocannon in a separate `node` process
 * (bench/lib/load-generator.mjs). Job scenarios create jobs from this process
 * with fetch (bench/lib/jobs.ts), against a server that loads bench/workflows:
 * each distinct server environment (scenarios.ts) gets a server and database
 * of its own. Figures are compared with targets (targets.ts); a miss is
 * reported, not fatal: the exit code is non-zero only when the benchmark
 * itself could not run cleanly. Results also go to bench/results/latest.json.
 *
 * Server and load generator share the machine's cores, so throughput depends
 * on what else runs; the CPU time the server spends per request (or job) is
 * the steadier figure, and the run says when other processes were busy.
 *
 * Options: --duration S (8) --warmup S (2) --connections N (32) --starts N (5)
 *          --jobs N (3000) --delays N (200) --only id,id  --binary PATH  --rebuild
 *          --postgres: the same scenarios and targets with the server on
 *          PostgreSQL (UNDERSTUDY_BENCH_DATABASE_URL, else
 *          UNDERSTUDY_TEST_DATABASE_URL: a throwaway database; each server
 *          gets a fresh schema, dropped after), results in latest-postgres.json.
 * --connections is also how many job creates are in flight. --only takes ids
 * or id prefixes: `--only jobs` runs every job scenario, `--only
 * jobs.throughput` every jobs.throughput* row.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { gitCommit, ROOT } from "../scripts/build";
import { compiledBinary } from "./lib/binary";
import { addTenant, benchServe, busyCores, machineCpu, readCpuSeconds, readMemory, runCommand, startServer, type ServerProcess } from "./lib/server";
import { scenarios, WORKFLOWS_DIR, type BenchContext, type Scenario, type ScenarioResult } from "./scenarios";
import { evaluateTargets, jobsPerSecond, megabytes, ms, ratio, shareOfCeiling, tenthMs, type Measurements } from "./targets";

function wholeNumber(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got ${text}`);
  return n;
}

/** Other processes using more than this many cores during a run make its throughput figures unreliable. */
const NOISY_CORES = 0.25;
const resultsFile = (postgres: boolean) => join(import.meta.dir, "results", postgres ? "latest-postgres.json" : "latest.json");

/** Where the server's CPU went during one scenario. */
interface CpuAccount {
  /** Server CPU time per unit (request or job), warm-up included, in microseconds. */
  serverUsPerUnit: number;
  unit: ScenarioResult["unit"];
  serverCores: number;
  generatorCores: number;
  /** Cores used by everything else on the machine meanwhile (other users, the OS). */
  otherCores: number;
}

/** autocannon's latency histogram has 1 ms buckets: 0 means under a millisecond. */
const latency = (value: number) => (value < 1 ? "<1 ms" : `${value} ms`);

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Scenarios whose id is one of `only`, or starts with one of them and a dot. */
function select(only: string[] | undefined): Scenario[] {
  if (!only) return scenarios;
  const matches = (s: Scenario, key: string) => s.id === key || s.id.startsWith(`${key}.`);
  const unknown = only.filter((key) => !scenarios.some((s) => matches(s, key)));
  if (unknown.length > 0) throw new Error(`unknown scenario in --only: ${unknown.join(", ")}; known: ${scenarios.map((s) => s.id).join(", ")}`);
  return scenarios.filter((s) => only.some((key) => matches(s, key)));
}

/** A server the selected scenarios need, and what it measured. */
interface ServerRun {
  /** Environment beyond the default; {} for the default server. */
  env: Record<string, string>;
  scenarios: Scenario[];
  idleRssBytes?: number;
  peakRssBytes?: number;
  rssAfterBytes?: number;
}

/**
 * The servers to start, in order: the default one first (start-up and idle
 * RSS are measured on it, whichever scenarios run), then one per distinct
 * `serverEnv`, each running its scenarios in list order.
 */
function serverRuns(selected: Scenario[]): ServerRun[] {
  const runs: ServerRun[] = [{ env: {}, scenarios: [] }];
  const key = (env: Record<string, string>) => JSON.stringify(Object.entries(env).sort());
  for (const scenario of selected) {
    const env = scenario.serverEnv ?? {};
    let run = runs.find((r) => key(r.env) === key(env));
    if (!run) runs.push((run = { env, scenarios: [] }));
    run.scenarios.push(scenario);
  }
  return runs;
}

const describeEnv = (env: Record<string, string>) =>
  Object.keys(env).length === 0
    ? "default"
    : Object.entries(env)
        .map(([k, v]) => `${k}=${v === WORKFLOWS_DIR ? relative(ROOT, v) : v}`)
        .join(" ");

function table(header: string[], rows: string[][], alignRight: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (alignRight[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The server under load, so that a signal to this process does not leave it running. */
let running: ServerProcess | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    running?.kill();
    process.exit(1);
  });
}

async function main(): Promise<number> {
  const { values: args } = parseArgs({
    options: {
      duration: { type: "string", default: "8" },
      warmup: { type: "string", default: "2" },
      connections: { type: "string", default: "32" },
      starts: { type: "string", default: "5" },
      jobs: { type: "string", default: "3000" },
      delays: { type: "string", default: "200" },
      only: { type: "string" },
      binary: { type: "string" },
      rebuild: { type: "boolean", default: false },
      postgres: { type: "boolean", default: false },
    },
    strict: true,
  });
  const load = {
    connections: wholeNumber("connections", args.connections!, 1, 1024),
    durationSeconds: wholeNumber("duration", args.duration!, 1, 120),
    warmupSeconds: wholeNumber("warmup", args.warmup!, 0, 60),
  };
  const jobs = {
    count: wholeNumber("jobs", args.jobs!, 10, 100_000),
    delaySamples: wholeNumber("delays", args.delays!, 10, 10_000),
    inFlight: load.connections,
  };
  const startCount = wholeNumber("starts", args.starts!, 1, 50);
  const databaseUrl = args.postgres ? (process.env.UNDERSTUDY_BENCH_DATABASE_URL ?? process.env.UNDERSTUDY_TEST_DATABASE_URL) : undefined;
  if (args.postgres && !databaseUrl) {
    throw new Error("--postgres needs a throwaway PostgreSQL database: set UNDERSTUDY_BENCH_DATABASE_URL=postgres://user@127.0.0.1:5432/db");
  }
  const schemas = databaseUrl ? await benchSchemas(databaseUrl) : undefined;
  const selected = select(args.only?.split(",").map((s) => s.trim()).filter(Boolean));
  const servers = serverRuns(selected);

  const nodePath = Bun.which("node");
  if (!nodePath) throw new Error("node is not on PATH; the load generator runs under node");
  const nodeVersion = (await runCommand([nodePath, "--version"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "" } })).trim();
  const binary = await compiledBinary(args.binary, args.rebuild!);
  const commit = gitCommit();

  const idleBefore = machineCpu();
  await Bun.sleep(1000);
  const busyBefore = busyCores(idleBefore, machineCpu());
  if (busyBefore > NOISY_CORES) console.log(`note: the machine was already using ${busyBefore.toFixed(2)} cores before the benchmark started`);

  const work = mkdtempSync(join(tmpdir(), "understudy-bench-"));
  try {
    // A fresh database, key and tenant per server; each server runs from an empty directory.
    const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work };
    const masterKey = (await runCommand([binary, "keygen"], { cwd: work, env: baseEnv })).trim();
    const prepare = async (index: number, env: Record<string, string>) => {
      // On PostgreSQL, a fresh schema per server instead of a fresh file.
      const database: Record<string, string> = schemas ? { UNDERSTUDY_DATABASE_URL: await schemas.create() } : {};
      const dbPath = schemas ? undefined : join(work, `bench-${index}.db`);
      const apiKey = await addTenant(binary, { cwd: work, env: { ...baseEnv, ...database }, dbPath, name: "bench" });
      const serve = benchServe(binary, { cwd: work, env: { ...baseEnv, ...database, ...env }, masterKey, dbPath });
      return { serve, apiKey };
    };

    // Start-up: exec to the first 200 on /healthz, on an existing database (a restart), default environment.
    const first = await prepare(0, servers[0]!.env);
    const startupSamples: number[] = [];
    for (let i = 0; i < startCount; i++) {
      const started = (running = await startServer(first.serve));
      startupSamples.push(started.startupMs);
      const code = await started.stop();
      running = undefined;
      if (code !== 0) throw new Error(`serve exited ${code ?? "(killed)"} after SIGTERM:\n${started.stderr()}`);
    }
    console.log(`start-up: ${startupSamples.map((x) => x.toFixed(0)).join(", ")} ms`);

    const results: Record<string, ScenarioResult> = {};
    const cpu: Record<string, CpuAccount> = {};
    for (const [index, run] of servers.entries()) {
      const { serve, apiKey } = index === 0 ? first : await prepare(index, run.env);
      const server = (running = await startServer(serve));
      await Bun.sleep(1000); // let start-up work settle before calling it idle
      run.idleRssBytes = readMemory(server.pid).rssBytes;
      console.log(`server pid ${server.pid} at ${server.url} (${describeEnv(run.env)}), idle RSS ${megabytes(run.idleRssBytes)}`);

      const { url, pid } = server;
      const ctx: BenchContext = {
        url,
        apiKey,
        nodePath,
        load,
        jobs,
        post: (path, body, timeoutMs = 5000) =>
          fetch(`${url}${path}`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-api-key": apiKey },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(timeoutMs),
          }),
        serverCpuSeconds: () => readCpuSeconds(pid),
      };
      for (const scenario of run.scenarios) {
        console.log(`running ${scenario.title}: ${scenario.plan(ctx)} ...`);
        const machineBefore = machineCpu();
        const serverBefore = readCpuSeconds(pid);
        const result = await scenario.run(ctx);
        const machineAfter = machineCpu();
        const serverSeconds = readCpuSeconds(pid) - serverBefore;
        const wallSeconds = (machineAfter.atMs - machineBefore.atMs) / 1000;
        const serverCores = serverSeconds / wallSeconds;
        const generatorCores = result.generatorCpuSeconds / wallSeconds;
        results[scenario.id] = result;
        cpu[scenario.id] = {
          serverUsPerUnit: (serverSeconds * 1e6) / Math.max(1, result.units),
          unit: result.unit,
          serverCores,
          generatorCores,
          otherCores: Math.max(0, busyCores(machineBefore, machineAfter) - serverCores - generatorCores),
        };
      }
      const afterLoad = readMemory(pid);
      run.peakRssBytes = afterLoad.peakRssBytes;
      run.rssAfterBytes = afterLoad.rssBytes;
      const stopCode = await server.stop();
      running = undefined;
      if (stopCode !== 0) throw new Error(`serve exited ${stopCode ?? "(killed)"} after SIGTERM:\n${server.stderr()}`);
    }

    const main = servers[0]!;
    const measurements: Measurements = {
      scenarios: results,
      ceilingId: selected.find((s) => s.ceiling)?.id,
      idleRssBytes: main.idleRssBytes!,
      peakRssBytes: main.peakRssBytes!,
      startupMs: { median: median(startupSamples), samples: startupSamples },
    };
    const outcomes = evaluateTargets(measurements);
    const serverCpu = (c: CpuAccount) => `${Math.round(c.serverUsPerUnit).toLocaleString("en-US")} µs/${c.unit}`;

    console.log(`\nunderstudy ${commit} on ${cpus()[0]?.model ?? "?"} x${availableParallelism()}, Bun ${Bun.version}, ${schemas ? `PostgreSQL ${schemas.version}` : "SQLite"}`);
    const http = selected.filter((s) => results[s.id]?.kind === "http");
    if (http.length > 0) {
      console.log(`\nHTTP: autocannon under node ${nodeVersion}, ${load.connections} connections, ${load.durationSeconds} s per scenario after ${load.warmupSeconds} s warm-up; latency resolution 1 ms\n`);
      console.log(
        table(
          ["scenario", "req/s", "p50", "p99", "vs ceiling", "server CPU", "server cores", "load gen cores", "others' cores"],
          http.map((s) => {
            const r = results[s.id] as Extract<ScenarioResult, { kind: "http" }>;
            const c = cpu[s.id]!;
            const share = shareOfCeiling(measurements, s.id);
            return [
              s.title,
              Math.round(r.requestsPerSecond).toLocaleString("en-US"),
              latency(r.latencyMs.p50),
              latency(r.latencyMs.p99),
              share === undefined ? "-" : ratio(share),
              serverCpu(c),
              c.serverCores.toFixed(2),
              c.generatorCores.toFixed(2),
              c.otherCores.toFixed(2),
            ];
          }),
          [false, true, true, true, true, true, true, true, true],
        ),
      );
    }
    const jobRows = selected.filter((s) => results[s.id] && results[s.id]!.kind !== "http");
    if (jobRows.length > 0) {
      console.log(
        `\nJobs: created through the API from the benchmark process (fetch, ${jobs.inFlight} creates in flight), jobs/s from the first create sent to the last completed_at.` +
          `\n"queued first": creates/s with every runner slot held, jobs/s from releasing the slots to the last completed_at.` +
          `\nStart delay: from just before jobs/create is sent to the handler's first line, one job at a time. Latencies at 0.1 ms resolution.\n`,
      );
      console.log(
        table(
          ["scenario", "jobs", "jobs/s", "creates/s", "create p50", "create p99", "start p50", "start p99", "server CPU", "server cores", "bench cores", "others' cores"],
          jobRows.map((s) => {
            const r = results[s.id] as Exclude<ScenarioResult, { kind: "http" }>;
            const c = cpu[s.id]!;
            const batch = r.kind === "jobs.start_delay" ? undefined : r;
            const delay = r.kind === "jobs.start_delay" ? r : undefined;
            return [
              s.title,
              (batch?.jobs ?? delay!.samples).toLocaleString("en-US"),
              batch ? jobsPerSecond(batch.jobsPerSecond).replace(" jobs/s", "") : "-",
              batch ? Math.round(batch.createsPerSecond).toLocaleString("en-US") : "-",
              tenthMs(r.createLatencyMs.p50),
              tenthMs(r.createLatencyMs.p99),
              delay ? tenthMs(delay.delayMs.p50) : "-",
              delay ? tenthMs(delay.delayMs.p99) : "-",
              serverCpu(c),
              c.serverCores.toFixed(2),
              c.generatorCores.toFixed(2),
              c.otherCores.toFixed(2),
            ];
          }),
          [false, true, true, true, true, true, true, true, true, true, true, true],
        ),
      );
      // The table's server CPU covers the whole scenario (warm-up and checks too); these cover the measured batch only.
      const us = (x: number) => `${Math.round(x).toLocaleString("en-US")} µs`;
      const phases = jobRows.flatMap((s) => {
        const r = results[s.id]!;
        if (r.kind === "jobs.throughput") return [`  ${s.title}: ${us(r.serverCpuUsPerJob)} a job`];
        if (r.kind === "jobs.backlog") return [`  ${s.title}: ${us(r.serverCpuUsPerCreate)} a create + ${us(r.serverCpuUsPerRun)} a run`];
        return [];
      });
      if (phases.length > 0) console.log(`\nserver CPU, measured batch only:\n${phases.join("\n")}`);
      for (const s of jobRows) {
        const r = results[s.id]!;
        if (r.kind !== "jobs.backlog") continue;
        console.log(
          `\nnote (${s.title}): while the ${r.jobs.toLocaleString("en-US")} queued jobs ran (${r.runSeconds.toFixed(1)} s), ` +
            `a jobs/list request waited up to ${(r.longestPollMs / 1000).toFixed(1)} s for its answer`,
        );
      }
    }
    const ceilingCpu = measurements.ceilingId ? cpu[measurements.ceilingId] : undefined;
    if (ceilingCpu && ceilingCpu.generatorCores >= 0.9 && ceilingCpu.serverCores < 0.9) {
      console.log(`\nnote: the ceiling is the load generator's (${ceilingCpu.generatorCores.toFixed(2)} cores), not the server's (${ceilingCpu.serverCores.toFixed(2)})`);
    }
    const noisiest = Math.max(0, ...Object.values(cpu).map((c) => c.otherCores));
    if (noisiest > NOISY_CORES) {
      console.log(`\nnote: other processes used up to ${noisiest.toFixed(2)} cores during the load; rates and latency are noisy, server CPU per unit is steadier`);
    }
    console.log(`\nidle RSS ${megabytes(main.idleRssBytes!)}, peak RSS ${megabytes(main.peakRssBytes!)} (after load: ${megabytes(main.rssAfterBytes!)})`);
    for (const run of servers.slice(1)) {
      console.log(
        `server with ${describeEnv(run.env)}: idle RSS ${megabytes(run.idleRssBytes!)}, peak ${megabytes(run.peakRssBytes!)} (after load: ${megabytes(run.rssAfterBytes!)})`,
      );
    }
    console.log(`start-up median ${ms(measurements.startupMs.median)} over ${startupSamples.length} starts\n`);
    console.log(
      table(
        ["target", "actual", "target", "result"],
        outcomes.map((o) => [o.name, o.display, o.target, o.result]),
        [false, true, true, false],
      ),
    );

    mkdirSync(join(import.meta.dir, "results"), { recursive: true });
    const report = {
      date: new Date().toISOString(),
      commit,
      database: schemas ? `PostgreSQL ${schemas.version}` : "SQLite",
      binary,
      machine: { cpu: cpus()[0]?.model, cores: availableParallelism(), bun: Bun.version, loadGenerator: `autocannon under node ${nodeVersion}`, busyCoresBefore: busyBefore },
      settings: { ...load, starts: startCount, jobs },
      scenarios: Object.fromEntries(selected.map((s) => [s.id, { title: s.title, ...results[s.id]!, raw: undefined, cpu: cpu[s.id] }])),
      server: { idleRssBytes: main.idleRssBytes, peakRssBytes: main.peakRssBytes, rssAfterLoadBytes: main.rssAfterBytes, startupMs: measurements.startupMs },
      otherServers: servers.slice(1).map((run) => ({
        env: describeEnv(run.env),
        scenarios: run.scenarios.map((s) => s.id),
        idleRssBytes: run.idleRssBytes,
        peakRssBytes: run.peakRssBytes,
        rssAfterLoadBytes: run.rssAfterBytes,
      })),
      targets: outcomes,
    };
    const written = resultsFile(schemas !== undefined);
    writeFileSync(written, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nresults written to ${written}`);
    return 0;
  } finally {
    await running?.stop(2000);
    running = undefined;
    rmSync(work, { recursive: true, force: true });
    await schemas?.dropAll();
  }
}

/** Fresh schemas on a throwaway PostgreSQL database, one per server, all dropped at the end. */
async function benchSchemas(databaseUrl: string) {
  const { default: pg } = await import("pg");
  const admin = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  const version = String((await admin.query("SHOW server_version")).rows[0]?.server_version ?? "?").split(" ")[0];
  const made: string[] = [];
  return {
    version,
    /** A new schema; the URL that puts the server in it. */
    async create(): Promise<string> {
      const schema = `understudy_bench_${process.pid}_${made.length}`;
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.query(`CREATE SCHEMA ${schema}`);
      made.push(schema);
      const url = new URL(databaseUrl);
      url.searchParams.set("options", `-c search_path=${schema}`);
      return url.toString();
    },
    async dropAll() {
      for (const schema of made) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    },
  };
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
