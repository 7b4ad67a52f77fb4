import { AppError } from "../errors";
import { errorBody } from "../http/envelope";
import type { GatewaySocket, SocketGateway } from "../server/listen";
import { guardCdpCommand } from "./cdp-guard";
import { CDP_PATH_PREFIX, type AdmittedSession, type BrowserSessions } from "./service";

export interface CdpSocketData {
  session: AdmittedSession;
  upstream: WebSocket | undefined;
  /** What the client sent before the browser's socket was open. */
  pending: string[];
}

/**
 * The WebSocket a session's cdp_url points at: relays Chrome DevTools
 * Protocol messages, unchanged, between the client and the session's own
 * browser (its DevTools socket on 127.0.0.1). The token in the path is the
 * only credential: the path is never logged or counted by path (the app's
 * request log and metrics never see these requests).
 */
export function cdpGateway(sessions: BrowserSessions): SocketGateway<CdpSocketData> {
  return {
    pathPrefix: CDP_PATH_PREFIX,
    accept(request, pathname) {
      // <session_id>/<token>, or <session_id>/<token>/json/version/ for a client given an http(s) URL.
      const match = /^([^/]+)\/([^/]+)(\/json\/version\/?)?$/.exec(pathname.slice(CDP_PATH_PREFIX.length));
      const admitted = match ? sessions.admit(match[1]!, match[2]!) : notFound;
      if (admitted instanceof AppError) return { answer: jsonError(admitted) };
      if (match![3]) {
        // connectOverCDP("http://...") first asks here for the WebSocket URL, as it would ask Chromium.
        const origin = new URL(request.url).origin;
        const secure = origin.startsWith("https:") || request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase() === "https";
        const host = new URL(request.url).host;
        const webSocketDebuggerUrl = `${secure ? "wss" : "ws"}://${host}${CDP_PATH_PREFIX}${match![1]}/${match![2]}`;
        return { answer: Response.json({ Browser: "Chromium (Understudy remote session)", "Protocol-Version": "1.3", webSocketDebuggerUrl }) };
      }
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return {
          answer: jsonError(
            new AppError("BAD_REQUEST", "This is a browser session's Chrome DevTools Protocol WebSocket: connect with a WebSocket client (Playwright's chromium.connectOverCDP(cdp_url))."),
          ),
        };
      }
      return { data: { session: admitted, upstream: undefined, pending: [] } };
    },
    open(socket) {
      const { session } = socket.data;
      session.attach(socket);
      const upstream = new WebSocket(session.devtoolsUrl);
      upstream.binaryType = "arraybuffer";
      socket.data.upstream = upstream;
      upstream.onopen = () => {
        for (const message of socket.data.pending) upstream.send(message);
        socket.data.pending = [];
      };
      upstream.onmessage = (event: MessageEvent) => {
        session.touch();
        socket.send(typeof event.data === "string" ? event.data : new Uint8Array(event.data as ArrayBuffer));
      };
      upstream.onclose = () => socket.close(1000, "The session's browser closed the connection.");
      upstream.onerror = () => socket.close(1011, "The session's browser could not be reached.");
    },
    message(socket, message) {
      const { session } = socket.data;
      session.touch();
      if (typeof message !== "string") {
        socket.close(1003, "The Chrome DevTools Protocol is sent as text frames.");
        return;
      }
      const guarded = guardCdpCommand(message, session.downloadsDir);
      if ("refuse" in guarded) {
        socket.send(guarded.refuse);
        return;
      }
      const upstream = socket.data.upstream;
      if (upstream?.readyState === WebSocket.OPEN) upstream.send(guarded.forward);
      else socket.data.pending.push(guarded.forward);
    },
    close(socket) {
      socket.data.session.detach(socket);
      socket.data.upstream?.close();
    },
  };
}

const notFound = new AppError("NOT_FOUND", "No browser session has this CDP URL: the URL is wrong, or its token is not this session's.");

function jsonError(error: AppError): Response {
  return new Response(JSON.stringify(errorBody(error)), { status: error.status, headers: { "content-type": "application/json" } });
}

export type { GatewaySocket };
