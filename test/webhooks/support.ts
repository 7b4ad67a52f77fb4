/**
 * Helpers of the webhook tests: a real HTTP receiver on 127.0.0.1, signature
 * checks written independently of src/webhooks (node:crypto only, from
 * API.md and the Standard Webhooks spec), and polling of the delivery log.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "bun:test";
import type { TestServer } from "../helpers";
import { expectOk } from "../http/wire";

export interface Received {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** The raw bytes of the body, exactly as they arrived. */
  raw: Buffer;
  /** The body parsed as JSON. */
  json: any;
  remoteAddress: string | undefined;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (the request hangs until the receiver closes). */
  hang?: boolean;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** Waits (bounded) until `n` requests arrived; returns them. */
  waitFor(n: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

/**
 * A real HTTP server on 127.0.0.1 (node:http, so the raw body bytes are
 * exactly what came over the wire). `reply` decides each answer from the
 * request and its 0-based index; default 200 "ok".
 */
export async function startReceiver(reply: (request: Received, index: number) => Reply = () => ({ status: 200, body: "ok" })): Promise<Receiver> {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      let json: any;
      try {
        json = JSON.parse(raw.toString("utf8"));
      } catch {
        json = undefined;
      }
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]));
      const request: Received = { method: req.method ?? "", path: req.url ?? "", headers, raw, json, remoteAddress: req.socket.remoteAddress };
      const answer = reply(request, received.length);
      received.push(request);
      if (answer.hang) {
        hanging.push(res);
        return;
      }
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    async waitFor(n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`receiver got ${received.length} requests, expected ${n}`);
        await Bun.sleep(5);
      }
      return received.slice(0, n);
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------
// Independent signature checks.

/** `x-webhook-signature`: hex HMAC-SHA256 of the raw body, keyed with the secret as given. */
export function verifyLegacySignature(secret: string, request: Received): boolean {
  const expected = createHmac("sha256", secret).update(request.raw).digest();
  const given = Buffer.from(request.headers["x-webhook-signature"] ?? "", "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Standard Webhooks: `webhook-signature` holds space-separated `v1,<base64>`
 * entries over "<webhook-id>.<webhook-timestamp>.<raw body>"; a `whsec_`
 * secret's key is the base64 after the prefix.
 */
export function verifyStandardSignature(secret: string, request: Received): boolean {
  const id = request.headers["webhook-id"];
  const timestamp = request.headers["webhook-timestamp"];
  if (!id || !timestamp) return false;
  const key = secret.startsWith("whsec_") ? Buffer.from(secret.slice("whsec_".length), "base64") : Buffer.from(secret, "utf8");
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.`).update(request.raw).digest();
  return (request.headers["webhook-signature"] ?? "").split(" ").some((entry) => {
    const [version, signature] = entry.split(",");
    const given = Buffer.from(signature ?? "", "base64");
    return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

// ---------------------------------------------------------------------------
// The delivery log, through the API.

export async function listDeliveries(server: TestServer, key: string, filter: Record<string, unknown> = {}): Promise<any[]> {
  return expectOk(await server.post("/v1/webhooks/deliveries", { limit: 100, ...filter }, { key }), false).deliveries;
}

/** Polls the delivery log (bounded) until `until` holds for the deliveries matching `filter`; returns them. */
export async function waitForDeliveries(
  server: TestServer,
  key: string,
  filter: Record<string, unknown>,
  until: (deliveries: any[]) => boolean,
  timeoutMs = 10_000,
): Promise<any[]> {
  const deadline = Date.now() + timeoutMs;
  let last: any[] = [];
  for (;;) {
    last = await listDeliveries(server, key, filter);
    if (until(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for deliveries; last seen: ${JSON.stringify(last)}`);
    await Bun.sleep(5);
  }
}

/** Waits until every delivery of `filter` has ended (succeeded or failed). */
export const waitForSettled = (server: TestServer, key: string, filter: Record<string, unknown>, count = 1) =>
  waitForDeliveries(server, key, filter, (ds) => ds.length >= count && ds.every((d) => d.status !== "pending"));

/** Creates an endpoint as the holder of `key`; returns its id and secret (the generated one unless given). */
export async function createEndpoint(
  server: TestServer,
  key: string,
  input: Record<string, unknown>,
): Promise<{ id: string; secret: string }> {
  const output = expectOk(await server.post("/v1/webhooks/create", input, { key }), false);
  const secret = (input.signing_secret as string | undefined) ?? output.signing_secret;
  expect(typeof secret).toBe("string");
  return { id: output.webhook_endpoint_id, secret };
}
