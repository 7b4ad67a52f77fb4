import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import { checkTarget, systemResolver, type Resolver } from "./address";

/** The first bytes of a receiver's answer kept in the delivery log. */
export const RESPONSE_EXCERPT_BYTES = 512;

export interface WebhookAttempt {
  url: string;
  body: Uint8Array;
  headers: Record<string, string>;
  timeoutMs: number;
  allowPrivate: boolean;
  resolve?: Resolver;
  /** Aborts the attempt (shutdown). */
  signal?: AbortSignal;
  /** The time, for Retry-After given as an HTTP date. */
  now: () => Date;
}

export type AttemptOutcome =
  /** The receiver answered: `ok` for any 2xx. */
  | {
      kind: "answered";
      ok: boolean;
      statusCode: number;
      durationMs: number;
      excerpt: string;
      /** Retry-After of a 429 or 503, in ms, when it parsed. */
      retryAfterMs: number | undefined;
    }
  /** No answer: connection refused or reset, DNS failure, timeout. Retried. */
  | { kind: "unreachable"; reason: string; durationMs: number }
  /** The target is refused by the network policy: not sent, not retried. */
  | { kind: "refused"; reason: string }
  /** The attempt was aborted (the server is stopping): it did not count. */
  | { kind: "aborted" };

/**
 * One POST of a webhook. The host is resolved and every address checked
 * (address.ts), then the connection goes to the checked address: node:http
 * calls our `lookup`, which hands back that address without a second DNS
 * query, while the Host header and TLS SNI still carry the host name. (Bun
 * and Node both honour `lookup`; both call it with `all: true`.) Redirects
 * are never followed: node:http does not follow them, and a 3xx is a failure.
 */
export async function sendWebhook(attempt: WebhookAttempt): Promise<AttemptOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let url: URL;
  try {
    url = new URL(attempt.url);
  } catch {
    return { kind: "refused", reason: "The webhook URL is not a valid URL." };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { kind: "refused", reason: "The webhook URL must be http or https." };
  }
  if (attempt.signal?.aborted) return { kind: "aborted" };

  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(resolve, attempt.timeoutMs, "timeout")));
  try {
    const target = await Promise.race([checkTarget(url, attempt.allowPrivate, attempt.resolve ?? systemResolver), timedOut]);
    if (target === "timeout") return { kind: "unreachable", reason: timeoutReason(attempt.timeoutMs), durationMs: elapsed() };
    if (!target.ok) {
      return target.refused ? { kind: "refused", reason: target.reason } : { kind: "unreachable", reason: target.reason, durationMs: elapsed() };
    }
    return await post(url, target, attempt, timedOut, elapsed);
  } finally {
    clearTimeout(timer);
  }
}

function post(
  url: URL,
  target: { address: string; family: 4 | 6 },
  attempt: WebhookAttempt,
  timedOut: Promise<"timeout">,
  elapsed: () => number,
): Promise<AttemptOutcome> {
  return new Promise<AttemptOutcome>((resolve) => {
    let settled = false;
    const settle = (outcome: AttemptOutcome) => {
      if (settled) return;
      settled = true;
      attempt.signal?.removeEventListener("abort", onAbort);
      req.destroy();
      resolve(outcome);
    };
    const pinned: LookupFunction = (_hostname, options, callback) => {
      if ((options as { all?: boolean }).all) {
        (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [target]);
      } else {
        callback(null, target.address, target.family);
      }
    };
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    // The user info of a URL is never sent: it is not a way to authenticate webhooks.
    const req = send(
      {
        protocol: url.protocol,
        hostname: url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port || undefined,
        path: `${url.pathname}${url.search}`,
        method: "POST",
        headers: { ...attempt.headers, "content-length": String(attempt.body.byteLength) },
        lookup: pinned,
        // A fresh connection per attempt: a pooled one could outlive the check.
        agent: false,
      },
      (res) => void readAnswer(res, attempt, elapsed).then(settle),
    );
    req.on("error", (error: NodeJS.ErrnoException) => settle({ kind: "unreachable", reason: networkReason(error, url), durationMs: elapsed() }));
    const onAbort = () => settle({ kind: "aborted" });
    attempt.signal?.addEventListener("abort", onAbort, { once: true });
    void timedOut.then(() => settle({ kind: "unreachable", reason: timeoutReason(attempt.timeoutMs), durationMs: elapsed() }));
    req.end(attempt.body);
  });
}

/** Reads at most RESPONSE_EXCERPT_BYTES of the answer, then lets the rest go. */
function readAnswer(res: IncomingMessage, attempt: WebhookAttempt, elapsed: () => number): Promise<AttemptOutcome> {
  const statusCode = res.statusCode ?? 0;
  const answered = (chunks: Buffer[]): AttemptOutcome => ({
    kind: "answered",
    ok: statusCode >= 200 && statusCode < 300,
    statusCode,
    durationMs: elapsed(),
    excerpt: new TextDecoder().decode(Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES)),
    retryAfterMs: statusCode === 429 || statusCode === 503 ? parseRetryAfter(res.headers["retry-after"], attempt.now()) : undefined,
  });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    res.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes >= RESPONSE_EXCERPT_BYTES) resolve(answered(chunks));
    });
    res.on("end", () => resolve(answered(chunks)));
    // The status is what counts; a body cut short still leaves it.
    res.on("error", () => resolve(answered(chunks)));
    res.on("close", () => resolve(answered(chunks)));
  });
}

/** Retry-After as seconds or an HTTP date, in ms from now; undefined when it does not parse. */
export function parseRetryAfter(value: string | undefined, now: Date): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its day or month ("Wed, 21 Oct 2015 07:28:00 GMT"); a bare "-5" is no date.
  const at = /[a-z]{3}/i.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now.getTime());
}

const timeoutReason = (ms: number) => `The receiver did not answer within ${ms} ms (UNDERSTUDY_WEBHOOK_TIMEOUT_MS).`;

function networkReason(error: NodeJS.ErrnoException, url: URL): string {
  const where = `${url.hostname}${url.port ? `:${url.port}` : ""}`;
  switch (error.code) {
    case "ECONNREFUSED":
      return `The connection to ${where} was refused (ECONNREFUSED).`;
    case "ECONNRESET":
      return `The connection to ${where} was reset before an answer (ECONNRESET).`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `${where} is unreachable (${error.code}).`;
    default:
      if (error.code?.startsWith("ERR_TLS") || /certificate|self.signed|TLS|SSL/i.test(error.message)) {
        return `The TLS handshake with ${where} failed (${error.code ?? "TLS error"}).`;
      }
      return `The request to ${where} failed (${error.code ?? "network error"}).`;
  }
}
