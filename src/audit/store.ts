import { CompiledQuery } from "kysely";
import type { Db } from "../store/database";
import { isPostgres } from "../store/postgres";
import type { AuditEventRow } from "../store/schema";

export type AuditAction =
  | "credential.create"
  | "credential.upsert"
  | "credential.update"
  | "credential.delete"
  | "credential.read"
  | "credential.inject"
  | "profile.ensure"
  | "profile.upload"
  | "profile.delete"
  | "profile.use"
  | "profile.refresh"
  | "api_key.rejected"
  | "dashboard.sign_in"
  | "dashboard.sign_out";

export type AuditOutcome = "success" | "not_found" | "conflict" | "rejected" | "integrity_failure";

/**
 * Who did what to which credential or browser profile, and how it went. Never
 * a value. A profile's event names it in credentialId/credentialName (the
 * action says which kind of thing it is).
 */
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
  await insertAuditEvents(db, [event]);
}

/** Several events of one transaction, in order, in as few statements as their count allows. */
export async function recordAuditEvents(db: Db, events: readonly AuditEvent[]): Promise<void> {
  if (events.length > 0) await insertAuditEvents(db, events);
}

const AUDIT_ROW_WIDTH = 8;
const auditRow = (e: AuditEvent) =>
  [e.at, e.tenantId, e.apiKeyId, e.action, e.outcome, e.credentialId ?? null, e.credentialName ?? null, e.detail ?? null] as const;

/**
 * Largest rows per INSERT: a flush of n events runs one statement per set bit
 * of n (64, 32, ... 1), so at most 7 statements and 7 distinct SQL strings.
 */
const MAX_ROWS_PER_INSERT = 64;

/**
 * The multi-row INSERT of `rows` audit events as Kysely compiles it, compiled
 * once per engine (the dialect decides the SQL) and size: the query builder
 * costs more than the insert itself on the read path, where every
 * credentials/get writes an audit row.
 */
const insertSqlByEngine = { sqlite: new Map<number, string>(), postgres: new Map<number, string>() };

function insertSql(db: Db, rows: number): string {
  const bySize = insertSqlByEngine[isPostgres(db) ? "postgres" : "sqlite"];
  let sql = bySize.get(rows);
  if (sql === undefined) {
    const placeholder = { at: "", tenant_id: null, api_key_id: null, action: "", outcome: "", credential_id: null, credential_name: null, detail: null };
    const compiled = db.insertInto("audit_events").values(Array.from({ length: rows }, () => placeholder)).compile();
    if (compiled.parameters.length !== rows * AUDIT_ROW_WIDTH) throw new Error("audit insert: unexpected parameter count");
    bySize.set(rows, (sql = compiled.sql));
  }
  return sql;
}

/** Inserts audit events in order, in as few statements as their count allows (one transaction when more than one). */
async function insertAuditEvents(db: Db, events: readonly AuditEvent[]): Promise<void> {
  const chunks: (readonly AuditEvent[])[] = [];
  for (let at = 0, size = MAX_ROWS_PER_INSERT; at < events.length; size >>= 1) {
    while (events.length - at >= size) {
      chunks.push(events.slice(at, at + size));
      at += size;
    }
  }
  const run = async (conn: Db) => {
    for (const chunk of chunks) await conn.executeQuery(CompiledQuery.raw(insertSql(db, chunk.length), chunk.flatMap(auditRow)));
  };
  if (chunks.length === 1 || db.isTransaction) await run(db);
  else await db.transaction().execute(run);
}

export async function listAuditEvents(db: Db, filter: { tenantId?: string; limit?: number } = {}): Promise<AuditEventRow[]> {
  let query = db.selectFrom("audit_events").selectAll().orderBy("id");
  if (filter.tenantId) query = query.where("tenant_id", "=", filter.tenantId);
  return query.limit(filter.limit ?? 1000).execute();
}

/**
 * Reads and rejected keys are audited after the response, in batches: one
 * transaction per turn of the event loop instead of one commit per request,
 * which would make every credential read a write. Changes are audited in
 * their own transaction instead. A crash can lose the read events of the
 * last few milliseconds, never those of a change.
 */
const pendingByDb = new WeakMap<Db, { events: AuditEvent[]; flushing: Promise<void> }>();

export function recordAuditEventSoon(db: Db, event: AuditEvent): void {
  let pending = pendingByDb.get(db);
  if (!pending) {
    pending = { events: [], flushing: Promise.resolve() };
    pendingByDb.set(db, pending);
  }
  pending.events.push(event);
  if (pending.events.length === 1) setTimeout(() => void flushAuditEvents(db), 0);
}

/** Writes the queued audit events now; call before closing the database. */
export function flushAuditEvents(db: Db): Promise<void> {
  const pending = pendingByDb.get(db);
  if (!pending) return Promise.resolve();
  const events = pending.events.splice(0);
  if (events.length === 0) return pending.flushing;
  pending.flushing = pending.flushing
    .then(() => insertAuditEvents(db, events))
    .catch(() => {
      // The database is gone (closing) or failing; the request log still has the request.
    });
  return pending.flushing;
}

/** An audit event with the name and prefix of the API key that caused it (null when the key is unknown or gone). */
export interface AuditEventWithKey extends AuditEventRow {
  key_name: string | null;
  key_prefix: string | null;
}

/**
 * One tenant's audit events, newest first, `limit` of them before the event
 * `before` (an id; none for the newest page). Strictly that tenant's rows and
 * keys: a key of another tenant is never named.
 */
export async function listTenantAuditEvents(
  db: Db,
  tenantId: string,
  options: { before?: number; limit: number },
): Promise<AuditEventWithKey[]> {
  let query = db
    .selectFrom("audit_events")
    .leftJoin("api_keys", (join) => join.onRef("api_keys.id", "=", "audit_events.api_key_id").on("api_keys.tenant_id", "=", tenantId))
    .selectAll("audit_events")
    .select(["api_keys.name as key_name", "api_keys.prefix as key_prefix"])
    .where("audit_events.tenant_id", "=", tenantId);
  if (options.before !== undefined) query = query.where("audit_events.id", "<", options.before);
  return query.orderBy("audit_events.id", "desc").limit(options.limit).execute();
}
