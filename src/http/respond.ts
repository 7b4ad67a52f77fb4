import type { Context } from "hono";
import { accepts } from "hono/accepts";
import { promisify } from "node:util";
import { brotliCompress, brotliCompressSync, constants, deflate, deflateSync, gzip, gzipSync } from "node:zlib";

/**
 * Every answer of the app leaves through here: with an explicit
 * Content-Length (so a HEAD carries the GET's length, not 0), and compressed
 * when the client accepts it and the body is large enough to gain from it.
 * Whole bodies are compressed in one go, not streamed: every body is already
 * in memory, and a length known up front keeps HEAD and keep-alive simple.
 * node:zlib (in Bun and Node alike), not CompressionStream: it has a sync
 * form for small bodies, and brotli with a quality.
 */

/** Bodies under this many bytes go out as they are: a few hundred bytes gain little and still cost a compressor. */
export const COMPRESSION_THRESHOLD_BYTES = 1024;

type Encoding = "br" | "gzip" | "deflate";

// Brotli at quality 4, not the default 11: measured on a 99 KB credential
// list, 14.4 KB in ~1 ms, where 11 takes ~130 ms for 12.5 KB.
const brotliOptions = (size: number) => ({ params: { [constants.BROTLI_PARAM_QUALITY]: 4, [constants.BROTLI_PARAM_SIZE_HINT]: size } });

const compressSync: Record<Encoding, (data: Buffer) => Uint8Array> = {
  br: (data) => brotliCompressSync(data, brotliOptions(data.byteLength)),
  gzip: (data) => gzipSync(data),
  deflate: (data) => deflateSync(data),
};

const compressAsync: Record<Encoding, (data: Buffer) => Promise<Uint8Array>> = {
  br: (data) => promisify(brotliCompress)(data, brotliOptions(data.byteLength)),
  gzip: (data) => promisify(gzip)(data),
  deflate: (data) => promisify(deflate)(data),
};

/**
 * Under Bun an async zlib call costs ~50-100 us more CPU than the work
 * itself (measured: gzip of 3.3 KB, 75 us async, 28 us sync), while a sync
 * one holds the event loop: ~125 us at 20 KB, ~700 us at 100 KB. Small
 * bodies (most answers) are compressed in place, large ones off the loop.
 */
const SYNC_LIMIT_BYTES = 64 * 1024;

function compress(encoding: Encoding, data: Buffer): Uint8Array | Promise<Uint8Array> {
  return data.byteLength < SYNC_LIMIT_BYTES ? compressSync[encoding](data) : compressAsync[encoding](data);
}

/** The encoding the client prefers among ours (its q-values, then its order); undefined for none. */
function chooseEncoding(c: Context): Encoding | undefined {
  if (!c.req.header("accept-encoding")) return undefined;
  const chosen = accepts(c, { header: "Accept-Encoding", supports: ["br", "gzip", "deflate"], default: "identity" });
  return chosen === "identity" ? undefined : (chosen as Encoding);
}

export interface SendInit {
  status?: number;
  contentType: string;
  headers?: Record<string, string>;
}

/** A text body (JSON, Prometheus text), compressed as the client accepts. */
export async function sendText(c: Context, body: string, init: SendInit): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("content-type", init.contentType);
  const size = Buffer.byteLength(body);
  if (size < COMPRESSION_THRESHOLD_BYTES) {
    headers.set("content-length", String(size));
    return new Response(body, { status: init.status ?? 200, headers });
  }
  // Large enough that the answer depends on Accept-Encoding: caches must know.
  headers.append("vary", "Accept-Encoding");
  const encoding = chooseEncoding(c);
  if (!encoding) {
    headers.set("content-length", String(size));
    return new Response(body, { status: init.status ?? 200, headers });
  }
  const compressed = await compress(encoding, Buffer.from(body));
  headers.set("content-encoding", encoding);
  headers.set("content-length", String(compressed.byteLength));
  return new Response(compressed, { status: init.status ?? 200, headers });
}

export function sendJson(c: Context, value: unknown, init: Omit<SendInit, "contentType"> = {}): Promise<Response> {
  return sendText(c, JSON.stringify(value), { ...init, contentType: "application/json" });
}

/** A body that never changes (the OpenAPI document): each encoding is computed once, on first use. */
export function fixedBody(body: string, contentType: string): (c: Context) => Promise<Response> {
  const encoded = new Map<Encoding, Promise<Uint8Array>>();
  const size = Buffer.byteLength(body);
  return async (c) => {
    const encoding = size < COMPRESSION_THRESHOLD_BYTES ? undefined : chooseEncoding(c);
    if (!encoding) return sendText(c, body, { contentType });
    let compressed = encoded.get(encoding);
    if (!compressed) encoded.set(encoding, (compressed = Promise.resolve(compress(encoding, Buffer.from(body)))));
    const bytes = await compressed;
    return new Response(bytes, {
      headers: { "content-type": contentType, "content-encoding": encoding, "content-length": String(bytes.byteLength), vary: "Accept-Encoding" },
    });
  };
}
