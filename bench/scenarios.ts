/**
 * The benchmark scenarios, run in this order against one server. To add one,
 * append to `scenarios`: an HTTP load is `httpScenario({...})`; anything else
 * implements `Scenario.run` itself and returns the same figures. Targets
 * (targets.ts) refer to scenarios by `id`.
 */
import { runLoad, type LoadRequest, type LoadResult, type LoadSettings } from "./lib/load";

export interface BenchContext {
  /** The server's base URL, e.g. http://127.0.0.1:40123. */
  url: string;
  /** An API key of the tenant the benchmark uses (rate limit off). */
  apiKey: string;
  nodePath: string;
  load: LoadSettings;
  /** A POST with the API key, for setting up state before a load. */
  post(path: string, body: unknown): Promise<Response>;
}

export type ScenarioResult = LoadResult;

export interface Scenario {
  /** Stable key, used in results JSON and by targets. */
  id: string;
  /** What the table shows. */
  title: string;
  /** The scenario every other throughput is compared with (the server's ceiling). */
  ceiling?: boolean;
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
    async run(ctx) {
      await definition.setup?.(ctx);
      return runLoad(ctx.nodePath, ctx.url, definition.request(ctx), ctx.load);
    },
  };
}

/** A 32-byte value, like a typical password or token. */
export const VALUE = "v".repeat(16) + "0123456789abcdef";

const json = (ctx: BenchContext) => ({ "content-type": "application/json", "x-api-key": ctx.apiKey });

async function expectOk(response: Response, what: string) {
  if (response.status !== 200) throw new Error(`${what}: HTTP ${response.status}: ${await response.text()}`);
}

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
];
