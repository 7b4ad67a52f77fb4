import type { Db } from "../store/database";
import type { AuditEventRow } from "../store/schema";

export type AuditAction =
  | "credential.create"
  | "credential.upsert"
  | "credential.update"
  | "credential.delete"
  | "credential.read"
  | "credential.inject"
  | "api_key.rejected";

export type AuditOutcome = "success" | "not_found" | "conflict" | "rejected" | "integrity_failure";

/** Who did what to which credential, and how it went. Never a value. */
export interface AuditEvent {
  at: string;
  tenantId: string | null;
  apiKeyId: string | null;
  action: AuditAction;
  outcome: AuditOutcome;
  credentialId?: string | null;
  credentialName?: string | null;
  detail?: string | null;
}

export async function recordAuditEvent(db: Db, event: AuditEvent): Promise<void> {
  await db
    .insertInto("audit_events")
    .values({
      at: event.at,
      tenant_id: event.tenantId,
      api_key_id: event.apiKeyId,
      action: event.action,
      outcome: event.outcome,
      credential_id: event.credentialId ?? null,
      credential_name: event.credentialName ?? null,
      detail: event.detail ?? null,
    })
    .execute();
}

export async function listAuditEvents(db: Db, filter: { tenantId?: string; limit?: number } = {}): Promise<AuditEventRow[]> {
  let query = db.selectFrom("audit_events").selectAll().orderBy("id");
  if (filter.tenantId) query = query.where("tenant_id", "=", filter.tenantId);
  return query.limit(filter.limit ?? 1000).execute();
}
