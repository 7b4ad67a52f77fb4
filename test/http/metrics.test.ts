/**
 * GET /metrics: Prometheus text format 0.0.4, unauthenticated, counters that
 * move with requests, job gauges read from the database, and no tenant name,
 * tenant id, value or API key anywhere in it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, startTestServer, type TestServer } from "../helpers";
import { createSchedule, scheduleHarness } from "../schedules/support";
import { createEndpoint, startReceiver, waitForSettled } from "../webhooks/support";
import { expectOk } from "./wire";

let server: TestServer;
const echo = workflow("echo", { credentials: ["password"], handler: (_ctx, input) => ({ got: input }) });

beforeAll(async () => {
  // The runner stays stopped, so the jobs of this file stay queued and the gauges are exact.
  server = await startTestServer({ workflows: [echo], runnerPaused: true });
});
afterAll(async () => {
  await server.close();
});

interface Exposition {
  types: Map<string, string>;
  helps: Map<string, string>;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;

/** A strict parser of the text format: fails the test on any line that is not HELP, TYPE or a well-formed sample of a declared family. */
function parseExposition(text: string): Exposition {
  const out: Exposition = { types: new Map(), helps: new Map(), samples: [] };
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (help) {
      out.helps.set(help[1]!, help[2]!);
      continue;
    }
    if (type) {
      expect(out.types.has(type[1]!)).toBe(false);
      out.types.set(type[1]!, type[2]!);
      continue;
    }
    const sample = SAMPLE.exec(line);
    if (!sample) throw new Error(`not a Prometheus text line: ${JSON.stringify(line)}`);
    const [, name, rawLabels = "", rawValue] = sample;
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < rawLabels.length) {
      const match = LABEL.exec(rawLabels);
      if (!match) throw new Error(`bad labels in: ${line}`);
      labels[match[1]!] = match[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const value = rawValue === "+Inf" ? Infinity : rawValue === "-Inf" ? -Infinity : Number(rawValue);
    if (rawValue !== "NaN" && Number.isNaN(value)) throw new Error(`bad value in: ${line}`);
    const family = out.types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, "");
    if (!out.types.has(family)) throw new Error(`sample before its TYPE line: ${line}`);
    out.samples.push({ name: name!, labels, value });
  }
  return out;
}

async function scrape(): Promise<{ text: string; parsed: Exposition }> {
  const response = await fetch(`${server.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  const text = await response.text();
  return { text, parsed: parseExposition(text) };
}

function valueOf(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const hit = e.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hit?.value ?? 0;
}

describe("GET /metrics", () => {
  test("answers without an API key, in the text format, with HELP and TYPE for every metric", async () => {
    const { parsed } = await scrape();
    const expected: Record<string, string> = {
      understudy_http_requests_total: "counter",
      understudy_http_request_duration_seconds: "histogram",
      understudy_jobs: "gauge",
      understudy_jobs_queue_depth: "gauge",
      understudy_jobs_running: "gauge",
      understudy_webhook_deliveries_total: "counter",
      understudy_schedule_lag_seconds: "histogram",
      understudy_build_info: "gauge",
      process_resident_memory_bytes: "gauge",
    };
    for (const [name, type] of Object.entries(expected)) {
      expect({ name, type: parsed.types.get(name) }).toEqual({ name, type });
      expect(parsed.helps.get(name)?.length ?? 0).toBeGreaterThan(0);
    }
    const build = parsed.samples.find((s) => s.name === "understudy_build_info");
    expect(build?.value).toBe(1);
    expect(build?.labels.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(typeof build?.labels.commit).toBe("string");
    expect(valueOf(parsed, "process_resident_memory_bytes")).toBeGreaterThan(1_000_000);
  });

  test("request counters and the duration histogram move; an unknown path counts as unmatched, never by its name", async () => {
    const before = (await scrape()).parsed;
    const listed = { route: "/v1/credentials/list", method: "POST", status: "200" };
    for (let i = 0; i < 3; i++) expectOk(await server.post("/v1/credentials/list", {}), false);
    const strangePath = `/v1/nothing-here-${crypto.randomUUID()}`;
    expect((await server.post(strangePath, {})).status).toBe(404);
    expect((await server.post("/v1/credentials/list", {}, { key: null })).status).toBe(401);
    const { text, parsed: after } = await scrape();

    expect(valueOf(after, "understudy_http_requests_total", listed) - valueOf(before, "understudy_http_requests_total", listed)).toBe(3);
    const unmatched = { route: "unmatched", method: "POST", status: "404" };
    expect(valueOf(after, "understudy_http_requests_total", unmatched) - valueOf(before, "understudy_http_requests_total", unmatched)).toBe(1);
    const refused = { route: "/v1/credentials/list", method: "POST", status: "401" };
    expect(valueOf(after, "understudy_http_requests_total", refused) - valueOf(before, "understudy_http_requests_total", refused)).toBe(1);
    const count = (e: Exposition) => valueOf(e, "understudy_http_request_duration_seconds_count", { route: "/v1/credentials/list" });
    expect(count(after) - count(before)).toBe(4);
    const inf = valueOf(after, "understudy_http_request_duration_seconds_bucket", { route: "/v1/credentials/list", le: "+Inf" });
    expect(inf).toBe(count(after));
    expect(text).not.toContain("nothing-here");
    // Every route label is a route of the table, the fixed "unmatched", or the dashboard's one fixed "/ui".
    for (const s of after.samples.filter((x) => x.name.startsWith("understudy_http_"))) {
      // (Route names may be camelCase: /v1/browserProfiles/list.)
      expect(s.labels.route === "unmatched" || s.labels.route === "/ui" || /^\/v1\/[A-Za-z_]+\/[A-Za-z_]+$/.test(s.labels.route!)).toBe(true);
    }
  });

  test("job gauges count from the database; no tenant name, tenant id, value or API key appears", async () => {
    const tenant = await addTenant(server, "secret-tenant-name");
    const value = `metrics-value-${crypto.randomUUID()}`;
    expectOk(await server.post("/v1/credentials/upsert", { name: "password", value }, { key: tenant.key }), false);
    const before = (await scrape()).parsed;
    const job = expectOk(
      await server.post("/v1/jobs/create", { workflow: "echo", params: { note: `param-${value}` } }, { key: tenant.key }),
      false,
    );
    expect(job.status).toBe("queued");
    const { text, parsed: after } = await scrape();

    expect(valueOf(after, "understudy_jobs", { status: "queued" }) - valueOf(before, "understudy_jobs", { status: "queued" })).toBe(1);
    expect(valueOf(after, "understudy_jobs_queue_depth") - valueOf(before, "understudy_jobs_queue_depth")).toBe(1);
    expect(valueOf(after, "understudy_jobs_running")).toBe(0);

    for (const secret of [
      "secret-tenant-name",
      tenant.tenantId,
      server.tenants.alpha,
      server.tenants.beta,
      value,
      tenant.key,
      server.keys.alpha,
      server.keys.beta,
      tenant.key.slice(0, 12),
      tenant.apiKeyId,
      job.job_id,
    ]) {
      expect(text.includes(secret)).toBe(false);
    }
    expect(text).not.toContain("usk_");
  });

  test("the OpenAPI document lists GET /metrics", async () => {
    const doc = (await (await fetch(`${server.url}/v1/openapi.json`)).json()) as any;
    expect(doc.paths["/metrics"]?.get).toBeDefined();
  });
});

describe("metrics recorded by the workers", () => {
  test("webhook delivery attempts count by outcome: retried, then succeeded", async () => {
    const receiver = await startReceiver((_request, index) => (index === 0 ? { status: 500, body: "no" } : { status: 200, body: "ok" }));
    const plain = workflow("plain", () => ({ ok: true }));
    const hooks = await startTestServer({
      workflows: [plain],
      env: { UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1", UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,0,0" },
    });
    try {
      const read = async () => parseExposition(await (await fetch(`${hooks.url}/metrics`)).text());
      const outcome = (e: Exposition, name: string) => valueOf(e, "understudy_webhook_deliveries_total", { outcome: name });
      const before = await read();
      await createEndpoint(hooks, hooks.keys.alpha, { url: receiver.url });
      const job = expectOk(await hooks.post("/v1/jobs/create", { workflow: "plain" }), false);
      const [delivery] = await waitForSettled(hooks, hooks.keys.alpha, { job_id: job.job_id });
      expect(delivery.status).toBe("succeeded");
      const after = await read();
      expect(outcome(after, "retried") - outcome(before, "retried")).toBe(1);
      expect(outcome(after, "succeeded") - outcome(before, "succeeded")).toBe(1);
      expect(outcome(after, "failed") - outcome(before, "failed")).toBe(0);
      expect(valueOf(after, "understudy_jobs", { status: "completed" })).toBe(1);
    } finally {
      await hooks.close();
      await receiver.close();
    }
  });

  test("the scheduler observes each fire's lag behind its due time", async () => {
    const harness = await scheduleHarness({ start: "2026-03-02T10:00:00.000Z", workflows: [echo] });
    try {
      const read = async () => parseExposition(await (await fetch(`${harness.server.url}/metrics`)).text());
      await createSchedule(harness.server, { workflow: "echo", cron_expr: "*/5 * * * *" });
      const before = await read();
      harness.clock.set("2026-03-02T10:05:30.000Z"); // due 10:05:00, fired 30 s late
      expect((await harness.scheduler.tick()).fired).toBe(1);
      const after = await read();
      const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
      expect(delta("understudy_schedule_lag_seconds_count")).toBe(1);
      expect(delta("understudy_schedule_lag_seconds_sum")).toBeCloseTo(30, 3);
      expect(delta("understudy_schedule_lag_seconds_bucket", { le: "10" })).toBe(0);
      expect(delta("understudy_schedule_lag_seconds_bucket", { le: "30" })).toBe(1);
    } finally {
      await harness.close();
    }
  });
});
