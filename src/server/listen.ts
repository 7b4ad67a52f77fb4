import type { Server as NodeServer, IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Hono } from "hono";
import { AppError, type ErrorCode } from "../errors";
import { errorBody } from "../http/envelope";
import type { Logger } from "../log";
import { isBun } from "../runtime";

/** A connection upgraded by a SocketGateway (Bun's ServerWebSocket has this shape). */
export interface GatewaySocket<T> {
  readonly data: T;
  send(data: string | Uint8Array): unknown;
  close(code?: number, reason?: string): void;
}

/**
 * WebSocket paths answered beside the app (the app never sees them, so its
 * request log and metrics never hold their paths): remote browser sessions'
 * CDP sockets. Served under Bun only; under Node an upgrade is refused.
 */
export interface SocketGateway<T> {
  /** The paths it answers start with this. */
  readonly pathPrefix: string;
  /** An HTTP answer (a refusal, or a plain answer), or what the upgraded socket carries. */
  accept(request: Request, pathname: string): { answer: Response } | { data: T };
  open(socket: GatewaySocket<T>): void;
  message(socket: GatewaySocket<T>, message: string | Uint8Array): void;
  close(socket: GatewaySocket<T>): void;
}

export interface Listening {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Serves the app: Bun.serve under Bun, node:http (through @hono/node-server)
 * under Node. The only runtime switch above the store.
 *
 * Every answer a client can get should carry the JSON error body of the
 * contract, including those the HTTP layer gives before the app runs. What
 * each runtime allows:
 *
 * - Body limits are the app's (UNDERSTUDY_MAX_BODY_BYTES, and
 *   UNDERSTUDY_MAX_DEPLOY_BYTES for deployments/create), with a JSON 413.
 *   Bun's own limit (maxRequestBodySize) answers an empty 413, so it is set
 *   past any length a client can declare; the unread rest of a refused body
 *   is drained without being kept (measured: RSS flat over a 300 MB upload).
 *   Node has no limit of its own.
 * - Under Node, the parser's refusals (broken framing, oversized headers, a
 *   bad version or request line, a timeout) reach `clientError`, where a JSON
 *   error is written; so do the adapter's (a bad Host or URL).
 * - Under Bun, they do not: Bun.serve's parser (uWebSockets) answers them
 *   itself, before any code of ours runs, with a fixed status line and
 *   `Connection: close` and no body, and Bun.serve offers no hook (only
 *   Bun's node:http has one, at ~3x the CPU per request, measured). Those
 *   answers are: 400 for a malformed request line, header or chunked
 *   framing, a bad or missing Content-Length, Content-Length together with
 *   Transfer-Encoding, or an HTTP/1.1 request without Host; 431 for a header
 *   section over 16 KiB (bun --max-http-header-size); 505 for an HTTP
 *   version other than 1.0/1.1; 413 for a declared Content-Length past 2^53
 *   bytes (400 from 18 digits on). A slow client is closed without an answer
 *   after Bun's idle timeout (10 s).
 */
export async function listen(
  app: Hono,
  options: { hostname: string; port: number; log: Logger; sockets?: SocketGateway<any> },
): Promise<Listening> {
  const gateway = options.sockets;
  const host = (port: number) => {
    const h = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
    return `http://${h}:${port}`;
  };
  if (isBun) {
    let origin = host(options.port);
    const server = Bun.serve({
      fetch: (request: Request, server): Response | Promise<Response> | undefined => {
        // An HTTP/1.0 request without Host reaches fetch with a relative URL,
        // which the router cannot place: give it this server's origin.
        const absolute = request.url.startsWith("/") ? new Request(origin + request.url, request) : request;
        // The cheap test first: every request passes here.
        if (gateway && absolute.url.includes(gateway.pathPrefix)) {
          const pathname = new URL(absolute.url).pathname;
          if (pathname.startsWith(gateway.pathPrefix)) {
            const verdict = gateway.accept(absolute, pathname);
            if ("answer" in verdict) return verdict.answer;
            if (server.upgrade(absolute, { data: verdict.data })) return undefined;
            return jsonError(new AppError("BAD_REQUEST", "The WebSocket upgrade failed: send a valid WebSocket handshake."));
          }
        }
        return app.fetch(absolute);
      },
      websocket: {
        data: undefined as any,
        open: (socket) => gateway?.open(socket),
        message: (socket, message) => gateway?.message(socket, message),
        close: (socket) => gateway?.close(socket),
        // CDP messages carry screenshots and whole documents: Playwright's own limit.
        maxPayloadLength: 256 * 1024 * 1024,
      },
      hostname: options.hostname,
      port: options.port,
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    });
    const port = server.port ?? options.port;
    origin = host(port);
    return { url: origin, port, stop: async () => void (await server.stop(true)) };
  }
  const { createServer } = await import("node:http");
  const { getRequestListener } = await import("@hono/node-server");
  const handle = getRequestListener(app.fetch, {
    hostname: options.hostname,
    // The adapter's own refusals (a bad Host, an absolute URL it cannot
    // parse, a backslash in the path) are RequestErrors; anything else here
    // is a bug, answered like the app answers one.
    errorHandler: (error) => {
      if (error instanceof Error && error.name === "RequestError") {
        return jsonError(new AppError("BAD_REQUEST", `The request could not be read: ${error.message.replace(/\.$/, "")}.`));
      }
      options.log.log("error", "unhandled error", { error: error instanceof Error ? `${error.name}: ${error.message}` : "non-error thrown" });
      return jsonError(new AppError("INTERNAL_SERVER_ERROR", "Something went wrong on the server; the server log has the detail."));
    },
  });
  // Node would refuse an HTTP/1.1 request without Host with an empty 400 of its own; refuse it here, with a body.
  const server = createServer({ requireHostHeader: false }, (request: IncomingMessage, response: ServerResponse) => {
    if (request.httpVersion === "1.1" && request.headers.host === undefined) {
      return writeError(response, new AppError("BAD_REQUEST", "An HTTP/1.1 request needs a Host header."));
    }
    return handle(request, response);
  });
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => answerClientError(error, socket));
  // WebSocket gateways are served under Bun only (see SocketGateway).
  server.on("upgrade", (_request: IncomingMessage, socket: Socket) => {
    const body = JSON.stringify(
      errorBody(new AppError("SERVICE_UNAVAILABLE", "WebSockets (remote browser sessions) are served only when Understudy runs on Bun.")),
    );
    socket.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : options.port;
      resolve({ url: host(port), port, stop: () => stopNode(server) });
    });
  });
}

function stopNode(server: NodeServer): Promise<void> {
  return new Promise<void>((done) => {
    server.close(() => done());
    server.closeAllConnections();
  });
}

function jsonError(error: AppError): Response {
  return new Response(JSON.stringify(errorBody(error)), {
    status: error.status,
    headers: { "content-type": "application/json", connection: "close" },
  });
}

function writeError(response: ServerResponse, error: AppError): void {
  const body = JSON.stringify(errorBody(error));
  response.writeHead(error.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close" });
  response.end(body);
}

/** What Node's HTTP parser refused, as the contract's error: llhttp's codes, and Node's own timeouts. */
function parserError(error: NodeJS.ErrnoException): AppError {
  const code = error.code ?? "";
  const reason = (error as { reason?: string }).reason ?? error.message;
  const as = (errorCode: ErrorCode, message: string) => new AppError(errorCode, message, { data: { reason: code } });
  if (code === "HPE_HEADER_OVERFLOW") return as("REQUEST_HEADER_FIELDS_TOO_LARGE", "The request's header section is too large.");
  if (code === "ERR_HTTP_REQUEST_TIMEOUT" || code === "ERR_HTTP_HEADERS_TIMEOUT") {
    return as("REQUEST_TIMEOUT", "The request did not arrive in time.");
  }
  if (code === "HPE_INVALID_VERSION") return as("HTTP_VERSION_NOT_SUPPORTED", "The HTTP version is not supported; send HTTP/1.1.");
  return as("BAD_REQUEST", `The request is not well-formed HTTP: ${reason.replace(/^Parse Error: /, "").replace(/\.$/, "")}.`);
}

/**
 * Node's `clientError`: the parser refused the request before the app saw
 * it. Answer with the contract's error, then close, as Node would have.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  // The client is gone, or an answer has begun on this socket: nothing more to say (as Node decides).
  const inProgress = (socket as Socket & { _httpMessage?: { _headerSent?: boolean } })._httpMessage;
  if (error.code === "ECONNRESET" || !socket.writable || inProgress?._headerSent) {
    socket.destroy();
    return;
  }
  const appError = parserError(error);
  const body = JSON.stringify(errorBody(appError));
  socket.end(
    `HTTP/1.1 ${appError.status} ${STATUS_TEXT[appError.status] ?? "Error"}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  505: "HTTP Version Not Supported",
};
