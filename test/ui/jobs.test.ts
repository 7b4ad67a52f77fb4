/**
 * The dashboard's Jobs pages over real HTTP (no browser): the list and its
 * filters, one job's page, its artifacts, its live log (server-sent events),
 * cancel, and tenant isolation. Only 127.0.0.1; every wait is bounded.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { insertArtifacts } from "../../src/artifacts/store";
import { workflow } from "../../src/workflows/define";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";
import { createJob, FAST_ENV, gate, waitForEnd, waitForRunning } from "../jobs/support";
import { followFlash, signIn, type UiClient } from "./support";

const gates = new Map<string, ReturnType<typeof gate>>();
const gateFor = (key: string) => {
  let g = gates.get(key);
  if (!g) gates.set(key, (g = gate()));
  return g;
};

const echo = workflow("ui-echo", (ctx, input: { n?: number; fail?: boolean }) => {
  ctx.log.info(`echo ${input.n ?? 0}`);
  if (input.fail) throw new Error(`echo failed on purpose ${input.n ?? 0}`);
  return { doubled: (input.n ?? 0) * 2 };
});
/** Waits for its gate, then logs five lines with small sleeps. */
const chatty = workflow("ui-chatty", async (ctx, input: { key: string }) => {
  await gateFor(input.key).promise;
  for (let i = 1; i <= 5; i++) {
    ctx.log.info(`line ${i} of 5`);
    await Bun.sleep(30);
  }
  return { lines: 5 };
});
/** Runs until it is cancelled (bounded: 20 s). */
const waits = workflow("ui-waits", async (ctx) => {
  ctx.log.info("waiting to be cancelled");
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 20_000);
    ctx.signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  throw new Error("stopped");
});
const SECRET = "pw-9f3c1d-NEVER-SHOWN";
const leaky = workflow("ui-leaky", {
  credentials: ["password"],
  handler(ctx, input: { credentials?: { password?: string } }) {
    const pw = input.credentials?.password;
    ctx.log.info(`logging in with ${pw}`);
    ctx.log.warn("json form", JSON.stringify({ pw }));
    return { echoed: pw };
  },
});

let server: TestServer;
let alpha: UiClient;
let beta: UiClient;
beforeAll(async () => {
  server = await startTestServer({ workflows: [echo, chatty, waits, leaky], env: FAST_ENV });
  alpha = await signIn(server, server.keys.alpha);
  beta = await signIn(server, server.keys.beta);
});
afterAll(async () => server.close());

const jobLinks = (html: string) => [...html.matchAll(/href="\/ui\/jobs\/([0-9a-f-]{36})"/g)].map((m) => m[1]!);

interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** Reads server-sent events from `path` until an `end` event (or the stream closes); bounded by `ms`. */
async function readStream(client: UiClient, path: string, headers: Record<string, string> = {}, ms = 10_000): Promise<{ status: number; raw: string; events: SseEvent[] }> {
  const response = await fetch(`${server.url}${path}`, { headers: { cookie: client.cookie, accept: "text/event-stream", ...headers }, signal: AbortSignal.timeout(ms) });
  if (response.status !== 200) return { status: response.status, raw: await response.text(), events: [] };
  expect(response.headers.get("content-type")).toContain("text/event-stream");
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let raw = "";
  const events: SseEvent[] = [];
  let consumed = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    raw += decoder.decode(value, { stream: true });
    let boundary: number;
    while ((boundary = raw.indexOf("\n\n", consumed)) >= 0) {
      const block = raw.slice(consumed, boundary);
      consumed = boundary + 2;
      const event: SseEvent = { event: "message", data: "" };
      let isComment = true;
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        isComment = false;
        const colon = line.indexOf(":");
        const field = line.slice(0, colon);
        const val = line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.event = val;
        else if (field === "data") event.data += val;
        else if (field === "id") event.id = val;
      }
      if (!isComment) events.push(event);
    }
    if (events.some((e) => e.event === "end")) {
      await reader.cancel();
      break;
    }
  }
  return { status: 200, raw, events };
}

describe("the jobs list", () => {
  test("shows the tenant's jobs newest first; status and workflow filters work; another tenant sees none of them", async () => {
    const ok = await createJob(server, { workflow: "ui-echo", params: { n: 1 } });
    const bad = await createJob(server, { workflow: "ui-echo", params: { n: 2, fail: true } });
    await waitForEnd(server, ok);
    await waitForEnd(server, bad);

    const all = await alpha.get("/ui/jobs");
    expect(all.status).toBe(200);
    expect(all.text).toContain("<h1>Jobs</h1>");
    const links = jobLinks(all.text);
    expect(links).toContain(ok);
    expect(links).toContain(bad);
    expect(links.indexOf(bad)).toBeLessThan(links.indexOf(ok));
    expect(all.text).toContain('<th scope="col">Workflow</th>');
    expect(all.text).toContain('name="status"');
    expect(all.text).toContain('name="workflow"');

    const failed = await alpha.get("/ui/jobs?status=failed&workflow=ui-echo");
    expect(failed.status).toBe(200);
    expect(jobLinks(failed.text)).toContain(bad);
    expect(jobLinks(failed.text)).not.toContain(ok);
    expect(failed.text).toMatch(/<option value="failed" selected/);

    const other = await alpha.get("/ui/jobs?status=any&workflow=no-such-workflow");
    expect(other.status).toBe(200);
    expect(jobLinks(other.text)).toEqual([]);
    expect(other.text).toContain("No jobs match these filters.");

    const betaList = await beta.get("/ui/jobs");
    expect(betaList.status).toBe(200);
    expect(jobLinks(betaList.text)).not.toContain(ok);
    expect(jobLinks(betaList.text)).not.toContain(bad);
  });

  test("an empty list says so; the next page follows the API's cursor", async () => {
    const tenant = await addTenant(server, uniqueName("tenant"));
    const client = await signIn(server, tenant.key);
    const empty = await client.get("/ui/jobs");
    expect(empty.status).toBe(200);
    expect(empty.text).toContain("No jobs yet.");

    const ids: string[] = [];
    for (let i = 0; i < 27; i++) ids.push(await createJob(server, { workflow: "ui-echo", params: { n: i } }, tenant.key));
    const first = await client.get("/ui/jobs");
    const firstLinks = jobLinks(first.text);
    expect(firstLinks.length).toBe(25);
    const next = /<a href="(\/ui\/jobs\?cursor=[^"]+)" rel="next">Next page<\/a>/.exec(first.text)?.[1];
    expect(next).toBeDefined();
    const second = await client.get(next!.replace(/&amp;/g, "&"));
    expect(second.status).toBe(200);
    const secondLinks = jobLinks(second.text);
    expect(secondLinks.length).toBe(2);
    expect(new Set([...firstLinks, ...secondLinks])).toEqual(new Set(ids));
    expect(second.text).not.toContain("Next page");
    for (const id of ids) await waitForEnd(server, id, tenant.key);
  });

  test("a bad filter answers 400 with the page, its form and a clear message", async () => {
    const bad = await alpha.get("/ui/jobs?status=bogus");
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('class="flash error"');
    expect(bad.text).toContain("must be one of queued, starting_browser, running, completed, failed, cancelled");
    expect(bad.text).toContain('name="status"');
    const cursor = await alpha.get("/ui/jobs?cursor=not-a-cursor");
    expect(cursor.status).toBe(400);
    expect(cursor.text).toContain('class="flash error"');
  });
});

describe("a job's page", () => {
  test("shows a completed job's facts, params, result and log; no live stream and no cancel button once it ended", async () => {
    const id = await createJob(server, { workflow: "ui-echo", params: { n: 21, label: "<b>hello</b>" } });
    await waitForEnd(server, id);
    const page = await alpha.get(`/ui/jobs/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("data-job-status");
    expect(page.text).toMatch(/data-job-status[^>]*>completed</);
    expect(page.text).toContain("&quot;label&quot;: &quot;&lt;b&gt;hello&lt;/b&gt;&quot;");
    expect(page.text).toContain("&quot;n&quot;: 21");
    expect(page.text).toContain("&quot;doubled&quot;: 42");
    expect(page.text).toContain('<li class="log-info">');
    expect(page.text).toContain('<span class="message">echo 21</span>');
    expect(page.text).not.toContain("data-log-stream");
    expect(page.text).not.toContain("Cancel job");
    expect(page.text).not.toContain("style=");
    expect(page.text).not.toMatch(/<script(?![^>]*src=)/);
  });

  test("shows a failed job's error and failure class", async () => {
    const id = await createJob(server, { workflow: "ui-echo", params: { n: 5, fail: true } });
    await waitForEnd(server, id);
    const page = await alpha.get(`/ui/jobs/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/data-job-status[^>]*>failed</);
    expect(page.text).toContain("echo failed on purpose 5");
    expect(page.text).toMatch(/data-job-failure-class[^>]*>error</);
    expect(page.text).not.toContain('id="result"');
  });

  test("another tenant, an unknown id and a non-UUID all get 404", async () => {
    const id = await createJob(server, { workflow: "ui-echo", params: { n: 1 } });
    await waitForEnd(server, id);
    expect((await beta.get(`/ui/jobs/${id}`)).status).toBe(404);
    expect((await alpha.get(`/ui/jobs/${crypto.randomUUID()}`)).status).toBe(404);
    expect((await alpha.get("/ui/jobs/not-a-uuid")).status).toBe(404);
    expect((await beta.get(`/ui/jobs/${id}/log?after=0`, { accept: "text/event-stream" })).status).toBe(404);
    expect((await beta.post(`/ui/jobs/${id}/cancel`, {})).status).toBe(404);
  });

  test("artifacts: screenshots as images and traces as downloads, for the job's own tenant only", async () => {
    const id = await createJob(server, { workflow: "ui-echo", params: { n: 1 } });
    await waitForEnd(server, id);
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
    const zip = new Uint8Array([0x50, 0x4b, 0x03, 0x04, 9, 9]);
    const shotId = crypto.randomUUID();
    const traceId = crypto.randomUUID();
    const at = new Date().toISOString();
    await insertArtifacts(server.db, [
      { id: shotId, tenant_id: server.tenants.alpha, job_id: id, kind: "screenshot", content_type: "image/png", size_bytes: png.length, created_at: at, bytes: png },
      { id: traceId, tenant_id: server.tenants.alpha, job_id: id, kind: "trace", content_type: "application/zip", size_bytes: zip.length, created_at: at, bytes: zip },
    ]);
    const page = await alpha.get(`/ui/jobs/${id}`);
    expect(page.text).toContain(`<img src="/ui/jobs/${id}/artifacts/${shotId}" alt="Screenshot 1 of job"`);
    expect(page.text).toContain(`href="/ui/jobs/${id}/artifacts/${traceId}" download="trace-${id}.zip">Download the Playwright trace</a>`);

    const shot = await fetch(`${server.url}/ui/jobs/${id}/artifacts/${shotId}`, { headers: { cookie: alpha.cookie } });
    expect(shot.status).toBe(200);
    expect(shot.headers.get("content-type")).toBe("image/png");
    expect(shot.headers.get("cache-control")).toBe("private, max-age=3600");
    expect(new Uint8Array(await shot.arrayBuffer())).toEqual(png);
    const trace = await fetch(`${server.url}/ui/jobs/${id}/artifacts/${traceId}`, { headers: { cookie: alpha.cookie } });
    expect(trace.status).toBe(200);
    expect(trace.headers.get("content-disposition")).toStartWith("attachment");
    expect(new Uint8Array(await trace.arrayBuffer())).toEqual(zip);

    expect((await beta.get(`/ui/jobs/${id}/artifacts/${shotId}`)).status).toBe(404);
    expect((await alpha.get(`/ui/jobs/${crypto.randomUUID()}/artifacts/${shotId}`)).status).toBe(404);
    expect((await alpha.get(`/ui/jobs/${id}/artifacts/not-a-uuid`)).status).toBe(404);
  });
});

describe("the live log", () => {
  test("a running job's page carries the stream; the stream delivers its lines and status, then ends; Last-Event-ID resumes", async () => {
    const key = crypto.randomUUID();
    const id = await createJob(server, { workflow: "ui-chatty", params: { key } });
    await waitForRunning(server, id);
    const page = await alpha.get(`/ui/jobs/${id}`);
    const stream = /<section class="log"[^>]*data-log-stream="([^"]+)"/.exec(page.text)?.[1];
    expect(stream).toBe(`/ui/jobs/${id}/log?after=0`);
    expect(page.text).toContain("Cancel job");

    const reading = readStream(alpha, stream!);
    await Bun.sleep(50);
    gateFor(key).open();
    const { events } = await reading;
    const lines = events.filter((e) => e.event === "line");
    expect(lines.map((e) => JSON.parse(e.data).message)).toEqual([1, 2, 3, 4, 5].map((i) => `line ${i} of 5`));
    for (const line of lines) {
      expect(Object.keys(JSON.parse(line.data)).sort()).toEqual(["level", "message", "timestamp"]);
      expect(line.id).toMatch(/^\d+$/);
    }
    expect(events.filter((e) => e.event === "status").map((e) => JSON.parse(e.data).status)).toContain("completed");
    expect(events[events.length - 1]!.event).toBe("end");

    // A reconnect with Last-Event-ID (which wins over ?after) gets only what came after.
    const resumed = await readStream(alpha, `/ui/jobs/${id}/log?after=0`, { "last-event-id": lines[2]!.id! });
    expect(resumed.events.filter((e) => e.event === "line").map((e) => JSON.parse(e.data).message)).toEqual(["line 4 of 5", "line 5 of 5"]);
    expect(resumed.events[resumed.events.length - 1]!.event).toBe("end");

    // Once ended, the page renders every line itself and carries no stream.
    const ended = await alpha.get(`/ui/jobs/${id}`);
    expect(ended.text).not.toContain("data-log-stream");
    expect(ended.text).toContain('<span class="message">line 5 of 5</span>');
  });

  test("an idle stream gets a keep-alive comment within 5 s, and ends when the job is cancelled", async () => {
    const id = await createJob(server, { workflow: "ui-waits" });
    await waitForRunning(server, id);
    const response = await fetch(`${server.url}/ui/jobs/${id}/log?after=0`, { headers: { cookie: alpha.cookie }, signal: AbortSignal.timeout(15_000) });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let raw = "";
    while (!raw.includes(": keep-alive")) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
    }
    expect(raw).toContain("waiting to be cancelled");
    expect(raw).toContain(": keep-alive");
    expect((await alpha.post(`/ui/jobs/${id}/cancel`, {})).status).toBe(303);
    while (!raw.includes("event: end")) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
    }
    expect(raw).toContain('event: status\ndata: {"status":"cancelled"}');
    expect(raw).toContain("event: end");
  }, 15_000);

  test("a stream ends when its session does (sign-out), though the job goes on", async () => {
    const leaving = await signIn(server, server.keys.alpha);
    const id = await createJob(server, { workflow: "ui-waits" });
    await waitForRunning(server, id);
    const response = await fetch(`${server.url}/ui/jobs/${id}/log?after=0`, { headers: { cookie: leaving.cookie }, signal: AbortSignal.timeout(15_000) });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let raw = "";
    while (!raw.includes("waiting to be cancelled")) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
    }
    expect((await leaving.post("/ui/sign-out", {})).status).toBe(303);
    let closed = false;
    for (let i = 0; i < 20 && !closed; i++) {
      const { done, value } = await reader.read();
      closed = done;
      if (value) raw += decoder.decode(value, { stream: true });
    }
    expect(closed).toBe(true);
    expect(raw).not.toContain("event: end");
    expect((await server.post("/v1/jobs/get", { id })).body.status).toBe("running");
    await server.post("/v1/jobs/cancel", { id });
    await waitForEnd(server, id);
  }, 15_000);

  test("a bad after is refused", async () => {
    const id = await createJob(server, { workflow: "ui-echo", params: { n: 1 } });
    await waitForEnd(server, id);
    expect((await alpha.get(`/ui/jobs/${id}/log?after=abc`, { accept: "text/event-stream" })).status).toBe(400);
  });
});

describe("cancel", () => {
  test("cancels a running job; a second cancel answers 409 on the job's page", async () => {
    const id = await createJob(server, { workflow: "ui-waits" });
    await waitForRunning(server, id);
    const response = await alpha.post(`/ui/jobs/${id}/cancel`, {});
    expect(response.status).toBe(303);
    expect(response.location).toBe(`/ui/jobs/${id}`);
    expect(await followFlash(server, alpha, response)).toContain(id);
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("cancelled");

    const again = await alpha.post(`/ui/jobs/${id}/cancel`, {});
    expect(again.status).toBe(409);
    expect(again.text).toContain('class="flash error"');
    expect(again.text).toMatch(/data-job-status[^>]*>cancelled</);
    expect(again.text).not.toContain("Cancel job");

    const noToken = await alpha.post(`/ui/jobs/${id}/cancel`, {}, { csrf: false });
    expect(noToken.status).toBe(403);
  });
});

describe("credentials", () => {
  test("a credential value injected into a job never appears on its page or in its stream", async () => {
    expectOk(await server.post("/v1/credentials/create", { name: "password", value: SECRET }), false);
    const id = await createJob(server, { workflow: "ui-leaky", params: { site: "portal", credentials: { password: SECRET } } });
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("completed");
    const page = await alpha.get(`/ui/jobs/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("&quot;site&quot;: &quot;portal&quot;");
    expect(page.text).toContain("logging in with");
    expect(page.text).not.toContain(SECRET);
    const { raw, events } = await readStream(alpha, `/ui/jobs/${id}/log?after=0`);
    expect(events.some((e) => e.event === "line" && e.data.includes("logging in with"))).toBe(true);
    expect(raw).not.toContain(SECRET);
  });
});
