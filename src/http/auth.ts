import { recordAuditEventSoon } from "../audit/store";
import { AppError } from "../errors";
import { findApiKeyByHash, touchApiKey } from "../tenants/store";
import { hashApiKey } from "../tenants/service";
import type { AppDeps, Caller } from "./route";

// last_used_at is written at most this often per key, so that authentication
// does not turn every read into a write.
const TOUCH_INTERVAL_MS = 60_000;

/** Resolves `x-api-key` to its tenant; 401 (and an audit row) for a missing, unknown or revoked key. */
export async function authenticate(deps: AppDeps, presented: string | undefined): Promise<Caller> {
  const now = deps.clock.now();
  const reject = async (reason: string, apiKeyId: string | null, tenantId: string | null) => {
    recordAuditEventSoon(deps.db, {
      at: now.toISOString(),
      tenantId,
      apiKeyId,
      action: "api_key.rejected",
      outcome: "rejected",
      detail: reason,
    });
    return new AppError("UNAUTHORIZED", "Invalid API key");
  };
  if (!presented) throw await reject("missing", null, null);
  const row = await findApiKeyByHash(deps.db, hashApiKey(presented.trim()));
  if (!row) throw await reject("unknown", null, null);
  if (row.revoked_at) throw await reject("revoked", row.id, row.tenant_id);
  if (!row.last_used_at || now.getTime() - Date.parse(row.last_used_at) >= TOUCH_INTERVAL_MS) {
    await touchApiKey(deps.db, row.id, now.toISOString());
  }
  return { tenantId: row.tenant_id, apiKeyId: row.id };
}
