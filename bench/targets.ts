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
  comparison: "at least" | "below";
  limit: number;
  /** How the figure and the limit are shown. */
  format: (value: number) => string;
  measure(m: Measurements): number | undefined;
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

/** Throughput of a scenario as a share of the ceiling's. */
export function shareOfCeiling(m: Measurements, id: string): number | undefined {
  const scenario = m.scenarios[id];
  const ceiling = m.ceilingId ? m.scenarios[m.ceilingId] : undefined;
  if (!scenario || !ceiling || ceiling.requestsPerSecond <= 0) return undefined;
  return scenario.requestsPerSecond / ceiling.requestsPerSecond;
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
  { name: "get p99 latency", comparison: "below", limit: 10, format: (v) => `${v} ms`, measure: (m) => m.scenarios["credentials.get"]?.latencyMs.p99 },
  { name: "start-up to first /healthz 200 (median)", comparison: "below", limit: 200, format: ms, measure: (m) => m.startupMs.median },
  { name: "idle RSS", comparison: "below", limit: 80 * MB, format: megabytes, measure: (m) => m.idleRssBytes },
];

export function evaluateTargets(m: Measurements, list: readonly Target[] = targets): TargetOutcome[] {
  return list.map((t) => {
    const actual = t.measure(m);
    const target = `${t.comparison === "at least" ? ">=" : "<"} ${t.format(t.limit)}`;
    if (actual === undefined || Number.isNaN(actual)) return { name: t.name, actual: undefined, target, result: "SKIPPED", display: "-" };
    const met = t.comparison === "at least" ? actual >= t.limit : actual < t.limit;
    return { name: t.name, actual, target, result: met ? "PASS" : "MISS", display: t.format(actual) };
  });
}
