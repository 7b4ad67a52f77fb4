/**
 * `npm run bench`: measures the compiled binary as an operator runs it.
 *
 * The server is dist/understudy (rebuilt when older than the sources) on a
 * fresh database, rate limit and request log off, run from an empty
 * directory. Load comes from autocannon in a separate `node` process
 * (bench/lib/load-generator.mjs). Figures are compared with targets
 * (targets.ts); a miss is reported, not fatal: the exit code is non-zero only
 * when the benchmark itself could not run cleanly. Results also go to
 * bench/results/latest.json.
 *
 * Server and load generator share the machine's cores, so throughput depends
 * on what else runs; the CPU time the server spends per request is the
 * steadier figure, and the run says when other processes were busy.
 *
 * Options: --duration S (8) --warmup S (2) --connections N (32) --starts N (5)
 *          --only id,id  --binary PATH  --rebuild
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BINARY_NAME, buildAll, formatBytes, gitCommit, ROOT } from "../scripts/build";
import { busyCores, machineCpu, readCpuSeconds, readMemory, runCommand, startServer, type ServerProcess } from "./lib/server";
import { scenarios, type BenchContext, type ScenarioResult } from "./scenarios";
import { evaluateTargets, megabytes, ms, ratio, shareOfCeiling, type Measurements } from "./targets";

function wholeNumber(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got ${text}`);
  return n;
}

/** Other processes using more than this many cores during a run make its throughput figures unreliable. */
const NOISY_CORES = 0.25;
const RESULTS = join(import.meta.dir, "results", "latest.json");

/** Where the server's CPU went during one scenario. */
interface CpuAccount {
  /** Server CPU time per request, warm-up included, in microseconds. */
  serverUsPerRequest: number;
  serverCores: number;
  generatorCores: number;
  /** Cores used by everything else on the machine meanwhile (other users, the OS). */
  otherCores: number;
}

/** dist/understudy, rebuilt when missing or older than anything it is built from. */
async function compiledBinary(binaryArg: string | undefined, rebuild: boolean): Promise<string> {
  if (binaryArg) return binaryArg;
  const binary = join(ROOT, "dist", BINARY_NAME);
  const sources = [join(ROOT, "package.json"), join(ROOT, "scripts", "build.ts"), ...listFiles(join(ROOT, "src"))];
  const newestSource = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  if (!rebuild && existsSync(binary) && statSync(binary).mtimeMs >= newestSource) {
    console.log(`using ${binary} (newer than the sources)`);
    return binary;
  }
  console.log("building dist/understudy ...");
  const built = await buildAll(join(ROOT, "dist"), { targets: ["binary"] });
  console.log(`built ${built.binary!.path} (${formatBytes(built.binary!.bytes)}, ${built.commit})`);
  return built.binary!.path;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

/** autocannon's latency histogram has 1 ms buckets: 0 means under a millisecond. */
const latency = (value: number) => (value < 1 ? "<1 ms" : `${value} ms`);

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

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
      only: { type: "string" },
      binary: { type: "string" },
      rebuild: { type: "boolean", default: false },
    },
    strict: true,
  });
  const load = {
    connections: wholeNumber("connections", args.connections!, 1, 1024),
    durationSeconds: wholeNumber("duration", args.duration!, 1, 120),
    warmupSeconds: wholeNumber("warmup", args.warmup!, 0, 60),
  };
  const startCount = wholeNumber("starts", args.starts!, 1, 50);
  const only = args.only?.split(",").map((s) => s.trim()).filter(Boolean);
  const selected = only ? scenarios.filter((s) => only.includes(s.id)) : scenarios;
  if (only && selected.length !== only.length) throw new Error(`unknown scenario in --only; known: ${scenarios.map((s) => s.id).join(", ")}`);

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
    // A fresh database, key and tenant; the server runs from an empty directory.
    const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work };
    const dbPath = join(work, "bench.db");
    const masterKey = (await runCommand([binary, "keygen"], { cwd: work, env: baseEnv })).trim();
    await runCommand([binary, "tenants", "create", "bench", "--db", dbPath], { cwd: work, env: baseEnv });
    const apiKey = (await runCommand([binary, "keys", "create", "--tenant", "bench", "--db", dbPath], { cwd: work, env: baseEnv })).trim();
    const serve = {
      command: [binary, "serve"],
      cwd: work,
      env: { ...baseEnv, UNDERSTUDY_MASTER_KEY: masterKey, UNDERSTUDY_DB: dbPath, UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0", UNDERSTUDY_REQUEST_LOG: "off" },
    };

    // Start-up: exec to the first 200 on /healthz, on an existing database (a restart).
    const startupSamples: number[] = [];
    for (let i = 0; i < startCount; i++) {
      const started = (running = await startServer(serve));
      startupSamples.push(started.startupMs);
      const code = await started.stop();
      running = undefined;
      if (code !== 0) throw new Error(`serve exited ${code ?? "(killed)"} after SIGTERM:\n${started.stderr()}`);
    }
    console.log(`start-up: ${startupSamples.map((x) => x.toFixed(0)).join(", ")} ms`);

    const server = (running = await startServer(serve));
    await Bun.sleep(1000); // let start-up work settle before calling it idle
    const idle = readMemory(server.pid);
    console.log(`server pid ${server.pid} at ${server.url}, idle RSS ${megabytes(idle.rssBytes)}`);

    const { url, pid } = server;
    const ctx: BenchContext = {
      url,
      apiKey,
      nodePath,
      load,
      post: (path, body) =>
        fetch(`${url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-api-key": apiKey },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        }),
    };
    const results: Record<string, ScenarioResult> = {};
    const cpu: Record<string, CpuAccount> = {};
    for (const scenario of selected) {
      console.log(`running ${scenario.title}: ${load.connections} connections, ${load.warmupSeconds} s warm-up + ${load.durationSeconds} s ...`);
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
        serverUsPerRequest: (serverSeconds * 1e6) / Math.max(1, result.total + result.warmupTotal),
        serverCores,
        generatorCores,
        otherCores: Math.max(0, busyCores(machineBefore, machineAfter) - serverCores - generatorCores),
      };
    }
    const afterLoad = readMemory(pid);
    const stopCode = await server.stop();
    running = undefined;
    if (stopCode !== 0) throw new Error(`serve exited ${stopCode ?? "(killed)"} after SIGTERM`);

    const measurements: Measurements = {
      scenarios: results,
      ceilingId: selected.find((s) => s.ceiling)?.id,
      idleRssBytes: idle.rssBytes,
      peakRssBytes: afterLoad.peakRssBytes,
      startupMs: { median: median(startupSamples), samples: startupSamples },
    };
    const outcomes = evaluateTargets(measurements);

    console.log(`\nunderstudy ${commit} on ${cpus()[0]?.model ?? "?"} x${availableParallelism()}, Bun ${Bun.version}; load: autocannon under node ${nodeVersion}`);
    console.log(`${load.connections} connections, ${load.durationSeconds} s per scenario after ${load.warmupSeconds} s warm-up; latency resolution 1 ms\n`);
    console.log(
      table(
        ["scenario", "req/s", "p50", "p99", "vs ceiling", "server CPU/req", "server cores", "load gen cores", "others' cores"],
        selected.map((s) => {
          const r = results[s.id]!;
          const c = cpu[s.id]!;
          const share = shareOfCeiling(measurements, s.id);
          return [
            s.title,
            Math.round(r.requestsPerSecond).toLocaleString("en-US"),
            latency(r.latencyMs.p50),
            latency(r.latencyMs.p99),
            share === undefined ? "-" : ratio(share),
            `${Math.round(c.serverUsPerRequest)} µs`,
            c.serverCores.toFixed(2),
            c.generatorCores.toFixed(2),
            c.otherCores.toFixed(2),
          ];
        }),
        [false, true, true, true, true, true, true, true, true],
      ),
    );
    const ceilingCpu = measurements.ceilingId ? cpu[measurements.ceilingId] : undefined;
    if (ceilingCpu && ceilingCpu.generatorCores >= 0.9 && ceilingCpu.serverCores < 0.9) {
      console.log(`\nnote: the ceiling is the load generator's (${ceilingCpu.generatorCores.toFixed(2)} cores), not the server's (${ceilingCpu.serverCores.toFixed(2)})`);
    }
    const noisiest = Math.max(0, ...Object.values(cpu).map((c) => c.otherCores));
    if (noisiest > NOISY_CORES) {
      console.log(`\nnote: other processes used up to ${noisiest.toFixed(2)} cores during the load; req/s and latency are noisy, server CPU/req is steadier`);
    }
    console.log(`\nidle RSS ${megabytes(idle.rssBytes)}, peak RSS ${megabytes(afterLoad.peakRssBytes)} (after load: ${megabytes(afterLoad.rssBytes)})`);
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
      binary,
      machine: { cpu: cpus()[0]?.model, cores: availableParallelism(), bun: Bun.version, loadGenerator: `autocannon under node ${nodeVersion}`, busyCoresBefore: busyBefore },
      settings: { ...load, starts: startCount },
      scenarios: Object.fromEntries(selected.map((s) => [s.id, { title: s.title, ...results[s.id]!, raw: undefined, cpu: cpu[s.id] }])),
      server: { idleRssBytes: idle.rssBytes, peakRssBytes: afterLoad.peakRssBytes, rssAfterLoadBytes: afterLoad.rssBytes, startupMs: measurements.startupMs },
      targets: outcomes,
    };
    writeFileSync(RESULTS, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nresults written to ${RESULTS}`);
    return 0;
  } finally {
    await running?.stop(2000);
    running = undefined;
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
