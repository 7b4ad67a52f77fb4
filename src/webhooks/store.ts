import { insertionOrder } from "../store/dialect";
import { isPostgres } from "../store/postgres";
import type { Db } from "../store/database";
import type { WebhookDeliveriesTable, WebhookEndpointsTable } from "../store/schema";
import { PreparedQuery } from "../store/prepared";

/** All SQL of webhooks: endpoints and the delivery outbox. Row types stop here. */

export interface Endpoint {
  id: string;
  tenantId: string;
  url: string;
  sealedSecret: Uint8Array;
  description: string | null;
  active: boolean;
  disabledReason: string | null;
  createdAt: string;
  updatedAt: string;
}

type EndpointRecord = { [K in keyof WebhookEndpointsTable]: WebhookEndpointsTable[K] };

const toEndpoint = (r: EndpointRecord): Endpoint => ({
  id: r.id,
  tenantId: r.tenant_id,
  url: r.url,
  sealedSecret: r.sealed_secret,
  description: r.description,
  active: r.active === 1,
  disabledReason: r.disabled_reason,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export async function insertEndpoint(db: Db, e: Endpoint): Promise<void> {
  await db
    .insertInto("webhook_endpoints")
    .values({
      id: e.id,
      tenant_id: e.tenantId,
      url: e.url,
      sealed_secret: e.sealedSecret,
      description: e.description,
      active: e.active ? 1 : 0,
      disabled_reason: e.disabledReason,
      created_at: e.createdAt,
      updated_at: e.updatedAt,
    })
    .execute();
}

export async function listEndpoints(db: Db, tenantId: string): Promise<Endpoint[]> {
  const rows = await db
    .selectFrom("webhook_endpoints")
    .selectAll()
    .where("tenant_id", "=", tenantId)
    .orderBy("created_at")
    // Insertion order breaks a tie within one millisecond (ids are random below the millisecond).
    .orderBy(insertionOrder(db))
    .execute();
  return rows.map(toEndpoint);
}

export async function findEndpoint(db: Db, tenantId: string, id: string): Promise<Endpoint | undefined> {
  const row = await db.selectFrom("webhook_endpoints").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
  return row && toEndpoint(row);
}

const activeEndpoints = new PreparedQuery<{ tenantId: string }, { id: string; url: string }>((db, slot) =>
  db
    .selectFrom("webhook_endpoints")
    .select(["id", "url"])
    .where("tenant_id", "=", slot("tenantId"))
    .where("active", "=", 1)
    .orderBy("created_at")
    .orderBy(insertionOrder(db)),
);

/** The endpoints a job's end is delivered to (rule 3 of API.md): read in every job end's transaction, so compiled once. */
export async function listActiveEndpoints(db: Db, tenantId: string): Promise<{ id: string; url: string }[]> {
  return activeEndpoints.execute(db, { tenantId });
}

export async function updateEndpoint(
  db: Db,
  tenantId: string,
  id: string,
  change: { url?: string; sealedSecret?: Uint8Array; description?: string | null; active?: boolean; disabledReason?: string | null; updatedAt: string },
): Promise<boolean> {
  const result = await db
    .updateTable("webhook_endpoints")
    .set({
      ...(change.url !== undefined && { url: change.url }),
      ...(change.sealedSecret !== undefined && { sealed_secret: change.sealedSecret }),
      ...(change.description !== undefined && { description: change.description }),
      ...(change.active !== undefined && { active: change.active ? 1 : 0 }),
      ...(change.disabledReason !== undefined && { disabled_reason: change.disabledReason }),
      updated_at: change.updatedAt,
    })
    .where("tenant_id", "=", tenantId)
    .where("id", "=", id)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export async function deleteEndpoint(db: Db, tenantId: string, id: string): Promise<boolean> {
  const result = await db.deleteFrom("webhook_endpoints").where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

// ---------------------------------------------------------------------------
// Deliveries: the outbox and its log.

export type DeliveryStatus = "pending" | "succeeded" | "failed";

export interface Delivery {
  seq: number;
  id: string;
  tenantId: string;
  jobId: string;
  endpointId: string | null;
  url: string;
  event: string;
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  lastDurationMs: number | null;
  responseExcerpt: string | null;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
}

type DeliveryRecord = { [K in keyof WebhookDeliveriesTable]: K extends "seq" ? number : WebhookDeliveriesTable[K] };

const toDelivery = (r: DeliveryRecord): Delivery => ({
  seq: r.seq,
  id: r.id,
  tenantId: r.tenant_id,
  jobId: r.job_id,
  endpointId: r.endpoint_id,
  url: r.url,
  event: r.event,
  payload: r.payload,
  status: r.status as DeliveryStatus,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  lastStatusCode: r.last_status_code,
  lastError: r.last_error,
  lastDurationMs: r.last_duration_ms,
  responseExcerpt: r.response_excerpt,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  completedAt: r.completed_at,
});

export interface NewDelivery {
  id: string;
  tenantId: string;
  jobId: string;
  endpointId: string | null;
  url: string;
  event: string;
  payload: string;
  at: string;
}

/** Pending deliveries, due at once: written in the transaction that ends the job. */
export async function insertDeliveries(db: Db, deliveries: readonly NewDelivery[]): Promise<void> {
  if (deliveries.length === 0) return;
  await db
    .insertInto("webhook_deliveries")
    .values(
      deliveries.map((d) => ({
        id: d.id,
        tenant_id: d.tenantId,
        job_id: d.jobId,
        endpoint_id: d.endpointId,
        url: d.url,
        event: d.event,
        payload: d.payload,
        status: "pending",
        attempts: 0,
        next_attempt_at: d.at,
        created_at: d.at,
        updated_at: d.at,
      })),
    )
    .execute();
}

/**
 * Claims up to `limit` due deliveries in one statement: each counts an
 * attempt and is leased until `leaseUntil` (its next_attempt_at), so another
 * worker on the same database, or this one after a crash, takes it up again
 * only when the lease has lapsed. `exclude`: deliveries this worker is sending.
 *
 * On PostgreSQL the rows are picked FOR UPDATE SKIP LOCKED: without it, two
 * instances claiming at once pick the same ids, and the second UPDATE, after
 * waiting for the first, re-checks only `status` on the new row version and
 * claims (and sends) it again. With it, the second skips rows being claimed,
 * and a row that was claimed meanwhile is re-checked against the due time on
 * its committed version, which the lease has moved past `now`.
 *
 * The claimed `attempts` is the claim's token: recordAttempt and
 * releaseDelivery write only while it is unchanged, so an attempt that
 * outlived its lease (and was claimed again elsewhere) cannot overwrite the
 * newer claim's outcome.
 */
export async function claimDueDeliveries(
  db: Db,
  options: { now: string; leaseUntil: string; limit: number; exclude: readonly string[] },
): Promise<Delivery[]> {
  let due = db
    .selectFrom("webhook_deliveries")
    .select("id")
    .where("status", "=", "pending")
    .where("next_attempt_at", "<=", options.now)
    .orderBy("next_attempt_at")
    .orderBy("seq")
    .limit(options.limit);
  if (options.exclude.length > 0) due = due.where("id", "not in", options.exclude);
  if (isPostgres(db)) due = due.forUpdate().skipLocked();
  const rows = await db
    .updateTable("webhook_deliveries")
    .set((eb) => ({ attempts: eb("attempts", "+", 1), next_attempt_at: options.leaseUntil, updated_at: options.now }))
    .where("id", "in", due)
    .where("status", "=", "pending")
    .returningAll()
    .execute();
  return rows.map((r) => toDelivery(r as DeliveryRecord)).sort((a, b) => a.seq - b.seq);
}

/** When the next pending delivery is due (ignoring those being sent), or undefined. */
export async function nextDueAt(db: Db, exclude: readonly string[]): Promise<string | undefined> {
  let query = db
    .selectFrom("webhook_deliveries")
    .select((eb) => eb.fn.min("next_attempt_at").as("due"))
    .where("status", "=", "pending");
  if (exclude.length > 0) query = query.where("id", "not in", exclude);
  const row = await query.executeTakeFirst();
  return (row?.due as string | null | undefined) ?? undefined;
}

export interface AttemptRecord {
  status: DeliveryStatus;
  url: string;
  nextAttemptAt: string | null;
  statusCode: number | null;
  error: string | null;
  durationMs: number | null;
  excerpt: string | null;
  at: string;
}

/**
 * Writes the outcome of an attempt of a claimed delivery; false when the
 * claim is no longer this attempt's (its lease lapsed and another claim
 * counted a further attempt), and nothing is written.
 */
export async function recordAttempt(db: Db, claim: { id: string; attempts: number }, r: AttemptRecord): Promise<boolean> {
  const result = await db
    .updateTable("webhook_deliveries")
    .set({
      status: r.status,
      url: r.url,
      next_attempt_at: r.nextAttemptAt,
      last_status_code: r.statusCode,
      last_error: r.error,
      last_duration_ms: r.durationMs,
      response_excerpt: r.excerpt,
      updated_at: r.at,
      completed_at: r.status === "pending" ? null : r.at,
    })
    .where("id", "=", claim.id)
    .where("status", "=", "pending")
    .where("attempts", "=", claim.attempts)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Gives back a claimed delivery whose attempt was cut short by a shutdown: it is due again, and the attempt does not count. */
export async function releaseDelivery(db: Db, claim: { id: string; attempts: number }, at: string): Promise<void> {
  await db
    .updateTable("webhook_deliveries")
    .set({ attempts: Math.max(claim.attempts - 1, 0), next_attempt_at: at, updated_at: at })
    .where("id", "=", claim.id)
    .where("status", "=", "pending")
    .where("attempts", "=", claim.attempts)
    .execute();
}

/** A 410 Gone: the endpoint is turned off, with the reason shown by webhooks/list. */
export async function disableEndpoint(db: Db, id: string, reason: string, at: string): Promise<void> {
  await db.updateTable("webhook_endpoints").set({ active: 0, disabled_reason: reason, updated_at: at }).where("id", "=", id).execute();
}

/** Fails the pending deliveries of an endpoint that is being deleted. */
export async function failPendingDeliveriesOf(db: Db, tenantId: string, endpointId: string, reason: string, at: string): Promise<void> {
  await db
    .updateTable("webhook_deliveries")
    .set({ status: "failed", last_error: reason, next_attempt_at: null, updated_at: at, completed_at: at })
    .where("tenant_id", "=", tenantId)
    .where("endpoint_id", "=", endpointId)
    .where("status", "=", "pending")
    .execute();
}

export async function listDeliveries(
  db: Db,
  tenantId: string,
  filter: { endpointId?: string; jobId?: string; status?: DeliveryStatus; beforeSeq?: number; limit: number },
): Promise<Delivery[]> {
  let query = db.selectFrom("webhook_deliveries").selectAll().where("tenant_id", "=", tenantId);
  if (filter.endpointId) query = query.where("endpoint_id", "=", filter.endpointId);
  if (filter.jobId) query = query.where("job_id", "=", filter.jobId);
  if (filter.status) query = query.where("status", "=", filter.status);
  if (filter.beforeSeq !== undefined) query = query.where("seq", "<", filter.beforeSeq);
  const rows = await query.orderBy("seq", "desc").limit(filter.limit).execute();
  return rows.map((r) => toDelivery(r as DeliveryRecord));
}

export async function findDelivery(db: Db, tenantId: string, id: string): Promise<Delivery | undefined> {
  const row = await db.selectFrom("webhook_deliveries").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
  return row && toDelivery(row as DeliveryRecord);
}

/** Makes an ended delivery pending again, due now, with a fresh attempt count; false when it is still pending. */
export async function requeueDelivery(db: Db, tenantId: string, id: string, at: string): Promise<boolean> {
  const result = await db
    .updateTable("webhook_deliveries")
    .set({ status: "pending", attempts: 0, next_attempt_at: at, updated_at: at, completed_at: null })
    .where("tenant_id", "=", tenantId)
    .where("id", "=", id)
    .where("status", "!=", "pending")
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}
