/**
 * The request body limit (413) and the per-key rate limit (429), each on a
 * server started with a small limit. The rate limiter's clock is injected,
 * so refilling is tested without sleeping.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { snapshotDb, startTestServer, type TestResponse, type TestServer } from "../helpers";
import { envelop, expectError, expectOk, type WireError } from "./wire";

describe("body size limit (UNDERSTUDY_MAX_BODY_BYTES)", () => {
  const LIMIT = 256;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { UNDERSTUDY_MAX_BODY_BYTES: String(LIMIT) } });
  });
  afterAll(async () => server.close());

  /** A create body of exactly `bytes` bytes. */
  const createBody = (name: string, bytes: number) => {
    const empty = JSON.stringify({ name, value: "" });
    return JSON.stringify({ name, value: "v".repeat(bytes - Buffer.byteLength(empty)) });
  };

  /**
   * An oversized body is refused before it is read, so the server cannot know
   * whether it was enveloped: accept the error in either form.
   */
  function expectTooLarge(response: TestResponse): WireError {
    const enveloped = response.body !== undefined && Object.keys(response.body).length === 1 && "json" in response.body;
    const error = expectError(response, 413, "PAYLOAD_TOO_LARGE", enveloped);
    expect(error.message).toContain(`${LIMIT} bytes`);
    expect(error.message).toContain("UNDERSTUDY_MAX_BODY_BYTES");
    expect(error.data).toEqual({ limit_bytes: LIMIT });
    return error;
  }

  test("a body of exactly the limit is accepted", async () => {
    const body = createBody("at_the_limit", LIMIT);
    expect(Buffer.byteLength(body)).toBe(LIMIT);
    expectOk(await server.post("/v1/credentials/create", body), false);
  });

  test("413 for a body one byte over the limit, and nothing is stored", async () => {
    const before = await snapshotDb(server.db);
    const body = createBody("one_over", LIMIT + 1);
    expect(Buffer.byteLength(body)).toBe(LIMIT + 1);
    const error = expectTooLarge(await server.post("/v1/credentials/create", body));
    expect(error.message).not.toContain("vvvv");
    expectTooLarge(await server.post("/v1/credentials/create", JSON.stringify(envelop(JSON.parse(createBody("one_over", LIMIT))))));
    expect(await snapshotDb(server.db)).toEqual(before);
    expectError(await server.post("/v1/credentials/get", { name: "one_over" }), 404, "NOT_FOUND", false);
  });

  test("a bad API key wins over an oversized body: 401, not 413", async () => {
    const body = createBody("too_big_and_unauthenticated", LIMIT * 4);
    for (const key of [null, "usk_not_a_real_key"]) {
      const response = await server.post("/v1/credentials/create", body, { key });
      expectError(response, 401, "UNAUTHORIZED", false);
      expect(response.body.message).toBe("Invalid API key");
    }
  });

  test("413 for a chunked body without Content-Length that grows past the limit", async () => {
    const before = await snapshotDb(server.db);
    const chunk = new TextEncoder().encode(" ".repeat(100));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"name":"chunked","value":"x"'));
        for (let i = 0; i < 5; i++) controller.enqueue(chunk);
        controller.enqueue(new TextEncoder().encode("}"));
        controller.close();
      },
    });
    const response = await fetch(`${server.url}/v1/credentials/create`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": server.keys.alpha },
      body,
      duplex: "half",
    } as RequestInit);
    const text = await response.text();
    expectTooLarge({ status: response.status, headers: response.headers, body: JSON.parse(text), text });
    expect(await snapshotDb(server.db)).toEqual(before);
  });

  test("a body far past the limit is refused too", async () => {
    expectTooLarge(await server.post("/v1/credentials/create", createBody("far_over", LIMIT * 64)));
  });
});

describe("rate limit (UNDERSTUDY_RATE_LIMIT_PER_SECOND=1, BURST=3)", () => {
  let nowMs = 1_000_000;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: { UNDERSTUDY_RATE_LIMIT_PER_SECOND: "1", UNDERSTUDY_RATE_LIMIT_BURST: "3" },
      nowMs: () => nowMs,
    });
  });
  afterAll(async () => server.close());

  const list = (key: string, enveloped = false) => server.post("/v1/credentials/list", enveloped ? envelop({}) : {}, { key });

  function expectRateLimited(response: TestResponse, enveloped: boolean, seconds: number) {
    const error = expectError(response, 429, "TOO_MANY_REQUESTS", enveloped);
    expect(response.headers.get("retry-after")).toBe(String(seconds));
    expect(error.data.retry_after_seconds).toBe(seconds);
    expect(error.message).toContain(`${seconds} s`);
  }

  test("a burst of 3 passes, the 4th gets 429 with Retry-After; another key is unaffected; the bucket refills with time", async () => {
    const alpha = server.keys.alpha;
    const beta = server.keys.beta;
    for (let i = 0; i < 3; i++) expectOk(await list(alpha), false);
    expectRateLimited(await list(alpha), false, 1);
    expectRateLimited(await list(alpha, true), true, 1);

    // A refused create stores nothing.
    const before = await snapshotDb(server.db);
    expectRateLimited(await server.post("/v1/credentials/create", { name: "limited", value: "v" }, { key: alpha }), false, 1);
    expect(await snapshotDb(server.db)).toEqual(before);

    // Beta's bucket is its own.
    for (let i = 0; i < 3; i++) expectOk(await list(beta, i === 1), i === 1);
    expectRateLimited(await list(beta), false, 1);

    // Half a second gives half a token: still limited.
    nowMs += 500;
    expectRateLimited(await list(alpha), false, 1);

    // One second later one token is back, and only one.
    nowMs += 1000;
    expectOk(await list(alpha), false);
    expectRateLimited(await list(alpha), false, 1);

    // A long pause refills to the burst, never beyond it.
    nowMs += 60_000;
    for (let i = 0; i < 3; i++) expectOk(await list(alpha), false);
    expectRateLimited(await list(alpha), false, 1);
    expectOk(await server.post("/v1/credentials/create", { name: "after_pause", value: "v" }, { key: beta }), false);
  });
});
