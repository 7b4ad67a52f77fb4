import { AppError } from "../errors";
import { VaultUnavailableError } from "../vault/vault";
import type { AppDeps } from "../app-deps";

/** Anything that is not an AppError is a bug: the client gets a generic 500, the log gets the detail. */
export function toAppError(thrown: unknown, deps: AppDeps, requestId: string): AppError {
  if (thrown instanceof AppError) return thrown;
  if (thrown instanceof VaultUnavailableError) {
    // Not a bug, and not the client's doing: the operator must act. The log says exactly what; the client, whom to ask.
    deps.log.log("error", thrown.message, { request_id: requestId, problem: thrown.problem });
    return new AppError(thrown.problem === "master_key_rotated" ? "SERVICE_UNAVAILABLE" : "INTERNAL_SERVER_ERROR", thrown.clientMessage, {
      data: { problem: thrown.problem },
    });
  }
  deps.log.log("error", "unhandled error", {
    request_id: requestId,
    error: thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : "non-error thrown",
  });
  return new AppError("INTERNAL_SERVER_ERROR", `Something went wrong on the server (request ${requestId}); the server log has the detail.`);
}
