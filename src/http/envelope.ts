import { AppError } from "../errors";

/** A request body, read and classified. `enveloped` decides the form of the response. */
export interface ParsedBody {
  enveloped: boolean;
  /** The input; undefined when the body was not valid JSON (see `invalidJson`). */
  input: unknown;
  invalidJson: boolean;
}

/**
 * The connection ended before the request body was read: the client went
 * away mid-body (or, under Bun, the runtime refused its chunked framing with
 * a 400 of its own and closed). Nobody is left to answer; it is counted as
 * 499 and is not a server error.
 */
export class ConnectionClosed extends Error {
  constructor() {
    super("The connection closed before the request body was read.");
    this.name = "ConnectionClosed";
  }
}

/**
 * Reads the body up to `limit` bytes; 413 past it, checked against
 * Content-Length first so an oversized body is not read at all.
 */
export async function readBody(request: Request, limit: number): Promise<string> {
  const tooLarge = () =>
    new AppError("PAYLOAD_TOO_LARGE", `The request body is larger than the limit of ${limit} bytes (UNDERSTUDY_MAX_BODY_BYTES).`, {
      data: { limit_bytes: limit },
    });
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge();
  if (!request.body) return "";
  // Reading fails only when the connection does: Bun throws an AbortError,
  // Node an "aborted" ECONNRESET. Either way it is the client's doing.
  const fromConnection = <T>(read: Promise<T>): Promise<T> =>
    read.catch(() => {
      throw new ConnectionClosed();
    });
  // With a Content-Length the framing bounds the body: read it whole (a
  // stream reader costs ~20 us a request, measured). Without one (chunked),
  // count as it arrives and stop past the limit.
  if (declared !== null) return fromConnection(request.text());
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await fromConnection(reader.read());
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return new TextDecoder().decode(chunks[0]);
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/**
 * Two body forms are accepted on every route: plain, or oRPC's envelope
 * `{"json": input, "meta": ...}`. A body is enveloped when it is an object
 * whose keys are `json` and optionally `meta`, and nothing else.
 */
export function parseBody(text: string): ParsedBody {
  if (text.trim() === "") return { enveloped: false, input: {}, invalidJson: false };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { enveloped: false, input: undefined, invalidJson: true };
  }
  if (isEnvelope(value)) return { enveloped: true, input: value.json ?? {}, invalidJson: false };
  return { enveloped: false, input: value, invalidJson: false };
}

function isEnvelope(value: unknown): value is { json: unknown; meta?: unknown } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.includes("json") && keys.every((k) => k === "json" || k === "meta");
}

/** The response mirrors the request: enveloped in, enveloped out. */
export function wrap(enveloped: boolean, output: unknown): unknown {
  return enveloped ? { json: output } : output;
}

export function errorBody(error: AppError) {
  return {
    defined: false,
    success: false,
    code: error.code,
    status: error.status,
    message: error.message,
    data: error.data,
  };
}
