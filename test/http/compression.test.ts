/**
 * Compression: answers of 1 KiB or more come back in the encoding the
 * client's Accept-Encoding prefers (br, gzip, deflate), with Vary:
 * Accept-Encoding and the compressed Content-Length; smaller answers, and
 * any answer to a client that accepts none, go out as they are. Bodies are
 * read as raw bytes (fetch with decompress: false), then decoded here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";
import { startTestServer, type TestServer } from "../helpers";
import { rawGet } from "./raw";
import { envelop } from "./wire";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  // 600 credentials, as the issue measured: a list of ~94 KB.
  for (let i = 0; i < 600; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, (_, j) => server.post("/v1/credentials/upsert", { name: `credential_number_${String(i + j).padStart(4, "0")}`, value: "v" })),
    );
  }
});
afterAll(async () => server.close());

interface RawResponse {
  status: number;
  headers: Headers;
  bytes: Buffer;
}

/** A request whose answer is not decompressed: the bytes as sent. Without `acceptEncoding`, fetch's own default is replaced by identity. */
async function send(path: string, options: { acceptEncoding?: string; body?: unknown; method?: string } = {}): Promise<RawResponse> {
  const method = options.method ?? (options.body === undefined ? "GET" : "POST");
  const response = await fetch(server.url + path, {
    method,
    headers: { "accept-encoding": options.acceptEncoding ?? "identity", "content-type": "application/json", "x-api-key": server.keys.alpha },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    decompress: false,
  } as RequestInit);
  return { status: response.status, headers: response.headers, bytes: Buffer.from(await response.arrayBuffer()) };
}

const decoders: Record<string, (bytes: Buffer) => Buffer> = { gzip: gunzipSync, br: brotliDecompressSync, deflate: inflateSync };

function decode(response: RawResponse): unknown {
  const encoding = response.headers.get("content-encoding");
  const bytes = encoding ? decoders[encoding]!(response.bytes) : response.bytes;
  return JSON.parse(bytes.toString("utf8"));
}

describe("large answers", () => {
  test("a 600-credential list comes back gzip'd when asked, decoding to the same JSON, far smaller", async () => {
    const plain = await send("/v1/credentials/list", { body: {} });
    const gzipped = await send("/v1/credentials/list", { body: {}, acceptEncoding: "gzip" });
    expect(plain.status).toBe(200);
    expect(gzipped.status).toBe(200);
    expect(plain.headers.get("content-encoding")).toBeNull();
    expect(gzipped.headers.get("content-encoding")).toBe("gzip");
    const listed = decode(plain) as { credentials: unknown[] };
    expect(listed.credentials).toHaveLength(600);
    expect(decode(gzipped)).toEqual(listed);
    expect(Number(gzipped.headers.get("content-length"))).toBe(gzipped.bytes.length);
    expect(Number(plain.headers.get("content-length"))).toBe(plain.bytes.length);
    expect(plain.bytes.length).toBeGreaterThan(50_000);
    expect(gzipped.bytes.length).toBeLessThan(plain.bytes.length / 4);
    for (const response of [plain, gzipped]) expect(response.headers.get("vary")).toContain("Accept-Encoding");
  });

  test("openapi.json comes back in each encoding the client prefers, decoding to the same document", async () => {
    const plain = await send("/v1/openapi.json");
    expect(plain.headers.get("content-encoding")).toBeNull();
    const document = decode(plain);
    for (const [acceptEncoding, expected] of [
      ["gzip", "gzip"],
      ["br", "br"],
      ["deflate", "deflate"],
      ["gzip, deflate, br", "gzip"],
      ["br;q=1, gzip;q=0.5", "br"],
      ["gzip;q=0, deflate", "deflate"],
    ] as const) {
      const response = await send("/v1/openapi.json", { acceptEncoding });
      expect({ acceptEncoding, encoding: response.headers.get("content-encoding") }).toEqual({ acceptEncoding, encoding: expected });
      expect(decode(response)).toEqual(document);
      expect(Number(response.headers.get("content-length"))).toBe(response.bytes.length);
      expect(response.bytes.length).toBeLessThan(plain.bytes.length / 4);
      expect(response.headers.get("vary")).toContain("Accept-Encoding");
    }
  });

  test("an enveloped request gets its enveloped answer compressed", async () => {
    const response = await send("/v1/credentials/list", { body: envelop({}), acceptEncoding: "gzip" });
    expect(response.headers.get("content-encoding")).toBe("gzip");
    expect((decode(response) as { json: { credentials: unknown[] } }).json.credentials).toHaveLength(600);
  });

  test("no compression without Accept-Encoding, or with only encodings the server does not offer", async () => {
    for (const acceptEncoding of ["identity", "zstd", "gzip;q=0, br;q=0, deflate;q=0"]) {
      const response = await send("/v1/credentials/list", { body: {}, acceptEncoding });
      expect(response.headers.get("content-encoding")).toBeNull();
      expect((decode(response) as { credentials: unknown[] }).credentials).toHaveLength(600);
    }
    // No header at all (fetch always sends one; a raw request does not).
    const raw = await rawGet(server.url, "/v1/openapi.json");
    expect(raw.status).toBe(200);
    expect(raw.headers["content-encoding"]).toBeUndefined();
    expect(JSON.parse(raw.body.toString("utf8")).openapi).toBe("3.1.0");
  });
});

describe("small answers", () => {
  test("answers under 1 KiB are never compressed, and say nothing about Accept-Encoding", async () => {
    for (const response of [
      await send("/healthz", { acceptEncoding: "gzip, br" }),
      await send("/v1/credentials/get", { body: { name: "credential_number_0001" }, acceptEncoding: "gzip, br" }),
      await send("/v1/credentials/get", { body: { name: "missing_one" }, acceptEncoding: "gzip, br" }),
    ]) {
      expect(response.headers.get("content-encoding")).toBeNull();
      expect(response.headers.get("vary")).toBeNull();
      expect(response.bytes.length).toBeLessThan(1024);
      expect(Number(response.headers.get("content-length"))).toBe(response.bytes.length);
      decode(response);
    }
  });

});
