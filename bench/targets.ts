/**
 * What the benchmark is held to. A miss is reported, not fatal. Each target
 * reads one figure from the measurements; a figure that was not measured
 * (a scenario left out with --only) is reported as skipped.
 */
import type { ScenarioResult } from "./scenarios";

export interface Measurements {
  scenarios: Record<string, ScenarioResult>;
  ceilingId: string | undefined;
  idleRssBytes: number;
  peakRssBytes: number;
  startupMs: { median: number; samples: number[] };
}

export interface Target {
  name: string;
  comparison: "at least" | "at most" | "below";
  limit: number;
  /** How the figure and the limit are shown. */
  format: (value: number) => string;
  measure(m: Measurements): number | undefined;
  /** A related figure shown beside the actual one, held to no limit. */
  aside?(m: Measurements): string | undefined;
}

export interface TargetOutcome {
  name: string;
  actual: number | undefined;
  target: string;
  result: "PASS" | "MISS" | "SKIPPED";
  display: string;
}

const MB = 1_000_000;

export const ratio = (value: number) => value.toFixed(2);
export const ms = (value: number) => `${value.toFixed(value < 10 ? 1 : 0)} ms`;
export const megabytes = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

export const tenthMs = (value: number) => `${value.toFixed(1)} ms`;
export const jobsPerSecond = (value: number) => `${Math.round(value).toLocaleString("en-US")} jobs/s`;

/** Throughput of an HTTP scenario as a share of the ceiling's. */
export function shareOfCeiling(m: Measurements, id: string): number | undefined {
  const scenario = m.scenarios[id];
  const ceiling = m.ceilingId ? m.scenarios[m.ceilingId] : undefined;
  if (scenario?.kind !== "http" || ceiling?.kind !== "http" || ceiling.requestsPerSecond <= 0) return undefined;
  return scenario.requestsPerSecond / ceiling.requestsPerSecond;
}

/** The figures of one scenario when it ran and is of the given kind. */
function result<K extends ScenarioResult["kind"]>(m: Measurements, id: string, kind: K): Extract<ScenarioResult, { kind: K }> | undefined {
  const r = m.scenarios[id];
  return r?.kind === kind ? (r as Extract<ScenarioResult, { kind: K }>) : undefined;
}

export const targets: Target[] = [
  { name: "get throughput / ceiling", comparison: "at least", limit: 0.5, format: ratio, measure: (m) => shareOfCeiling(m, "credentials.get") },
  {
    name: "upsert (overwrite) throughput / ceiling",
    comparison: "at least",
    limit: 0.25,
    format: ratio,
    measure: (m) => shareOfCeiling(m, "credentials.upsert"),
  },
  {
    name: "upsert (new name) throughput / ceiling",
    comparison: "at least",
    limit: 0.25,
    format: ratio,
    measure: (m) => shareOfCeiling(m, "credentials.upsert.new"),
  },
  { name: "get p99 latency", comparison: "below", limit: 10, format: (v) => `${v} ms`, measure: (m) => result(m, "credentials.get", "http")?.latencyMs.p99 },
  {
    name: "jobs end to end (no-op + 1 credential, concurrency 4)",
    comparison: "at least",
    limit: 1500,
    format: jobsPerSecond,
    measure: (m) => result(m, "jobs.throughput", "jobs.throughput")?.jobsPerSecond,
  },
  {
    name: "job start delay, idle (p50)",
    comparison: "at most",
    limit: 2.5,
    format: tenthMs,
    measure: (m) => result(m, "jobs.start_delay", "jobs.start_delay")?.delayMs.p50,
    aside: (m) => {
      const r = result(m, "jobs.start_delay", "jobs.start_delay");
      return r && `p99 ${tenthMs(r.delayMs.p99)}`;
    },
  },
  { name: "start-up to first /healthz 200 (median)", comparison: "below", limit: 100, format: ms, measure: (m) => m.startupMs.median },
  { name: "idle RSS", comparison: "below", limit: 60 * MB, format: megabytes, measure: (m) => m.idleRssBytes },
];

export function evaluateTargets(m: Measurements, list: readonly Target[] = targets): TargetOutcome[] {
  return list.map((t) => {
    const actual = t.measure(m);
    const target = `${t.comparison === "at least" ? ">=" : t.comparison === "at most" ? "<=" : "<"} ${t.format(t.limit)}`;
    if (actual === undefined || Number.isNaN(actual)) return { name: t.name, actual: undefined, target, result: "SKIPPED", display: "-" };
    const met = t.comparison === "at least" ? actual >= t.limit : t.comparison === "at most" ? actual <= t.limit : actual < t.limit;
    const aside = t.aside?.(m);
    return { name: t.name, actual, target, result: met ? "PASS" : "MISS", display: aside ? `${t.format(actual)} (${aside})` : t.format(actual) };
  });
}
