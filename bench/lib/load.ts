import { join } from "node:path";

/** One kind of request, fired by every connection in turn for the whole run. */
export interface LoadRequest {
  method: "GET" | "POST";
  path: string;
  headers?: Record<string, string>;
  /** A fixed body. */
  body?: string;
  /** A body in which `{n}` is replaced by a counter (0, 1, 2, ...), for a new row per request. */
  bodyTemplate?: string;
}

export interface LoadSettings {
  connections: number;
  durationSeconds: number;
  warmupSeconds: number;
}

/** The figures of one run that the report uses; `raw` is autocannon's whole result. */
export interface LoadResult {
  requestsPerSecond: number;
  /** autocannon records latency in whole milliseconds (a 1 ms histogram bucket). */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  total: number;
  /** Requests completed during the warm-up (not in the figures above). */
  warmupTotal: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  durationSeconds: number;
  /** CPU time the load generator used (user + system), so that its share of the machine is known. */
  generatorCpuSeconds: number;
  raw: unknown;
}

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p90: number; p99: number; max: number; mean: number };
  "2xx": number;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
  statusCodeStats?: Record<string, { count: number }>;
  warmup?: { requests: { total: number } };
}

const GENERATOR = join(import.meta.dir, "load-generator.mjs");

/**
 * Drives `url` with autocannon from a separate `node` process and returns
 * its figures. Throws when the run could not be made or was not clean (any
 * non-2xx answer, connection error or timeout makes the figures meaningless).
 */
export async function runLoad(nodePath: string, url: string, request: LoadRequest, settings: LoadSettings): Promise<LoadResult> {
  const spec = { url, ...request, ...settings };
  // Bounded: the run itself, plus room for start-up and a slow drain.
  const limitMs = (settings.warmupSeconds + settings.durationSeconds + 30) * 1000;
  const child = Bun.spawn([nodePath, GENERATOR, JSON.stringify(spec)], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: limitMs,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (child.signalCode) throw new Error(`the load generator was stopped (${child.signalCode}) after ${limitMs} ms:\n${stderr}`);
  if (exitCode !== 0) throw new Error(`the load generator failed (exit ${exitCode}):\n${stderr}`);
  const result = JSON.parse(stdout) as AutocannonResult;
  const figures: LoadResult = {
    requestsPerSecond: result.requests.average,
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max, mean: result.latency.mean },
    total: result.requests.total,
    warmupTotal: result.warmup?.requests.total ?? 0,
    ok2xx: result["2xx"],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationSeconds: result.duration,
    generatorCpuSeconds: Number(child.resourceUsage()?.cpuTime.total ?? 0n) / 1e6,
    raw: result,
  };
  if (figures.non2xx > 0 || figures.errors > 0 || figures.timeouts > 0 || figures.ok2xx === 0) {
    const codes = JSON.stringify(result.statusCodeStats ?? {});
    throw new Error(
      `${request.method} ${request.path}: ${figures.ok2xx} ok, ${figures.non2xx} non-2xx (${codes}), ${figures.errors} errors, ${figures.timeouts} timeouts`,
    );
  }
  return figures;
}
