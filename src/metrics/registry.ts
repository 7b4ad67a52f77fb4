/**
 * A small Prometheus registry (text exposition format 0.0.4), hand-written:
 * counters, histograms and gauges read at scrape time. No dependency, so it
 * behaves the same under Bun, Node and in the compiled binary.
 *
 * Labels must have bounded values (a route from the route table, a status
 * code, an outcome): never a tenant, an id, a value or a key.
 */

type Labels = Record<string, string>;

export interface Sample {
  labels?: Labels;
  value: number;
}

interface Metric {
  readonly name: string;
  render(): string[] | Promise<string[]>;
}

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

function formatLabels(labels: Labels | undefined, extra?: [string, string]): string {
  const entries = Object.entries(labels ?? {});
  if (extra) entries.push(extra);
  if (entries.length === 0) return "";
  return `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

const header = (name: string, help: string, type: string) => [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`];

/** Label values in a fixed order, so one series has one key. */
function keyOf(labelNames: readonly string[], labels: Labels): string {
  return JSON.stringify(labelNames.map((n) => labels[n] ?? ""));
}

export class Counter<L extends string = never> implements Metric {
  readonly #series = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[] = [],
  ) {}

  inc(labels: Record<L, string>, by = 1): void {
    const key = keyOf(this.labelNames, labels);
    const series = this.#series.get(key);
    if (series) series.value += by;
    else this.#series.set(key, { labels: { ...labels }, value: by });
  }

  /** Tests: the current value of one series. */
  get(labels: Record<L, string>): number {
    return this.#series.get(keyOf(this.labelNames, labels))?.value ?? 0;
  }

  render(): string[] {
    const lines = header(this.name, this.help, "counter");
    for (const { labels, value } of this.#series.values()) lines.push(`${this.name}${formatLabels(labels)} ${formatValue(value)}`);
    return lines;
  }
}

export class Histogram<L extends string = never> implements Metric {
  readonly #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
    readonly labelNames: readonly L[] = [],
  ) {}

  observe(labels: Record<L, string>, value: number): void {
    const key = keyOf(this.labelNames, labels);
    let series = this.#series.get(key);
    if (!series) this.#series.set(key, (series = { labels: { ...labels }, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) series.counts[i]!++;
    series.sum += value;
    series.count++;
  }

  render(): string[] {
    const lines = header(this.name, this.help, "histogram");
    for (const { labels, counts, sum, count } of this.#series.values()) {
      this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket${formatLabels(labels, ["le", formatValue(le)])} ${counts[i]}`));
      lines.push(`${this.name}_bucket${formatLabels(labels, ["le", "+Inf"])} ${count}`);
      lines.push(`${this.name}_sum${formatLabels(labels)} ${formatValue(sum)}`);
      lines.push(`${this.name}_count${formatLabels(labels)} ${count}`);
    }
    return lines;
  }
}

/** A gauge whose samples are read when scraped (from the database, the process). */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly collect: () => Sample[] | Promise<Sample[]>,
  ) {}

  async render(): Promise<string[]> {
    const lines = header(this.name, this.help, "gauge");
    for (const { labels, value } of await this.collect()) lines.push(`${this.name}${formatLabels(labels)} ${formatValue(value)}`);
    return lines;
  }
}

export class Registry {
  readonly #metrics: Metric[] = [];

  register<M extends Metric>(metric: M): M {
    if (this.#metrics.some((m) => m.name === metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.#metrics.push(metric);
    return metric;
  }

  /** The exposition text; `extra` are metrics of one scrape (e.g. read from one database). */
  async render(extra: readonly Metric[] = []): Promise<string> {
    const lines: string[] = [];
    for (const metric of [...this.#metrics, ...extra]) lines.push(...(await metric.render()));
    return `${lines.join("\n")}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export const HTTP_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;
export const SCHEDULE_LAG_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] as const;

/**
 * The process-wide metrics. One process serves one database, so the
 * counters of the HTTP app, the webhook worker and the scheduler live here
 * and need no wiring through every deps object.
 */
export const metrics = new Registry();

export const httpRequests = metrics.register(
  new Counter("understudy_http_requests_total", "HTTP requests answered, by matched route, method and status.", ["route", "method", "status"] as const),
);
export const httpRequestDuration = metrics.register(
  new Histogram("understudy_http_request_duration_seconds", "Time to answer an HTTP request, by matched route.", HTTP_DURATION_BUCKETS, ["route"] as const),
);
export const webhookDeliveries = metrics.register(
  new Counter(
    "understudy_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: succeeded, failed (for good) or retried (another attempt is scheduled).",
    ["outcome"] as const,
  ),
);
export const scheduleLag = metrics.register(
  new Histogram("understudy_schedule_lag_seconds", "Schedule fire lag: when the job was queued minus when the fire was due.", SCHEDULE_LAG_BUCKETS),
);

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** A method label with bounded values: anything unusual is "other". */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : "other";
}
