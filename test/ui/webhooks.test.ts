/**
 * The Webhooks page over real HTTP: endpoints without their secrets, the
 * delivery log with a failed delivery's attempts and last response, the
 * endpoint filter, redeliver, tenant isolation and the CSRF check. Real
 * receivers on 127.0.0.1; the retry schedule is 0,20,20 ms.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { workflow } from "../../src/workflows/define";
import { addTenant, expectNoSecretIn, startTestServer, uniqueName, type TestServer } from "../helpers";
import { createJob, FAST_ENV } from "../jobs/support";
import { createEndpoint, listDeliveries, startReceiver, waitForDeliveries, waitForSettled, type Receiver } from "../webhooks/support";
import { followFlash, signIn } from "./support";

const echo = workflow("ui-wh-echo", { handler: () => ({ ok: true }) });
const REFUSAL = `receiver refused: ${"z".repeat(400)}`;

let server: TestServer;
const receivers: Receiver[] = [];

beforeAll(async () => {
  server = await startTestServer({
    workflows: [echo],
    env: { ...FAST_ENV, UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1", UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,20,20", UNDERSTUDY_WEBHOOK_TIMEOUT_MS: "1000" },
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

/** The table row of one delivery on the page. */
function rowOf(page: string, id: string): string {
  const start = page.indexOf(`<tr data-delivery="${id}"`);
  expect(start).toBeGreaterThan(-1);
  return page.slice(start, page.indexOf("</tr>", start));
}

/** A fresh tenant with a failing endpoint, a working one, and one finished job delivered to both and to its own callback. */
async function setUp() {
  const t = await addTenant(server, uniqueName("uiwh"));
  const failing = await receiver(() => ({ status: 500, body: REFUSAL }));
  const working = await receiver();
  const callback = await receiver();
  const chosenSecret = `whsec_${randomBytes(32).toString("base64")}`;
  const bad = await createEndpoint(server, t.key, { url: `${failing.url}/hook`, signing_secret: chosenSecret, description: "the failing one" });
  const good = await createEndpoint(server, t.key, { url: `${working.url}/hook` });
  const callbackSecret = `cb_${randomBytes(24).toString("hex")}`;
  // A job without a callback_url goes to every endpoint; one with its own goes only there.
  const jobId = await createJob(server, { workflow: "ui-wh-echo" }, t.key);
  const callbackJobId = await createJob(server, { workflow: "ui-wh-echo", callback_url: `${callback.url}/cb`, callback_secret: callbackSecret }, t.key);
  const deliveries = await waitForSettled(server, t.key, { job_id: jobId }, 2);
  const callbackDeliveries = await waitForSettled(server, t.key, { job_id: callbackJobId }, 1);
  const client = await signIn(server, t.key);
  return { t, failing, working, bad, good, jobId, deliveries, callbackDeliveries, client, secrets: [bad.secret, good.secret, callbackSecret] };
}

describe("the webhooks page", () => {
  test("lists the endpoints and deliveries and never shows a signing or callback secret", async () => {
    const { client, bad, good, jobId, deliveries, callbackDeliveries, secrets, failing, working } = await setUp();
    const page = await client.get("/ui/webhooks");
    expect(page.status).toBe(200);
    expectNoSecretIn(page.text, secrets);
    expect(page.text).not.toContain("whsec_");
    expect(page.text).toContain(`<tr data-endpoint="${bad.id}"`);
    expect(page.text).toContain(`<tr data-endpoint="${good.id}"`);
    expect(page.text).toContain(`${failing.url}/hook`);
    expect(page.text).toContain(`${working.url}/hook`);
    expect(page.text).toContain("the failing one");
    expect(page.text).toContain('<h2 id="endpoints">');
    expect(page.text).toContain('<h2 id="deliveries">');
    for (const d of deliveries) {
      const row = rowOf(page.text, d.delivery_id);
      expect(row).toContain(`href="/ui/jobs/${jobId}"`);
      expect(row).toContain(d.event);
    }
    const own = rowOf(page.text, callbackDeliveries[0].delivery_id);
    expect(own).toContain("the callback URL of its job");
    // The filter select is labelled.
    expect(page.text).toMatch(/<label>\s*Endpoint\s*<select name="endpoint">/);
    expect(page.text).not.toMatch(/\sstyle=|\son[a-z]+=/);
  });

  test("a failed delivery shows its attempts and the receiver's last answer, excerpted", async () => {
    const { client, bad, deliveries } = await setUp();
    const failed = deliveries.find((d) => d.webhook_endpoint_id === bad.id)!;
    expect(failed.status).toBe("failed");
    expect(failed.attempts).toBeGreaterThan(1);
    const row = rowOf((await client.get("/ui/webhooks")).text, failed.delivery_id);
    expect(row).toContain('class="badge failed"');
    expect(row).toContain(`data-attempts="">${failed.attempts}</td>`);
    expect(row).toContain("HTTP 500");
    const excerpt = /data-response-excerpt="">([^<]*)</.exec(row)?.[1] ?? "";
    expect(excerpt.startsWith("receiver refused: zzz")).toBe(true);
    expect(excerpt.endsWith("…")).toBe(true);
    expect(excerpt.length).toBeLessThanOrEqual(301);
    // The details hold each field of the last attempt and the whole stored excerpt.
    expect(row).toContain("<summary>Attempts and response</summary>");
    expect(row).toContain(`<pre>${failed.response_excerpt}</pre>`);
    expect(row).toContain(">Redeliver</button>");
  });

  test("the deliveries filter by endpoint", async () => {
    const { client, bad, good, deliveries, callbackDeliveries } = await setUp();
    const page = await client.get(`/ui/webhooks?endpoint=${good.id}`);
    expect(page.status).toBe(200);
    const toGood = deliveries.find((d) => d.webhook_endpoint_id === good.id)!;
    const others = [...deliveries, ...callbackDeliveries].filter((d) => d.webhook_endpoint_id !== good.id);
    rowOf(page.text, toGood.delivery_id);
    for (const d of others) expect(page.text).not.toContain(`data-delivery="${d.delivery_id}"`);
    expect(page.text).toContain(`<option value="${good.id}" selected="">`);
    expect(page.text).not.toContain(`<option value="${bad.id}" selected`);
  });

  test("redeliver queues a new attempt and says so; without the CSRF token nothing happens", async () => {
    const { client, t, bad, failing, deliveries } = await setUp();
    const failed = deliveries.find((d) => d.webhook_endpoint_id === bad.id)!;
    const before = failing.received.length;

    const refused = await client.post(`/ui/webhooks/deliveries/${failed.delivery_id}/redeliver`, {}, { csrf: false });
    expect(refused.status).toBe(403);
    await Bun.sleep(100);
    expect(failing.received.length).toBe(before);
    const unchanged = (await listDeliveries(server, t.key, { webhook_endpoint_id: bad.id })).find((d) => d.delivery_id === failed.delivery_id);
    expect(unchanged).toEqual(failed);

    const response = await client.post(`/ui/webhooks/deliveries/${failed.delivery_id}/redeliver`, {});
    expect(response.status).toBe(303);
    expect(response.location).toBe("/ui/webhooks#deliveries");
    expect(await followFlash(server, client, response)).toContain("queued to be sent again");
    await failing.waitFor(before + 1);
    const again = await waitForDeliveries(server, t.key, { webhook_endpoint_id: bad.id }, (ds) =>
      ds.some((d) => d.delivery_id === failed.delivery_id && d.status !== "pending" && d.updated_at !== failed.updated_at),
    );
    expect(again.find((d) => d.delivery_id === failed.delivery_id)!.status).toBe("failed");
  });

  test("another tenant sees none of it and cannot redeliver it", async () => {
    const { bad, deliveries, failing, secrets } = await setUp();
    const beta = await signIn(server, server.keys.beta);
    const page = await beta.get("/ui/webhooks");
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(bad.id);
    for (const d of deliveries) expect(page.text).not.toContain(d.delivery_id);
    expectNoSecretIn(page.text, secrets);
    const failed = deliveries.find((d) => d.webhook_endpoint_id === bad.id)!;
    const before = failing.received.length;
    const refused = await beta.post(`/ui/webhooks/deliveries/${failed.delivery_id}/redeliver`, {});
    expect(refused.status).toBe(404);
    await Bun.sleep(50);
    expect(failing.received.length).toBe(before);
  });
});
