import type { AppDeps } from "../app-deps";
import { httpRequestDuration, httpRequests, methodLabel } from "../metrics/registry";

/**
 * Counts a request in the metrics under its fixed route label (never the raw
 * path: bounded cardinality) and writes its request-log line. `path` is what
 * the log may show: callers leave out anything secret in it.
 */
export function accountRequest(
  deps: Pick<AppDeps, "config" | "log">,
  request: { route: string; method: string; path: string; status: number; started: number; requestId: string; tenantId: string | null },
): void {
  const seconds = (performance.now() - request.started) / 1000;
  httpRequests.inc({ route: request.route, method: methodLabel(request.method), status: String(request.status) });
  httpRequestDuration.observe({ route: request.route }, seconds);
  if (deps.config.requestLog) {
    deps.log.log("info", "request", {
      request_id: request.requestId,
      method: request.method,
      path: request.path,
      status: request.status,
      duration_ms: Math.round(seconds * 1_000_000) / 1000,
      tenant_id: request.tenantId,
    });
  }
}
