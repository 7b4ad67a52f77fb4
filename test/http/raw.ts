/**
 * Raw HTTP/1.1 over a TCP socket to 127.0.0.1, for what fetch cannot send or
 * hides: malformed requests, bodies cut short, HEAD lengths, compressed bytes.
 */
import { connect, type Socket } from "node:net";

export interface RawAnswer {
  /** Everything the server sent, as latin1 text (byte for byte). */
  raw: string;
  /** The status code of the first status line; undefined when none came. */
  status: number | undefined;
  /** The first answer's headers, names lowercased. */
  headers: Record<string, string>;
  /** The bytes after the first answer's header section. */
  body: Buffer;
  /** The server closed the connection (rather than the wait running out). */
  closed: boolean;
}

function parse(bytes: Buffer, closed: boolean): RawAnswer {
  const raw = bytes.toString("latin1");
  const end = raw.indexOf("\r\n\r\n");
  const head = end === -1 ? raw : raw.slice(0, end);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { raw, status: status ? Number(status) : undefined, headers, body: end === -1 ? Buffer.alloc(0) : bytes.subarray(end + 4), closed };
}

/** The port of a server URL such as http://127.0.0.1:1234. */
const portOf = (url: string) => Number(new URL(url).port);

/**
 * Writes `request` and collects the answer until the server closes, or until
 * `waitMs` passes (then `closed` is false). `then` runs after the write,
 * with the socket (e.g. to destroy it mid-body).
 */
export function rawRequest(url: string, request: string | Buffer, options: { waitMs?: number; then?: (socket: Socket) => void } = {}): Promise<RawAnswer> {
  return exchange(url, request, options.waitMs ?? 3000, () => false, options.then);
}

/**
 * Writes `request` and resolves once one whole answer is in (its header
 * section and Content-Length bytes), or the server closes, or `waitMs`
 * passes; then closes the connection itself. For answers given while the
 * client is still sending (a refused body), where a server-side close could
 * reset the connection before the answer is read.
 */
export function rawAnswer(url: string, request: string | Buffer, options: { waitMs?: number } = {}): Promise<RawAnswer> {
  return exchange(url, request, options.waitMs ?? 5000, (answer) => answer.raw.includes("\r\n\r\n") && answer.body.length >= Number(answer.headers["content-length"] ?? 0));
}

/** One connection: writes `request`, collects until `complete` says so (closed: false), the server closes, or `waitMs` passes. */
function exchange(url: string, request: string | Buffer, waitMs: number, complete: (answer: RawAnswer) => boolean, then?: (socket: Socket) => void): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = connect(portOf(url), "127.0.0.1");
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parse(Buffer.concat(chunks), closed));
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (complete(parse(Buffer.concat(chunks), false))) finish(false);
    });
    socket.on("close", () => finish(true));
    // A reset after the answer (the server closing on unread input) still ends the exchange.
    socket.on("error", () => finish(true));
    socket.write(request);
    then?.(socket);
  });
}

/** A GET or HEAD with `Connection: close`, so the answer ends when the server closes. */
export function rawGet(url: string, path: string, options: { method?: "GET" | "HEAD"; headers?: Record<string, string> } = {}): Promise<RawAnswer> {
  const headers = Object.entries({ host: "127.0.0.1", ...options.headers, connection: "close" }).map(([k, v]) => `${k}: ${v}\r\n`);
  return rawRequest(url, `${options.method ?? "GET"} ${path} HTTP/1.1\r\n${headers.join("")}\r\n`);
}

/**
 * A HEAD, then a GET of /healthz on the same connection: the HEAD's answer
 * must end at its header section (no body, whatever its Content-Length), so
 * the next bytes are the GET's status line.
 */
export async function rawHead(url: string, path: string, headers: Record<string, string> = {}): Promise<{ head: RawAnswer; next: string }> {
  const lines = Object.entries({ host: "127.0.0.1", ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const answer = await rawRequest(url, `HEAD ${path} HTTP/1.1\r\n${lines}\r\nGET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`);
  return { head: answer, next: answer.body.toString("latin1") };
}
