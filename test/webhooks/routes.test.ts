/**
 * The webhook routes (API.md "Webhooks", and the deliveries / redeliver
 * extensions): create with a generated or chosen secret, list never shows a
 * secret, update, delete, and the delivery log's filters and cursor.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, dumpDb, secretForms, startTestServer, uniqueName, type TestServer } from "../helpers";
import { envelop, expectError, expectOk, expectValidationError, ISO_UTC, UUID } from "../http/wire";
import { createJob, FAST_ENV, waitForEnd } from "../jobs/support";
import { createEndpoint, listDeliveries, startReceiver, verifyLegacySignature, verifyStandardSignature, waitForDeliveries, type Receiver } from "./support";

let server: TestServer;
const receivers: Receiver[] = [];

beforeAll(async () => {
  server = await startTestServer({
    workflows: [workflow("routes-echo", () => ({ ok: true }))],
    // A failed attempt waits a minute for its retry: long enough to see it pending.
    env: { ...FAST_ENV, UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1", UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,60000" },
  });
});
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});
afterAll(async () => server.close());

async function receiver(reply?: Parameters<typeof startReceiver>[0]) {
  const r = await startReceiver(reply);
  receivers.push(r);
  return r;
}

const list = async (key: string) => expectOk(await server.post("/v1/webhooks/list", {}, { key }), false).webhook_endpoints as any[];

describe("create and list", () => {
  test("without a signing_secret the server generates one, returns it once, and never again", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const created = expectOk(
      await server.post("/v1/webhooks/create", { url: "https://hooks.example.com/understudy", description: "orders" }, { key }),
      false,
    );
    expect(Object.keys(created).sort()).toEqual(["message", "signing_secret", "success", "webhook_endpoint_id"]);
    expect(created.success).toBe(true);
    expect(created.webhook_endpoint_id).toMatch(UUID);
    expect(created.signing_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.message).toContain("not shown again");

    const response = await server.post("/v1/webhooks/list", {}, { key });
    const endpoints = expectOk(response, false).webhook_endpoints;
    expect(endpoints).toHaveLength(1);
    expect(Object.keys(endpoints[0]).sort()).toEqual(
      ["active", "created_at", "description", "disabled_reason", "updated_at", "url", "webhook_endpoint_id"].sort(),
    );
    expect(endpoints[0]).toMatchObject({
      webhook_endpoint_id: created.webhook_endpoint_id,
      url: "https://hooks.example.com/understudy",
      description: "orders",
      active: true,
      disabled_reason: null,
    });
    expect(endpoints[0].created_at).toMatch(ISO_UTC);
    const secretPart = created.signing_secret.slice("whsec_".length);
    for (const form of [...secretForms(created.signing_secret), secretPart]) {
      expect(response.text).not.toContain(form);
      expect(await dumpDb(server.db)).not.toContain(form);
      expect(server.logs.join("\n")).not.toContain(form);
    }
    // Two creates, two different secrets.
    const second = expectOk(await server.post("/v1/webhooks/create", { url: "https://hooks.example.com/b" }, { key }), false);
    expect(second.signing_secret).not.toBe(created.signing_secret);
  });

  test("a chosen secret is not echoed; active and description are stored as given; the enveloped form mirrors", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const secret = `chosen-${crypto.randomUUID()}`;
    const plain = await server.post("/v1/webhooks/create", { url: "http://hooks.example.com/x", signing_secret: secret, active: false }, { key });
    const created = expectOk(plain, false);
    expect(created).not.toHaveProperty("signing_secret");
    expect(plain.text).not.toContain(secret);
    const enveloped = expectOk(await server.post("/v1/webhooks/create", envelop({ url: "https://hooks.example.com/y", description: "" }), { key }), true);
    expect(enveloped.signing_secret).toMatch(/^whsec_/);
    const endpoints = await list(key);
    expect(endpoints.map((e) => [e.url, e.active, e.description])).toEqual([
      ["http://hooks.example.com/x", false, null],
      ["https://hooks.example.com/y", true, null],
    ]);
    for (const form of secretForms(secret)) expect(await dumpDb(server.db)).not.toContain(form);
  });

  test("bad URLs and secrets are 400 at the field, and nothing is stored", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const cases: [Record<string, unknown>, string][] = [
      [{ url: "ftp://example.com/hook" }, "url"],
      [{ url: "not a url" }, "url"],
      [{ url: "https://user:pass@example.com/hook" }, "url"],
      [{ url: `https://example.com/${"a".repeat(2048)}` }, "url"],
      [{ url: "https://example.com/", signing_secret: "" }, "signing_secret"],
      [{ url: "https://example.com/", signing_secret: "whsec_not base64!" }, "signing_secret"],
      [{ url: "https://example.com/", signing_secret: `whsec_${Buffer.alloc(8).toString("base64")}` }, "signing_secret"],
      [{ url: "https://example.com/", description: "d".repeat(1025) }, "description"],
    ];
    for (const [input, field] of cases) {
      const issues = expectValidationError(await server.post("/v1/webhooks/create", input, { key }), false);
      expect(issues.map((i) => i.path[0])).toContain(field);
    }
    expect(await list(key)).toEqual([]);
    // A 24-byte whsec_ secret (the Standard Webhooks minimum) is fine.
    await createEndpoint(server, key, { url: "https://example.com/", signing_secret: `whsec_${Buffer.alloc(24, 7).toString("base64")}` });
  });
});

describe("update and delete", () => {
  test("update changes url, description and active; a new signing_secret signs the next delivery and the old one no longer verifies", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const r = await receiver();
    const endpoint = await createEndpoint(server, key, { url: "https://hooks.example.com/old", description: "old" });
    const newSecret = `rotated-${crypto.randomUUID()}`;
    const updated = expectOk(
      await server.post("/v1/webhooks/update", { id: endpoint.id, url: `${r.url}/new`, description: "new", signing_secret: newSecret }, { key }),
      false,
    );
    expect(updated).toEqual({ success: true, message: `Webhook endpoint ${endpoint.id} updated.` });
    expect((await list(key))[0]).toMatchObject({ url: `${r.url}/new`, description: "new", active: true });

    const jobId = await createJob(server, { workflow: "routes-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [request] = await r.waitFor(1);
    expect(request!.path).toBe("/new");
    expect(verifyLegacySignature(newSecret, request!)).toBe(true);
    expect(verifyStandardSignature(newSecret, request!)).toBe(true);
    expect(verifyStandardSignature(endpoint.secret, request!)).toBe(false);

    expectOk(await server.post("/v1/webhooks/update", { id: endpoint.id, active: false, description: "" }, { key }), false);
    expect((await list(key))[0]).toMatchObject({ active: false, description: null });
    for (const form of secretForms(newSecret)) expect(await dumpDb(server.db)).not.toContain(form);
  });

  test("update needs a field; an unknown id is 404 for update and delete", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const endpoint = await createEndpoint(server, key, { url: "https://hooks.example.com/a" });
    expectValidationError(await server.post("/v1/webhooks/update", { id: endpoint.id }, { key }), false);
    const unknown = crypto.randomUUID();
    expect(expectError(await server.post("/v1/webhooks/update", { id: unknown, active: false }, { key }), 404, "NOT_FOUND", false).message).toContain(
      "/v1/webhooks/list",
    );
    expectError(await server.post("/v1/webhooks/delete", { id: unknown }, { key }), 404, "NOT_FOUND", false);
  });

  test("delete removes the endpoint; its log stays, and a delivery still pending fails with the reason", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const r = await receiver(() => ({ status: 500 }));
    const endpoint = await createEndpoint(server, key, { url: r.url });
    const jobId = await createJob(server, { workflow: "routes-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [pending] = await waitForDeliveries(server, key, { job_id: jobId }, (ds) => ds[0]?.attempts === 1 && ds[0]?.last_status_code === 500);
    expect(pending.status).toBe("pending");
    expect(Date.parse(pending.next_attempt_at) - Date.parse(pending.updated_at)).toBe(60_000);

    expect(expectOk(await server.post("/v1/webhooks/delete", { id: endpoint.id }, { key }), false)).toEqual({
      success: true,
      message: `Webhook endpoint ${endpoint.id} deleted.`,
    });
    expect(await list(key)).toEqual([]);
    const [failed] = await listDeliveries(server, key, { job_id: jobId });
    expect(failed).toMatchObject({ delivery_id: pending.delivery_id, status: "failed", last_error: "The webhook endpoint was deleted.", next_attempt_at: null });
    expectError(await server.post("/v1/webhooks/delete", { id: endpoint.id }, { key }), 404, "NOT_FOUND", false);
    const refused = expectError(await server.post("/v1/webhooks/redeliver", { delivery_id: failed.delivery_id }, { key }), 409, "CONFLICT", false);
    expect(refused.message).toContain("deleted");
  });
});

describe("the delivery log", () => {
  test("newest first, with filters by endpoint, job and status, and an opaque cursor", async () => {
    const { key } = await addTenant(server, uniqueName("routes"));
    const ok = await receiver();
    const failing = await receiver(() => ({ status: 500 }));
    const good = await createEndpoint(server, key, { url: ok.url });
    const bad = await createEndpoint(server, key, { url: failing.url });
    const jobs: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = await createJob(server, { workflow: "routes-echo" }, key);
      await waitForEnd(server, id, key);
      jobs.push(id);
    }
    await waitForDeliveries(server, key, {}, (ds) => ds.length === 6 && ds.every((d) => d.attempts === 1 && d.last_status_code !== null));

    const all = await listDeliveries(server, key);
    expect(all.map((d) => d.job_id)).toEqual([jobs[2], jobs[2], jobs[1], jobs[1], jobs[0], jobs[0]]);
    expect((await listDeliveries(server, key, { webhook_endpoint_id: good.id })).map((d) => d.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    const pending = await listDeliveries(server, key, { status: "pending" });
    expect(pending).toHaveLength(3);
    expect(pending.every((d) => d.webhook_endpoint_id === bad.id && d.next_attempt_at !== null)).toBe(true);
    expect((await listDeliveries(server, key, { job_id: jobs[1], status: "succeeded" })).map((d) => d.webhook_endpoint_id)).toEqual([good.id]);

    const pages: any[] = [];
    let cursor: string | null | undefined;
    do {
      const output = expectOk(await server.post("/v1/webhooks/deliveries", { limit: 4, ...(cursor ? { cursor } : {}) }, { key }), false);
      pages.push(output.deliveries.length);
      cursor = output.next_cursor;
      if (pages.length === 1) expect(cursor).toEqual(expect.any(String));
    } while (cursor);
    expect(pages).toEqual([4, 2]);

    const badCursor = expectValidationError(await server.post("/v1/webhooks/deliveries", { cursor: "garbage" }, { key }), false);
    expect(badCursor[0]!.path).toEqual(["cursor"]);
    // Another tenant's filter on these ids finds nothing.
    const other = await addTenant(server, uniqueName("routes"));
    expect(await listDeliveries(server, other.key, { webhook_endpoint_id: good.id })).toEqual([]);
  });
});
