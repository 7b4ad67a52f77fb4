/**
 * Webhook deliveries end to end (API.md "Webhooks"): jobs run on a real
 * server, their ends are POSTed to a real receiver on 127.0.0.1, and the
 * test checks the payload, both signatures (with its own node:crypto code),
 * the three delivery rules, retries, 410, redirects, timeouts and
 * redelivery. Every test works in a fresh tenant, so one test's endpoints
 * never receive another's jobs. The retry schedule is 0,20,20 ms: no test
 * waits for a real retry delay.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { insertQueuedJob } from "../../src/jobs/service";
import { workflow } from "../../src/workflows/define";
import { addTenant, dumpDb, secretForms, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectError, expectOk, ISO_UTC, UUID } from "../http/wire";
import { createJob, FAST_ENV, waitForEnd, waitForRunning } from "../jobs/support";
import {
  createEndpoint,
  listDeliveries,
  startReceiver,
  verifyLegacySignature,
  verifyStandardSignature,
  waitForDeliveries,
  waitForSettled,
  type Receiver,
} from "./support";

const echo = workflow("wh-echo", {
  credentials: ["api_token"],
  handler: (_ctx, input: { n?: number; credentials?: { api_token?: string } }) => ({
    greeting: "hello",
    n: input.n ?? null,
    // The runner redacts this before the job row (and so the webhook) sees it.
    token: input.credentials?.api_token ?? null,
  }),
});
const fails = workflow("wh-fails", {
  credentials: ["api_token"],
  handler(_ctx, input: { credentials?: { api_token?: string } }) {
    throw new Error(`the portal refused token ${input.credentials?.api_token}`);
  },
});
const waitsForCancel = workflow("wh-waits", {
  handler: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve("stopped"), { once: true })),
});

const TIMEOUT_MS = 1000;
let server: TestServer;
const receivers: Receiver[] = [];

beforeAll(async () => {
  server = await startTestServer({
    workflows: [echo, fails, waitsForCancel],
    env: {
      ...FAST_ENV,
      UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1",
      UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,20,20",
      UNDERSTUDY_WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
    },
  });
});
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});
afterAll(async () => server.close());

async function receiver(reply?: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(reply);
  receivers.push(r);
  return r;
}

async function tenant() {
  return addTenant(server, uniqueName("wh"));
}

async function storeToken(key: string, value: string) {
  expectOk(await server.post("/v1/credentials/create", { name: "api_token", value }, { key }), false);
}

const deliveryRows = (jobId: string) => server.db.selectFrom("webhook_deliveries").selectAll().where("job_id", "=", jobId).execute();

/** Every header value and the raw body of the requests, as one string to search. */
const everythingSent = (requests: { raw: Buffer; headers: Record<string, string> }[]) =>
  requests.map((r) => `${r.raw.toString("utf8")}\n${Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join("\n")}`).join("\n");

const PAYLOAD_KEYS = ["event", "job_id", "nonce", "workflow", "deployment_id", "status", "result", "error", "mapped_stack", "delivered_at"];

describe("payloads and signatures", () => {
  test("job.completed reaches the receiver with the fields of API.md; both signatures verify; no secret is sent or stored in clear", async () => {
    const { key } = await tenant();
    const token = `tok-${crypto.randomUUID()}`;
    await storeToken(key, token);
    const r = await receiver();
    const endpoint = await createEndpoint(server, key, { url: `${r.url}/hooks/understudy`, description: "main" });
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(endpoint.secret.slice(6), "base64")).toHaveLength(32);

    const before = Date.now();
    const jobId = await createJob(server, { workflow: "wh-echo", params: { n: 7 }, nonce: "nonce-123" }, key);
    const job = await waitForEnd(server, jobId, key);
    expect(job.status).toBe("completed");
    const [request] = await r.waitFor(1);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });

    expect(request!.method).toBe("POST");
    expect(request!.path).toBe("/hooks/understudy");
    expect(request!.headers["content-type"]).toBe("application/json");
    expect(request!.headers["x-event-type"]).toBe("job.completed");
    expect(request!.headers["webhook-id"]).toBe(delivery.delivery_id);
    expect(request!.headers["webhook-id"]).toMatch(UUID);
    const timestamp = Number(request!.headers["webhook-timestamp"]);
    expect(timestamp).toBeGreaterThanOrEqual(Math.floor(before / 1000));
    expect(timestamp).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(request!.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(request!.headers["x-webhook-signature"]).toMatch(/^[0-9a-f]{64}$/);
    expect(verifyLegacySignature(endpoint.secret, request!)).toBe(true);
    expect(verifyStandardSignature(endpoint.secret, request!)).toBe(true);
    // A different secret does not verify: the check can fail.
    expect(verifyLegacySignature(`${endpoint.secret}x`, request!)).toBe(false);
    expect(verifyStandardSignature("whsec_" + Buffer.alloc(32, 1).toString("base64"), request!)).toBe(false);

    const body = request!.json;
    expect(Object.keys(body)).toEqual(PAYLOAD_KEYS);
    expect(body).toMatchObject({
      event: "job.completed",
      job_id: jobId,
      nonce: "nonce-123",
      workflow: "wh-echo",
      deployment_id: job.deployment_id,
      status: "completed",
      error: null,
      mapped_stack: null,
    });
    expect(body.result).toEqual({ ...job.result });
    expect(body.result.greeting).toBe("hello");
    expect(body.result.n).toBe(7);
    expect(body.delivered_at).toMatch(ISO_UTC);

    const sent = everythingSent([request!]);
    for (const form of [...secretForms(token), ...secretForms(endpoint.secret), endpoint.secret.slice(6)]) expect(sent).not.toContain(form);
    const stored = await dumpDb(server.db);
    for (const form of [...secretForms(token), endpoint.secret.slice(6)]) expect(stored).not.toContain(form);
    const logged = server.logs.join("\n");
    for (const form of [...secretForms(token), endpoint.secret.slice(6)]) expect(logged).not.toContain(form);

    expect(delivery).toMatchObject({
      webhook_endpoint_id: endpoint.id,
      job_id: jobId,
      event: "job.completed",
      url: `${r.url}/hooks/understudy`,
      status: "succeeded",
      attempts: 1,
      last_status_code: 200,
      last_error: null,
      response_excerpt: "ok",
      next_attempt_at: null,
    });
    expect(delivery.last_duration_ms).toBeGreaterThanOrEqual(0);
    expect(delivery.completed_at).toMatch(ISO_UTC);
  });

  test("job.failed carries error and mapped_stack, no result; a secret the client chose signs both schemes", async () => {
    const { key } = await tenant();
    const token = `tok-${crypto.randomUUID()}`;
    await storeToken(key, token);
    const r = await receiver();
    const secret = `plain-secret-${crypto.randomUUID()}`;
    const created = expectOk(await server.post("/v1/webhooks/create", { url: r.url, signing_secret: secret }, { key }), false);
    expect(created).not.toHaveProperty("signing_secret");

    const jobId = await createJob(server, { workflow: "wh-fails" }, key);
    const job = await waitForEnd(server, jobId, key);
    expect(job.status).toBe("failed");
    const [request] = await r.waitFor(1);

    expect(request!.headers["x-event-type"]).toBe("job.failed");
    expect(verifyLegacySignature(secret, request!)).toBe(true);
    expect(verifyStandardSignature(secret, request!)).toBe(true);
    const body = request!.json;
    expect(Object.keys(body)).toEqual(PAYLOAD_KEYS.filter((k) => k !== "result"));
    expect(body).toMatchObject({ event: "job.failed", job_id: jobId, nonce: null, workflow: "wh-fails", status: "failed" });
    expect(body.error).toBe(job.error);
    expect(body.error).toContain("the portal refused token");
    expect(body.mapped_stack).toBe(job.mapped_stack);
    const sent = everythingSent([request!]);
    for (const form of [...secretForms(token), ...secretForms(secret)]) expect(sent).not.toContain(form);
    const stored = await dumpDb(server.db);
    for (const form of secretForms(secret)) expect(stored).not.toContain(form);
  });

  test("a cancelled job is delivered as job.cancelled", async () => {
    const { key } = await tenant();
    const r = await receiver();
    const endpoint = await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-waits" }, key);
    await waitForRunning(server, jobId, key);
    expectOk(await server.post("/v1/jobs/cancel", { id: jobId }, { key }), false);
    expect((await waitForEnd(server, jobId, key)).status).toBe("cancelled");
    const [request] = await r.waitFor(1);
    expect(request!.headers["x-event-type"]).toBe("job.cancelled");
    expect(request!.json).toMatchObject({ event: "job.cancelled", job_id: jobId, status: "cancelled" });
    expect(request!.json).not.toHaveProperty("result");
    expect(verifyStandardSignature(endpoint.secret, request!)).toBe(true);
  });
});

describe("the three delivery rules", () => {
  test("skip_callbacks: nothing is written or sent", async () => {
    const { key } = await tenant();
    const r = await receiver();
    await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo", skip_callbacks: true }, key);
    await waitForEnd(server, jobId, key);
    // The rows are written in the transaction that ends the job: none now means none ever.
    expect(await deliveryRows(jobId)).toEqual([]);
    expect(await listDeliveries(server, key)).toEqual([]);
    // A job of the same tenant without the flag is delivered, so the endpoint works.
    const other = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, other, key);
    await r.waitFor(1);
    expect(r.received.map((q) => q.json.job_id)).toEqual([other]);
  });

  test("a job's own callback_url + callback_secret: only that URL, signed with the job's secret", async () => {
    const { key } = await tenant();
    const a = await receiver();
    const b = await receiver();
    const own = await receiver();
    await createEndpoint(server, key, { url: a.url });
    await createEndpoint(server, key, { url: b.url });
    const callbackSecret = `job-secret-${crypto.randomUUID()}`;
    const jobId = await createJob(
      server,
      { workflow: "wh-echo", callback_url: `${own.url}/cb?x=1`, callback_secret: callbackSecret },
      key,
    );
    await waitForEnd(server, jobId, key);
    const rows = await deliveryRows(jobId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.endpoint_id).toBeNull();
    expect(rows[0]!.url).toBe(`${own.url}/cb?x=1`);
    const [request] = await own.waitFor(1);
    expect(request!.path).toBe("/cb?x=1");
    expect(verifyLegacySignature(callbackSecret, request!)).toBe(true);
    expect(verifyStandardSignature(callbackSecret, request!)).toBe(true);
    expect(everythingSent([request!])).not.toContain(callbackSecret);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ webhook_endpoint_id: null, status: "succeeded" });
    expect(a.received).toEqual([]);
    expect(b.received).toEqual([]);
  });

  test("otherwise every active endpoint of the tenant, each with its own webhook-id; an inactive one gets nothing", async () => {
    const { key } = await tenant();
    const a = await receiver();
    const b = await receiver();
    const off = await receiver();
    const ea = await createEndpoint(server, key, { url: a.url });
    const eb = await createEndpoint(server, key, { url: b.url });
    await createEndpoint(server, key, { url: off.url, active: false });
    // Another tenant's endpoint never hears of this tenant's jobs.
    const stranger = await tenant();
    const theirs = await receiver();
    await createEndpoint(server, stranger.key, { url: theirs.url });

    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    expect((await deliveryRows(jobId)).map((d) => d.endpoint_id).sort()).toEqual([ea.id, eb.id].sort());
    const [ra] = await a.waitFor(1);
    const [rb] = await b.waitFor(1);
    expect(verifyStandardSignature(ea.secret, ra!)).toBe(true);
    expect(verifyStandardSignature(eb.secret, rb!)).toBe(true);
    expect(verifyLegacySignature(eb.secret, ra!)).toBe(false);
    expect(ra!.headers["webhook-id"]).not.toBe(rb!.headers["webhook-id"]);
    await waitForSettled(server, key, { job_id: jobId }, 2);
    expect(off.received).toEqual([]);
    expect(theirs.received).toEqual([]);
    expect(await listDeliveries(server, stranger.key)).toEqual([]);
  });
});

describe("retries and outcomes", () => {
  test("a receiver that fails twice then succeeds gets three attempts with the same webhook-id", async () => {
    const { key } = await tenant();
    const r = await receiver((_req, i) => (i < 2 ? { status: 500, body: `down ${i}` } : { status: 204 }));
    const endpoint = await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const requests = await r.waitFor(3);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });

    expect(new Set(requests.map((q) => q.headers["webhook-id"]))).toEqual(new Set([delivery.delivery_id]));
    for (const q of requests) {
      expect(verifyLegacySignature(endpoint.secret, q)).toBe(true);
      expect(verifyStandardSignature(endpoint.secret, q)).toBe(true);
      // The event is fixed at the job's end; only delivered_at is per attempt.
      const { delivered_at, ...rest } = q.json;
      const { delivered_at: _first, ...first } = requests[0]!.json;
      expect(rest).toEqual(first);
      expect(delivered_at).toMatch(ISO_UTC);
    }
    expect(delivery).toMatchObject({ status: "succeeded", attempts: 3, last_status_code: 204, last_error: null, next_attempt_at: null });
    expect(r.received).toHaveLength(3);
  });

  test("a receiver that always fails: the delivery fails after the last attempt of the schedule, with the status and a 512-byte excerpt", async () => {
    const { key } = await tenant();
    const r = await receiver(() => ({ status: 500, body: "é".repeat(1000) }));
    await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ status: "failed", attempts: 3, last_status_code: 500, next_attempt_at: null });
    expect(delivery.last_error).toContain("The receiver answered 500.");
    expect(delivery.last_error).toContain("Gave up after 3 attempts");
    expect(Buffer.byteLength(delivery.response_excerpt)).toBeLessThanOrEqual(512);
    expect(delivery.response_excerpt.startsWith("é".repeat(200))).toBe(true);
    expect(delivery.completed_at).toMatch(ISO_UTC);
    expect(r.received).toHaveLength(3);
  });

  test("410 Gone turns the endpoint off, says so in the log and in webhooks/list, and stops its deliveries", async () => {
    const { key } = await tenant();
    const r = await receiver(() => ({ status: 410, body: "gone" }));
    const endpoint = await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ status: "failed", attempts: 1, last_status_code: 410 });
    expect(delivery.last_error).toContain("410");
    expect(delivery.last_error).toContain("turned off");

    const listed = expectOk(await server.post("/v1/webhooks/list", {}, { key }), false).webhook_endpoints;
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ webhook_endpoint_id: endpoint.id, active: false });
    expect(listed[0].disabled_reason).toContain("410");

    const next = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, next, key);
    expect(await deliveryRows(next)).toEqual([]);
    expect(r.received).toHaveLength(1);

    const refused = expectError(await server.post("/v1/webhooks/redeliver", { delivery_id: delivery.delivery_id }, { key }), 409, "CONFLICT", false);
    expect(refused.message).toContain("turned off");
    expectOk(await server.post("/v1/webhooks/update", { id: endpoint.id, active: true }, { key }), false);
    const relisted = expectOk(await server.post("/v1/webhooks/list", {}, { key }), false).webhook_endpoints;
    expect(relisted[0]).toMatchObject({ active: true, disabled_reason: null });
  });

  test("a redirect is not followed: it is a failure with its status", async () => {
    const { key } = await tenant();
    const elsewhere = await receiver();
    const r = await receiver(() => ({ status: 302, headers: { location: `${elsewhere.url}/moved` }, body: "" }));
    await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ status: "failed", attempts: 3, last_status_code: 302 });
    expect(delivery.last_error).toContain("redirects are not followed");
    expect(elsewhere.received).toEqual([]);
  });

  test("a receiver that does not answer in time: the attempt fails with a timeout, and is retried", async () => {
    const { key } = await tenant();
    const r = await receiver((_req, i) => (i === 0 ? { status: 200, hang: true } : { status: 200, body: "late but fine" }));
    await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ status: "succeeded", attempts: 2, response_excerpt: "late but fine" });
    expect(r.received).toHaveLength(2);
    expect(r.received[0]!.headers["webhook-id"]).toBe(r.received[1]!.headers["webhook-id"]);
    expect(server.logs.some((line) => line.includes("webhook delivery attempt failed") && line.includes(delivery.delivery_id))).toBe(true);
  });

  test("a receiver that refuses connections: retried, then failed with the reason", async () => {
    const { key } = await tenant();
    const closed = await receiver();
    const url = closed.url;
    await closed.close();
    receivers.splice(receivers.indexOf(closed), 1);
    await createEndpoint(server, key, { url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ status: "failed", attempts: 3, last_status_code: null });
    expect(delivery.last_error).toContain("ECONNREFUSED");
  });
});

describe("redeliver", () => {
  test("an ended delivery is sent again with the same webhook-id and a fresh attempt count", async () => {
    const { key } = await tenant();
    let healthy = false;
    const r = await receiver(() => (healthy ? { status: 200, body: "thanks" } : { status: 503, body: "maintenance" }));
    const endpoint = await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [failed] = await waitForSettled(server, key, { job_id: jobId });
    expect(failed).toMatchObject({ status: "failed", attempts: 3, last_status_code: 503 });

    healthy = true;
    const output = expectOk(await server.post("/v1/webhooks/redeliver", { delivery_id: failed.delivery_id }, { key }), false);
    expect(output).toMatchObject({ success: true, delivery_id: failed.delivery_id });
    const requests = await r.waitFor(4);
    const [again] = await waitForDeliveries(server, key, { job_id: jobId }, (ds) => ds[0]?.status === "succeeded");
    expect(again).toMatchObject({ delivery_id: failed.delivery_id, attempts: 1, last_status_code: 200, response_excerpt: "thanks", last_error: null });
    expect(requests[3]!.headers["webhook-id"]).toBe(failed.delivery_id);
    expect(verifyStandardSignature(endpoint.secret, requests[3]!)).toBe(true);
    // A succeeded delivery may be sent again too.
    expectOk(await server.post("/v1/webhooks/redeliver", { delivery_id: failed.delivery_id }, { key }), false);
    await r.waitFor(5);
    await waitForSettled(server, key, { job_id: jobId });
  });

  test("an unknown delivery is 404; another tenant's is 404 and is not sent", async () => {
    const { key } = await tenant();
    const r = await receiver();
    await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "wh-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expectError(await server.post("/v1/webhooks/redeliver", { delivery_id: crypto.randomUUID() }, { key }), 404, "NOT_FOUND", false);
    const other = await tenant();
    expectError(await server.post("/v1/webhooks/redeliver", { delivery_id: delivery.delivery_id }, { key: other.key }), 404, "NOT_FOUND", false);
    expect(r.received).toHaveLength(1);
  });
});

describe("refused targets", () => {
  test("a job callback to the metadata address, plain or IPv4-mapped, that got past create fails at once with the reason and is not retried", async () => {
    const { key, tenantId } = await tenant();
    for (const url of ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/latest/meta-data/", "http://[fe80::1]/"]) {
      const input = { workflow: "wh-echo", params: {}, timeout_seconds: 60, callback_url: url, callback_secret: "s3cret-callback-of-16-bytes" };
      // jobs/create refuses such a URL (test/webhooks/callback-targets.test.ts);
      // a schedule stored before that check fires its jobs through insertQueuedJob.
      expectError(await server.post("/v1/jobs/create", input, { key }), 400, "BAD_REQUEST", false);
      const { id: jobId } = await server.db.transaction().execute((trx) => insertQueuedJob(server.deps, trx, tenantId, input));
      server.deps.runner.wake();
      await waitForEnd(server, jobId, key);
      const [delivery] = await waitForSettled(server, key, { job_id: jobId });
      expect(delivery).toMatchObject({ status: "failed", attempts: 1, last_status_code: null, last_duration_ms: null });
      expect(delivery.last_error).toContain("refused");
      expect(delivery.last_error).toContain("link-local");
      expect(delivery.last_error).not.toContain("s3cret-callback-of-16-bytes");
    }
  });

  test("create and update refuse a literal metadata, link-local, unspecified or multicast address with a 400 at url, even when private targets are allowed", async () => {
    const { key } = await tenant();
    const r = await receiver();
    const endpoint = await createEndpoint(server, key, { url: r.url });
    for (const url of [
      "http://169.254.169.254/",
      "http://[::ffff:169.254.169.254]/",
      "http://[::ffff:a9fe:a9fe]/x",
      "http://2852039166/",
      "https://[fe80::1]/",
      "http://0.0.0.0:8080/",
      "http://[::]/",
      "http://224.0.0.1/",
      "http://[ff02::1]/",
    ]) {
      for (const [path, input] of [
        ["/v1/webhooks/create", { url }],
        ["/v1/webhooks/update", { id: endpoint.id, url }],
      ] as const) {
        const error = expectError(await server.post(path, input, { key }), 400, "BAD_REQUEST", false);
        expect(error.data.issues[0].path).toEqual(["url"]);
        expect(error.message).toContain("never sent there");
      }
    }
    const listed = expectOk(await server.post("/v1/webhooks/list", {}, { key }), false).webhook_endpoints;
    expect(listed.map((e: any) => e.url)).toEqual([r.url]);
  });
});
