/**
 * The dashboard's Workflows pages over real HTTP: the list (workflows,
 * builds, the tenant's own deployments), one workflow with its declared
 * credentials marked present or missing, and the start form generated from
 * the input schema, whose values reach the job coerced per the schema.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { workflow } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";
import { FAST_ENV, getJob } from "../jobs/support";
import { signIn, type UiClient } from "./support";

const search = workflow("search", {
  credentials: ["site_login", "api_token"],
  input: z.object({
    query: z.string().describe("What to search for"),
    count: z.number().int().optional(),
    ratio: z.number().optional(),
    verbose: z.boolean().optional(),
    mode: z.enum(["fast", "slow"]),
    secret: z.string().meta({ format: "password" }).optional(),
    tags: z.array(z.string()).optional(),
  }),
  output: z.object({ hits: z.number() }),
  handler: () => ({ hits: 0 }),
});
const freeform = workflow("freeform", (_ctx, input) => input);

let server: TestServer;
let alpha: UiClient;
let beta: UiClient;
const DEPLOYMENT_ID = "01900000-0000-7000-8000-00000000d001";

beforeAll(async () => {
  server = await startTestServer({ workflows: [search, freeform], env: FAST_ENV, runnerPaused: true });
  alpha = await signIn(server, server.keys.alpha);
  beta = await signIn(server, server.keys.beta);
  const stored = await server.post("/v1/credentials/upsert", { name: "site_login", value: "pw-of-alpha" });
  expect(stored.status).toBe(200);
  // A (failed) deployment of alpha's, written directly: building one needs a worker process.
  const at = new Date().toISOString();
  await server.db
    .insertInto("deployments")
    .values({
      id: DEPLOYMENT_ID,
      tenant_id: server.tenants.alpha,
      version: 1,
      status: "failed",
      entry_point: "alpha-entry.js",
      description: "alpha's upload",
      auto_repair: 0,
      build_error: "alpha's build broke",
      upload_bytes: 10,
      unpacked_bytes: 10,
      created_at: at,
      updated_at: at,
      ready_at: null,
      build_lease_until: null,
    })
    .execute();
});
afterAll(async () => server.close());

const jobCount = async () => (await server.db.selectFrom("jobs").select("id").execute()).length;

/** The opening tag of the form control named `name`. */
function control(html: string, name: string): string {
  const tag = new RegExp(`<(input|select|textarea)\\b[^>]*\\bname="${name.replace(/\./g, "\\.")}"[^>]*>`).exec(html)?.[0];
  if (!tag) throw new Error(`no control named ${name}`);
  return tag;
}
const attr = (tag: string, name: string) => new RegExp(`\\b${name}="([^"]*)"`).exec(tag)?.[1];
const flashOf = (headers: Headers) => {
  const cookie = headers.getSetCookie().find((c) => c.startsWith("understudy_flash="));
  return cookie ? JSON.parse(decodeURIComponent(cookie.split(";")[0]!.slice("understudy_flash=".length))).message : undefined;
};

function expectStrictCspFriendly(html: string): void {
  expect(html).not.toMatch(/\sstyle="/);
  expect(html).not.toMatch(/\son[a-z]+="/);
  expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
}

describe("GET /ui/workflows", () => {
  test("lists the tenant's workflows with links, source and status, and its deployments", async () => {
    const page = await alpha.get("/ui/workflows");
    expect(page.status).toBe(200);
    expect(page.text).toContain('<a href="/ui/workflows/search">search</a>');
    expect(page.text).toContain('<a href="/ui/workflows/freeform">freeform</a>');
    expect(page.text).toContain('data-workflow="search"');
    expect(page.text).toContain("workflow file");
    expect(page.text).toContain('class="badge ready"');
    expect(page.text).toContain('<th scope="col">Name</th>');
    expect(page.text).toContain('data-label="Status"');
    expect(page.text).toMatch(/<h2[^>]*>Deployments<\/h2>/);
    expect(page.text).toContain(`data-deployment="${DEPLOYMENT_ID}"`);
    expect(page.text).toContain("alpha-entry.js");
    expect(page.text).toContain("alpha&#39;s build broke");
    expect(page.text).toContain("No deployment is building.");
    expectStrictCspFriendly(page.text);
  });

  test("tenant beta never sees alpha's deployments", async () => {
    const page = await beta.get("/ui/workflows");
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(DEPLOYMENT_ID);
    expect(page.text).not.toContain("alpha-entry.js");
    expect(page.text).toContain("No deployments yet.");
  });

  test("signed out, the page sends you to sign in", async () => {
    const r = await fetch(`${server.url}/ui/workflows`, { redirect: "manual" });
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/ui/sign-in");
  });
});

describe("GET /ui/workflows/:name", () => {
  test("shows source, status, the declared credentials (the missing one marked) and the output schema", async () => {
    const page = await alpha.get("/ui/workflows/search");
    expect(page.status).toBe(200);
    expect(page.text).toContain("<h1>Workflow search</h1>");
    expect(page.text).toMatch(/<tr data-credential="site_login" data-present="true">[\s\S]*?badge present/);
    expect(page.text).toMatch(/<tr data-credential="api_token" data-present="false">[\s\S]*?badge missing[\s\S]*?href="\/ui\/credentials#add"/);
    expect(page.text).toContain("1 declared credential is missing");
    expect(page.text).toMatch(/<pre class="schema"><code>[^<]*&quot;hits&quot;/);
    expectStrictCspFriendly(page.text);
  });

  test("another tenant sees every declared credential missing", async () => {
    const page = await beta.get("/ui/workflows/search");
    expect(page.text).toContain('data-credential="site_login" data-present="false"');
  });

  test("the start form has one labelled field per schema property, typed and marked required per the schema", async () => {
    const { text } = await alpha.get("/ui/workflows/search");
    expect(text).toContain('action="/ui/workflows/search/run"');
    const expected: Record<string, { tag: string; type?: string; required: boolean; step?: string }> = {
      query: { tag: "input", type: "text", required: true },
      count: { tag: "input", type: "number", required: false, step: "1" },
      ratio: { tag: "input", type: "number", required: false, step: "any" },
      verbose: { tag: "input", type: "checkbox", required: false },
      mode: { tag: "select", required: true },
      secret: { tag: "input", type: "password", required: false },
      tags: { tag: "textarea", required: false },
    };
    for (const [key, want] of Object.entries(expected)) {
      const tag = control(text, `param.${key}`);
      expect(tag.startsWith(`<${want.tag}`)).toBe(true);
      if (want.type) expect(attr(tag, "type")).toBe(want.type);
      if (want.step) expect(attr(tag, "step")).toBe(want.step);
      expect(/\brequired\b/.test(tag)).toBe(want.required);
      const id = attr(tag, "id")!;
      expect(text).toMatch(new RegExp(`<label[^>]*for="${id}"[^>]*>[\\s\\S]*?<span class="field-name">${key}</span>`));
    }
    expect(text).toContain('<option value="fast">fast</option>');
    expect(text).toContain("What to search for");
    expect(control(text, "timeout_seconds")).toContain('type="number"');
    expect(text).toMatch(/<button type="submit">Start job<\/button>/);
    expect(text).not.toContain('name="params_json"');
  });

  test("a workflow without an input schema offers one JSON textarea defaulting to {}", async () => {
    const { text } = await alpha.get("/ui/workflows/freeform");
    expect(text).toMatch(/<label for="params-json">\s*Params \(JSON object\)/);
    expect(text).toMatch(/<textarea[^>]*name="params_json"[^>]*>\{\}<\/textarea>/);
    expect(text).toContain("This workflow declares no credentials.");
  });

  test("an unknown workflow is 404", async () => {
    const page = await alpha.get("/ui/workflows/no-such-flow");
    expect(page.status).toBe(404);
    expect(page.text).toContain("no-such-flow");
  });
});

describe("POST /ui/workflows/:name/run", () => {
  test("starts a job with the params coerced per the schema and redirects to its page", async () => {
    const r = await alpha.post("/ui/workflows/search/run", {
      "param.query": "hello world",
      "param.count": "3",
      "param.ratio": "0.5",
      "param.verbose": "true",
      "param.mode": "slow",
      "param.secret": "",
      "param.tags": '["a", "b"]',
      timeout_seconds: "60",
    });
    expect(r.status).toBe(303);
    const id = /^\/ui\/jobs\/([0-9a-f-]{36})$/.exec(r.location ?? "")?.[1];
    expect(id).toBeDefined();
    expect(flashOf(r.headers)).toContain("Job queued");
    const job = await getJob(server, id!);
    expect(job.workflow).toBe("search");
    expect(job.params).toEqual({ query: "hello world", count: 3, ratio: 0.5, verbose: true, mode: "slow", tags: ["a", "b"] });
    expect(job.timeout_seconds).toBe(60);
  });

  test("empty optional fields are left out and an unchecked box is false", async () => {
    const r = await alpha.post("/ui/workflows/search/run", { "param.query": "q", "param.count": "", "param.mode": "fast", "param.tags": "" });
    expect(r.status).toBe(303);
    const job = await getJob(server, r.location!.split("/").pop()!);
    expect(job.params).toEqual({ query: "q", mode: "fast", verbose: false });
    expect(job.timeout_seconds).toBe(1800);
  });

  test("a bad number, a fraction for an integer, bad JSON or a missing required field is 400 naming the field, and queues nothing", async () => {
    const before = await jobCount();
    const cases: [Record<string, string>, string][] = [
      [{ "param.query": "q", "param.mode": "fast", "param.count": "many" }, 'Field "count" must be a number'],
      [{ "param.query": "q", "param.mode": "fast", "param.count": "2.5" }, 'Field "count" must be a whole number'],
      [{ "param.query": "q", "param.mode": "fast", "param.tags": "[oops" }, 'Field "tags" is not valid JSON'],
      [{ "param.query": "", "param.mode": "fast" }, 'Field "query" is required'],
      [{ "param.query": "q", "param.mode": "medium" }, 'Field "mode" must be one of fast, slow'],
      [{ "param.query": "q", "param.mode": "fast", timeout_seconds: "soon" }, 'Field "Timeout seconds" must be a number'],
    ];
    for (const [fields, message] of cases) {
      const r = await alpha.post("/ui/workflows/search/run", fields);
      expect(r.status).toBe(400);
      expect(r.text.replace(/&quot;|&#34;/g, '"')).toContain(message);
      // The page comes back with its form and what was typed.
      expect(r.text).toContain("<h1>Workflow search</h1>");
      expect(r.text).toContain('role="alert"');
    }
    expect(await jobCount()).toBe(before);
  });

  test("the re-rendered form keeps what was typed", async () => {
    const r = await alpha.post("/ui/workflows/search/run", { "param.query": "kept text", "param.mode": "slow", "param.count": "x" });
    expect(r.status).toBe(400);
    expect(attr(control(r.text, "param.query"), "value")).toBe("kept text");
    expect(r.text).toContain('<option value="slow" selected="">slow</option>');
  });

  test("an API refusal (timeout out of range) re-renders with the API's status and message", async () => {
    const before = await jobCount();
    const r = await alpha.post("/ui/workflows/search/run", { "param.query": "q", "param.mode": "fast", timeout_seconds: "0" });
    expect(r.status).toBe(400);
    expect(r.text).toContain("timeout_seconds must be at least 1");
    expect(await jobCount()).toBe(before);
  });

  test("the JSON params of a schema-less workflow: an object is sent as is; bad JSON or a non-object is 400", async () => {
    const ok = await alpha.post("/ui/workflows/freeform/run", { params_json: '{"a": 1, "b": [true]}' });
    expect(ok.status).toBe(303);
    expect((await getJob(server, ok.location!.split("/").pop()!)).params).toEqual({ a: 1, b: [true] });
    const before = await jobCount();
    for (const bad of ["{a:1}", "[1,2]"]) {
      const r = await alpha.post("/ui/workflows/freeform/run", { params_json: bad });
      expect(r.status).toBe(400);
      expect(r.text).toContain("Params (JSON object)");
    }
    expect(await jobCount()).toBe(before);
  });

  test("an unknown workflow is 404 and queues nothing", async () => {
    const before = await jobCount();
    const r = await alpha.post("/ui/workflows/no-such-flow/run", { params_json: "{}" });
    expect(r.status).toBe(404);
    expect(await jobCount()).toBe(before);
  });

  test("without the CSRF token the start is refused and nothing is queued", async () => {
    const before = await jobCount();
    const r = await alpha.post("/ui/workflows/freeform/run", { params_json: "{}" }, { csrf: false });
    expect(r.status).toBe(403);
    expect(await jobCount()).toBe(before);
  });
});
