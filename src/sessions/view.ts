import type { Hono } from "hono";
import type { AppDeps } from "../app-deps";
import { AppError } from "../errors";
import { errorBody } from "../http/envelope";
import { sendJson, sendText } from "../http/respond";
import { accountRequest } from "../http/account";
import { RECORDING_VIEW_PREFIX, recordingPage } from "./recording";

/**
 * GET /v1/recordings/view/<session_id>/<token>: a session's recording as a
 * self-contained HTML page, for a person's web browser (no API key; the
 * token is the URL's only credential). The token never reaches the request
 * log or the metrics: both see only the route's fixed label.
 */
export function mountRecordingView(app: Hono, deps: AppDeps): void {
  // Every method here, so that no other handler (and its log line) sees the path.
  app.all(`${RECORDING_VIEW_PREFIX}*`, async (c) => {
    const started = performance.now();
    const requestId = crypto.randomUUID();
    let response: Response;
    const match = /^([^/]{1,100})\/([^/]{1,256})$/.exec(c.req.path.slice(RECORDING_VIEW_PREFIX.length));
    const frames = match && deps.recordings && (c.req.method === "GET" || c.req.method === "HEAD") ? await deps.recordings.framesForToken(match[1]!, match[2]!) : [];
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      const error = new AppError("METHOD_NOT_ALLOWED", `${c.req.method} is not allowed on a recording's URL: open it with GET (in a web browser).`, {
        headers: { allow: "GET, HEAD" },
        data: { allow: ["GET", "HEAD"] },
      });
      response = await sendJson(c, errorBody(error), { status: error.status, headers: error.headers });
    } else if (!frames.length) {
      const error = new AppError("NOT_FOUND", "No recording has this URL: the URL is wrong, or the recording has expired. /v1/recordings/get gives the current URL.");
      response = await sendJson(c, errorBody(error), { status: error.status });
    } else {
      const { html, csp } = recordingPage(match![1]!, frames);
      response = await sendText(c, html, {
        contentType: "text/html; charset=utf-8",
        headers: {
          "content-security-policy": csp,
          "x-content-type-options": "nosniff",
          "referrer-policy": "no-referrer",
          "cache-control": "private, no-store",
          "x-frame-options": "DENY",
        },
      });
    }
    accountRequest(deps, {
      route: "/v1/recordings/view",
      method: c.req.method,
      // Never the token.
      path: match ? `${RECORDING_VIEW_PREFIX}${match[1]}/<token>` : `${RECORDING_VIEW_PREFIX}<invalid>`,
      status: response.status,
      started,
      requestId,
      tenantId: null,
    });
    response.headers.set("x-request-id", requestId);
    return response;
  });
}
