import type { Clock, IdSource } from "../clock";
import type { Config } from "../config";
import type { JobEndHook } from "../jobs/lifecycle";
import * as jobs from "../jobs/store";
import { webhookDeliveries } from "../metrics/registry";
import type { Logger } from "../log";
import type { Db } from "../store/database";
import { IntegrityError, VaultUnavailableError, type Vault } from "../vault/vault";
import type { Resolver } from "./address";
import { sendWebhook, type AttemptOutcome } from "./send";
import { endpointSecretContext, jobCallbackSecretContext, signatureHeaders } from "./signing";
import * as store from "./store";
import { VERSION } from "../version";

export interface WebhookDeps {
  db: Db;
  vault: Vault;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  config: Pick<Config, "webhooks">;
  /** The effective private-address policy (config, or the command's default). */
  allowPrivate: boolean;
  /** Tests: how host names are resolved (default: the system resolver). */
  resolve?: Resolver;
  /** How many deliveries are sent at once (default 8). */
  concurrency?: number;
}

/**
 * The most of a receiver's Retry-After that is honoured: one hour. A longer
 * one is cut to this, so a receiver cannot park a delivery for days; the
 * delay is never shorter than the retry schedule's.
 */
export const RETRY_AFTER_CAP_MS = 60 * 60 * 1000;

/** While a delivery is being sent, its row is leased for this long past the attempt's timeout. */
const leaseMs = (timeoutMs: number) => timeoutMs + Math.max(1000, timeoutMs);

/** A backstop poll, should a wake-up be missed; due times are otherwise timed exactly. */
const POLL_MS = 1000;

/** On stop, how long attempts in flight may go on before they are cut short and given back. */
const STOP_GRACE_MS = 2000;

const EVENTS = { completed: "job.completed", failed: "job.failed", cancelled: "job.cancelled" } as const;

/**
 * The body of a job's end, as JSON text without `delivered_at` (API.md,
 * "Webhooks"): fixed when the job ends, so every attempt sends the same
 * event. `result` is already redacted by the runner; no credential value is
 * in any field.
 */
export function jobEndPayload(job: jobs.JobRow): { event: string; payload: string } | undefined {
  const event = EVENTS[job.status as keyof typeof EVENTS];
  if (!event) return undefined;
  const body: Record<string, unknown> = {
    event,
    job_id: job.id,
    nonce: job.nonce,
    workflow: job.workflow,
    deployment_id: job.deployment_id,
    status: job.status,
  };
  if (job.status === "completed") body.result = parseResult(job.result);
  body.error = job.error;
  body.mapped_stack = job.mapped_stack;
  return { event, payload: JSON.stringify(body) };
}

/** The job's result as JSON; a job end must never fail on it, so text that does not parse is sent as a string. */
function parseResult(result: string | null): unknown {
  if (result === null) return null;
  try {
    return JSON.parse(result);
  } catch {
    return result;
  }
}

/** The stored payload with this attempt's `delivered_at` as its last field: the exact bytes that are signed and sent. */
export function attemptBody(payload: string, deliveredAt: string): Uint8Array {
  return Buffer.from(`${payload.slice(0, -1)},"delivered_at":${JSON.stringify(deliveredAt)}}`, "utf8");
}

/**
 * Writes a job's deliveries (the outbox rows) in the transaction that ends
 * it, by the three rules of API.md: skip_callbacks sends nothing; a job's own
 * callback_url (with its secret) is the only target; else every active
 * endpoint of the tenant. `written` is told when there are rows: the worker's
 * claim runs on the same connection, so it sees them once this commits.
 */
export function webhookJobEndHook(deps: WebhookDeps, written: () => void = () => {}): JobEndHook {
  // Jobs ended in one transaction (a batch) share each tenant's endpoint lookup.
  const endpointsIn = new WeakMap<object, Map<string, Promise<{ id: string; url: string }[]>>>();
  const activeEndpoints = (trx: Db, tenantId: string) => {
    let byTenant = endpointsIn.get(trx);
    if (!byTenant) endpointsIn.set(trx, (byTenant = new Map()));
    let endpoints = byTenant.get(tenantId);
    if (!endpoints) byTenant.set(tenantId, (endpoints = store.listActiveEndpoints(trx, tenantId)));
    return endpoints;
  };
  return async (trx, job) => {
    if (job.skip_callbacks) return;
    const body = jobEndPayload(job);
    if (!body) return;
    const at = deps.clock.now().toISOString();
    const targets: { endpointId: string | null; url: string }[] =
      job.callback_url !== null && job.sealed_callback_secret !== null
        ? [{ endpointId: null, url: job.callback_url }]
        : (await activeEndpoints(trx, job.tenant_id)).map((e) => ({ endpointId: e.id, url: e.url }));
    if (targets.length === 0) return;
    await store.insertDeliveries(
      trx,
      targets.map((t) => ({ id: deps.newId(), tenantId: job.tenant_id, jobId: job.id, ...t, event: body.event, payload: body.payload, at })),
    );
    written();
  };
}

/** Where and with what secret an attempt goes, or why it cannot go at all. */
type Target = { ok: true; url: string; secret: string } | { ok: false; url: string; reason: string };

/**
 * Sends pending deliveries: a small loop that claims due rows (each claim
 * counts an attempt and leases the row), sends up to `concurrency` at once,
 * and records each outcome. Due times come from the injected clock; the loop
 * sleeps until the next one, or until woken (a job ended, a redeliver).
 *
 * Invariant: a delivery this worker claimed is always recorded (succeeded,
 * failed, or pending again with its next attempt time) or, on stop, given
 * back; only a crash breaks that, and then the lease lapses and the next
 * start sends it again, with the same webhook-id.
 */
export class DeliveryWorker {
  readonly deps: WebhookDeps;
  readonly #inflight = new Map<string, { abort: AbortController; done: Promise<void> }>();
  #started = false;
  #stopping = false;
  #ticking: Promise<void> | undefined;
  #again = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(deps: WebhookDeps) {
    this.deps = deps;
  }

  get #concurrency(): number {
    return this.deps.concurrency ?? 8;
  }

  /** Starts sending; deliveries left pending by a previous run are due at once (or when their lease lapses). */
  start(): void {
    this.#started = true;
    this.wake();
  }

  /** Deliveries may be due: claim what the free slots allow. Called inside a transaction, the claim waits for its commit. */
  wake(): void {
    if (!this.#started || this.#stopping) return;
    this.#again = true;
    if (this.#ticking) return;
    this.#ticking = (async () => {
      // A fresh macrotask: a wake from inside a job-ending transaction is
      // handled after it, and the caller never waits on the worker.
      await new Promise((resolve) => setTimeout(resolve, 0));
      while (this.#again && !this.#stopping) await this.#tick();
    })().finally(() => {
      this.#ticking = undefined;
    });
  }

  /** Stops claiming; attempts in flight get a short grace, then are cut short and given back, due again at the next start. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    await this.#ticking;
    const all = () => Promise.all([...this.#inflight.values()].map((a) => a.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = Math.min(STOP_GRACE_MS, this.deps.config.webhooks.timeoutMs);
    const late = await Promise.race([all().then(() => false), new Promise<boolean>((r) => (timer = setTimeout(r, grace, true)))]);
    clearTimeout(timer);
    if (late) {
      for (const attempt of this.#inflight.values()) attempt.abort.abort();
      await all();
    }
  }

  async #tick(): Promise<void> {
    clearTimeout(this.#timer);
    const { db, clock, log, config } = this.deps;
    try {
      while (this.#again && !this.#stopping) {
        this.#again = false;
        const free = this.#concurrency - this.#inflight.size;
        if (free <= 0) return;
        const now = clock.now();
        const claimed = await store.claimDueDeliveries(db, {
          now: now.toISOString(),
          leaseUntil: new Date(now.getTime() + leaseMs(config.webhooks.timeoutMs)).toISOString(),
          limit: free,
          exclude: [...this.#inflight.keys()],
        });
        for (const delivery of claimed) this.#begin(delivery);
        if (claimed.length === free) this.#again = true;
      }
      if (!this.#stopping && this.#inflight.size < this.#concurrency) await this.#sleepUntilNextDue();
    } catch (error) {
      log.log("error", "webhook delivery claim failed", { error: error instanceof Error ? error.message : "error" });
      if (!this.#stopping) this.#timer = setTimeout(() => this.wake(), POLL_MS);
    }
  }

  async #sleepUntilNextDue(): Promise<void> {
    const due = await store.nextDueAt(this.deps.db, [...this.#inflight.keys()]);
    const wait = due === undefined ? POLL_MS : Math.min(POLL_MS, Math.max(0, Date.parse(due) - this.deps.clock.now().getTime()));
    clearTimeout(this.#timer);
    if (!this.#stopping) this.#timer = setTimeout(() => this.wake(), wait);
  }

  #begin(delivery: store.Delivery): void {
    const abort = new AbortController();
    const entry = { abort, done: Promise.resolve() };
    this.#inflight.set(delivery.id, entry);
    entry.done = this.#attempt(delivery, abort.signal)
      .catch((error) => {
        // The lease lapses and the delivery is tried again; nothing of it is logged but ids.
        this.deps.log.log("error", "webhook delivery attempt could not be recorded", {
          delivery_id: delivery.id,
          error: error instanceof Error ? error.name : "error",
        });
      })
      .finally(() => {
        this.#inflight.delete(delivery.id);
        this.wake();
      });
  }

  async #attempt(delivery: store.Delivery, signal: AbortSignal): Promise<void> {
    const { db, clock, config, allowPrivate, resolve } = this.deps;
    const target = await this.#target(delivery);
    const startedAt = clock.now();
    let outcome: AttemptOutcome;
    if (!target.ok) {
      outcome = { kind: "refused", reason: target.reason };
    } else {
      const body = attemptBody(delivery.payload, startedAt.toISOString());
      const headers = {
        "content-type": "application/json",
        "user-agent": `Understudy-Webhooks/${VERSION}`,
        "x-event-type": delivery.event,
        ...signatureHeaders(target.secret, delivery.id, Math.floor(startedAt.getTime() / 1000), body),
      };
      outcome = await sendWebhook({
        url: target.url,
        body,
        headers,
        timeoutMs: config.webhooks.timeoutMs,
        allowPrivate,
        resolve,
        signal,
        now: () => clock.now(),
      });
    }
    const at = clock.now();
    if (outcome.kind === "aborted") {
      await store.releaseDelivery(db, delivery, at.toISOString());
      return;
    }
    let recorded: store.AttemptRecord["status"] | undefined;
    await db.transaction().execute(async (trx) => {
      const record = this.#recordOf(delivery, target.url, outcome, at);
      // A claim that outlived its lease was taken over: the newer claim records its own outcome.
      if (!(await store.recordAttempt(trx, delivery, record))) return;
      recorded = record.status;
      if (outcome.kind === "answered" && outcome.statusCode === 410 && delivery.endpointId !== null) {
        await store.disableEndpoint(
          trx,
          delivery.endpointId,
          `The receiver answered 410 Gone at ${at.toISOString()} (delivery ${delivery.id}), so the endpoint was turned off. ` +
            "Turn it on again with /v1/webhooks/update and active: true.",
          at.toISOString(),
        );
      }
    });
    if (!recorded) {
      this.deps.log.log("warn", "webhook delivery attempt outlived its lease; another claim records it", { delivery_id: delivery.id, attempt: delivery.attempts });
      return;
    }
    webhookDeliveries.inc({ outcome: recorded === "pending" ? "retried" : recorded });
    if (outcome.kind !== "answered" || !outcome.ok) {
      this.deps.log.log("warn", "webhook delivery attempt failed", {
        delivery_id: delivery.id,
        endpoint_id: delivery.endpointId,
        job_id: delivery.jobId,
        attempt: delivery.attempts,
        status_code: outcome.kind === "answered" ? outcome.statusCode : null,
        outcome: outcome.kind,
      });
    }
  }

  /** The URL and secret of this attempt: an endpoint's current ones, or the job's own callback. */
  async #target(delivery: store.Delivery): Promise<Target> {
    const { db, vault } = this.deps;
    const unopenable = "The signing secret failed its integrity check and cannot be used.";
    if (delivery.endpointId !== null) {
      const endpoint = await store.findEndpoint(db, delivery.tenantId, delivery.endpointId);
      if (!endpoint) return { ok: false, url: delivery.url, reason: "The webhook endpoint was deleted." };
      if (!endpoint.active) {
        return { ok: false, url: endpoint.url, reason: `The webhook endpoint is turned off${endpoint.disabledReason ? `: ${endpoint.disabledReason}` : "."}` };
      }
      try {
        const secret = await vault.openForTenant(db, delivery.tenantId, endpointSecretContext(endpoint.id), endpoint.sealedSecret);
        return { ok: true, url: endpoint.url, secret };
      } catch (error) {
        if (error instanceof IntegrityError) return { ok: false, url: endpoint.url, reason: `${unopenable} Set a new one with /v1/webhooks/update.` };
        if (error instanceof VaultUnavailableError) return { ok: false, url: endpoint.url, reason: error.clientMessage };
        throw error;
      }
    }
    const job = await jobs.findJobById(db, delivery.jobId);
    if (!job?.sealed_callback_secret) return { ok: false, url: delivery.url, reason: "The job's callback secret is gone." };
    try {
      const secret = await vault.openForTenant(db, delivery.tenantId, jobCallbackSecretContext(job.id), job.sealed_callback_secret);
      return { ok: true, url: delivery.url, secret };
    } catch (error) {
      if (error instanceof IntegrityError) return { ok: false, url: delivery.url, reason: unopenable };
      if (error instanceof VaultUnavailableError) return { ok: false, url: delivery.url, reason: error.clientMessage };
      throw error;
    }
  }

  /** What an attempt's outcome makes of the delivery: succeeded, failed for good, or pending with its next attempt time. */
  #recordOf(delivery: store.Delivery, url: string, outcome: Exclude<AttemptOutcome, { kind: "aborted" }>, at: Date): store.AttemptRecord {
    const schedule = this.deps.config.webhooks.retryScheduleMs;
    const base = { url, at: at.toISOString() };
    const retryOrFail = (fields: Omit<store.AttemptRecord, "status" | "nextAttemptAt" | "url" | "at">, retryAfterMs?: number): store.AttemptRecord => {
      if (delivery.attempts >= schedule.length) {
        const tried = delivery.attempts === 1 ? "1 attempt" : `${delivery.attempts} attempts`;
        return { ...base, ...fields, error: `${fields.error} Gave up after ${tried}.`, status: "failed", nextAttemptAt: null };
      }
      let delay = schedule[delivery.attempts]!;
      if (retryAfterMs !== undefined) delay = Math.max(delay, Math.min(retryAfterMs, RETRY_AFTER_CAP_MS));
      return { ...base, ...fields, status: "pending", nextAttemptAt: new Date(at.getTime() + delay).toISOString() };
    };
    switch (outcome.kind) {
      case "refused":
        return { ...base, status: "failed", nextAttemptAt: null, statusCode: null, error: outcome.reason, durationMs: null, excerpt: null };
      case "unreachable":
        return retryOrFail({ statusCode: null, error: outcome.reason, durationMs: outcome.durationMs, excerpt: null });
      case "answered": {
        const answer = { statusCode: outcome.statusCode, durationMs: outcome.durationMs, excerpt: outcome.excerpt };
        if (outcome.ok) return { ...base, ...answer, status: "succeeded", nextAttemptAt: null, error: null };
        if (outcome.statusCode === 410) {
          const reason =
            delivery.endpointId !== null
              ? "The receiver answered 410 Gone: the endpoint was turned off and this delivery is not retried."
              : "The receiver answered 410 Gone: this delivery is not retried.";
          return { ...base, ...answer, status: "failed", nextAttemptAt: null, error: reason };
        }
        const error =
          outcome.statusCode >= 300 && outcome.statusCode < 400
            ? `The receiver answered ${outcome.statusCode}, a redirect; redirects are not followed, so point the webhook at the final URL.`
            : `The receiver answered ${outcome.statusCode}.`;
        return retryOrFail({ ...answer, error }, outcome.retryAfterMs);
      }
    }
  }
}
