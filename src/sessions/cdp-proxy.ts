import { AppError } from "../errors";
import { errorBody } from "../http/envelope";
import type { GatewaySocket, SocketGateway } from "../server/listen";
import { guardCdpCommand } from "./cdp-guard";
import type { CdpConnection } from "./cdp-pipe";
import { CDP_PATH_PREFIX, type AdmittedSession, type BrowserSessions } from "./service";

export interface CdpSocketData {
  session: AdmittedSession;
  upstream: CdpConnection | undefined;
}

/**
 * The WebSocket a session's cdp_url points at: relays Chrome DevTools
 * Protocol messages between the client and the session's own browser (a
 * connection of the client's own on the browser's DevTools pipe). The token in the path is the
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
      return { data: { session: admitted, upstream: undefined } };
    },
    open(socket) {
      const { session } = socket.data;
      session.attach(socket);
      socket.data.upstream = session.connect({
        message(text) {
          session.touch();
          socket.send(text);
        },
        closed: () => socket.close(1000, "The session's browser closed the connection."),
      });
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
      socket.data.upstream?.send(guarded.forward);
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
