import { recordAuditEvent, recordAuditEventSoon, type AuditAction, type AuditEvent, type AuditOutcome } from "../audit/store";
import type { Clock, IdSource } from "../clock";
import { AppError } from "../errors";
import type { Db } from "../store/database";
import { lockTenant } from "../store/locks";
import { IntegrityError, VaultUnavailableError, type Vault } from "../vault/vault";
import { storageState, type StorageState } from "./state";
import * as store from "./store";

/**
 * What a profile's sealed state is bound to besides its tenant (the vault
 * adds that): its id, version and name. A state copied onto another row or
 * another tenant's, replayed from an older version, or left under a name
 * swapped in the database does not open.
 */
const sealContext = (profile: { id: string; version: number; name: string }) => `browser-profile/v1/${profile.id}/${profile.version}/${profile.name}`;

export interface ProfileDeps {
  db: Db;
  vault: Vault;
  clock: Clock;
  newId: IdSource;
}

/** Who acts: an API key of the tenant, or the operator (the CLI, a job: apiKeyId null). */
export interface Actor {
  tenantId: string;
  apiKeyId: string | null;
}

function auditEvent(
  deps: Pick<ProfileDeps, "clock">,
  actor: Actor,
  action: AuditAction,
  outcome: AuditOutcome,
  profile: { id?: string | null; name?: string | null },
  detail?: string,
): AuditEvent {
  return {
    at: deps.clock.now().toISOString(),
    tenantId: actor.tenantId,
    apiKeyId: actor.apiKeyId,
    action,
    outcome,
    credentialId: profile.id ?? null,
    credentialName: profile.name ?? null,
    detail: detail ?? null,
  };
}

const notFound = (name: string) =>
  new AppError("NOT_FOUND", `No cloud profile found for ${name}. List this tenant's browser profiles with /v1/browserProfiles/list.`);

/** The size of a state as stored (its JSON), refused over `limitBytes`. */
function serialise(state: StorageState, limitBytes: number): string {
  const json = JSON.stringify(state);
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > limitBytes) {
    throw new AppError("PAYLOAD_TOO_LARGE", `The profile state is ${bytes} bytes of JSON; the limit is ${limitBytes} bytes (UNDERSTUDY_MAX_BODY_BYTES).`, {
      data: { limit_bytes: limitBytes },
    });
  }
  return json;
}

/**
 * Registers a profile name (libretto's deploy does, for each declared
 * authProfile); an existing one is left as it is. Every change to a tenant's
 * profiles holds the tenant's lock (lockTenant), so that two at once see each
 * other on PostgreSQL as on SQLite: a name is made once, versions never repeat.
 */
export async function ensureProfile(deps: ProfileDeps, actor: Actor, name: string): Promise<{ id: string; created: boolean }> {
  return deps.db.transaction().execute(async (trx) => {
    await lockTenant(trx, actor.tenantId);
    const existing = await store.findProfileByName(trx, actor.tenantId, name);
    if (existing) return { id: existing.id, created: false };
    const id = deps.newId();
    const at = deps.clock.now().toISOString();
    await store.insertProfile(trx, { id, tenantId: actor.tenantId, name, sealedState: null, version: 0, createdAt: at, updatedAt: at });
    await recordAuditEvent(trx, auditEvent(deps, actor, "profile.ensure", "success", { id, name }, "created"));
    return { id, created: true };
  });
}

export async function listProfiles(db: Db, tenantId: string) {
  return store.listProfiles(db, tenantId);
}

/** Stores a profile's state, creating the profile if it is new; the state is sealed as version+1. */
export async function uploadProfileState(
  deps: ProfileDeps,
  actor: Actor,
  name: string,
  state: StorageState,
  limitBytes: number,
): Promise<{ id: string; created: boolean; version: number }> {
  const json = serialise(state, limitBytes);
  return deps.db.transaction().execute(async (trx) => {
    await lockTenant(trx, actor.tenantId);
    const existing = await store.findProfileByName(trx, actor.tenantId, name);
    const at = deps.clock.now().toISOString();
    if (existing) {
      const version = existing.version + 1;
      const sealedState = await deps.vault.sealForTenant(trx, actor.tenantId, sealContext({ id: existing.id, version, name }), json);
      await store.updateProfileState(trx, actor.tenantId, existing.id, { sealedState, version, updatedAt: at });
      await recordAuditEvent(trx, auditEvent(deps, actor, "profile.upload", "success", existing, `version ${version}`));
      return { id: existing.id, created: false, version };
    }
    const id = deps.newId();
    const sealedState = await deps.vault.sealForTenant(trx, actor.tenantId, sealContext({ id, version: 1, name }), json);
    await store.insertProfile(trx, { id, tenantId: actor.tenantId, name, sealedState, version: 1, createdAt: at, updatedAt: at });
    await recordAuditEvent(trx, auditEvent(deps, actor, "profile.upload", "success", { id, name }, "created, version 1"));
    return { id, created: true, version: 1 };
  });
}

/**
 * Deletes a profile unless a queued or running job uses it (409 with the job
 * ids). The check and the delete share one transaction under the tenant's
 * lock; a job takes its reference, under the same lock, in the transaction
 * that queues it (when the profile exists then) and again in the one that
 * claims it.
 */
export async function deleteProfile(
  deps: Pick<ProfileDeps, "db" | "clock">,
  actor: Actor,
  name: string,
  /** The tenant's open remote sessions that will save their state into this profile (held in memory, not in the database). */
  sessionsUsing: (name: string) => string[] = () => [],
): Promise<void> {
  let refusal: { error: AppError; outcome: AuditOutcome; profile: { id?: string; name: string }; detail?: string } | undefined;
  await deps.db.transaction().execute(async (trx) => {
    await lockTenant(trx, actor.tenantId);
    const existing = await store.findProfileByName(trx, actor.tenantId, name);
    if (!existing) {
      refusal = { error: notFound(name), outcome: "not_found", profile: { name } };
      return;
    }
    const sessionIds = sessionsUsing(existing.name);
    if (sessionIds.length > 0) {
      const sessions = sessionIds.length === 1 ? "1 open browser session" : `${sessionIds.length} open browser sessions`;
      refusal = {
        error: new AppError(
          "CONFLICT",
          `Browser profile "${existing.name}" is in use by ${sessions} that will save its state into it (profile_persist). Close ${sessionIds.length === 1 ? "it" : "them"} with /v1/sessions/close, then delete again.`,
          { data: { session_ids: sessionIds } },
        ),
        outcome: "conflict",
        profile: existing,
        detail: `${sessionIds.length} open sessions`,
      };
      return;
    }
    const jobIds = await store.listReferencingJobIds(trx, actor.tenantId, existing.id);
    if (jobIds.length > 0) {
      const jobs = jobIds.length === 1 ? "1 queued or running job" : `${jobIds.length} queued or running jobs`;
      const them = jobIds.length === 1 ? "it" : "them";
      refusal = {
        error: new AppError(
          "CONFLICT",
          `Browser profile "${existing.name}" is in use by ${jobs}. Wait for ${them} to end or cancel ${them} with /v1/jobs/cancel, then delete again.`,
          { data: { job_ids: jobIds } },
        ),
        outcome: "conflict",
        profile: existing,
        detail: `${jobIds.length} referencing jobs`,
      };
      return;
    }
    await store.deleteProfile(trx, actor.tenantId, existing.id);
    await recordAuditEvent(trx, auditEvent(deps, actor, "profile.delete", "success", existing));
  });
  if (refusal) {
    await recordAuditEvent(deps.db, auditEvent(deps, actor, "profile.delete", refusal.outcome, refusal.profile, refusal.detail));
    throw refusal.error;
  }
}

// ---------------------------------------------------------------------------
// Jobs

/** Takes a job's reference to the tenant's profile of this name, if there is one (inside the transaction that queues or claims it). */
export async function referenceProfile(trx: Db, tenantId: string, jobId: string, name: string, at: string): Promise<void> {
  const profile = await store.findProfileByName(trx, tenantId, name);
  if (profile) await store.insertJobReference(trx, tenantId, jobId, profile.id, at);
}

export async function releaseProfileReferences(trx: Db, jobIds: readonly string[]): Promise<void> {
  await store.releaseJobReferences(trx, jobIds);
}

export class ProfileUnusableError extends Error {
  constructor(
    message: string,
    /** missing: no profile of this name; unusable: its state does not open. */
    readonly reason: "missing" | "unusable" = "unusable",
  ) {
    super(message);
  }
}

/** What uses a profile, as its audit events name it. */
export type ProfileUse = { job_id: string } | { session_id: string };

/**
 * The state a job (or a remote session) of this tenant starts with:
 * undefined when the profile has none yet (made by ensure, never uploaded).
 * A missing profile, or a state that does not open as its row, is a
 * ProfileUnusableError whose message quotes nothing of the state. Audited as
 * profile.use.
 */
export async function openProfileForJob(
  deps: Pick<ProfileDeps, "db" | "vault" | "clock">,
  tenantId: string,
  jobId: string,
  name: string,
): Promise<{ id: string; version: number; state: StorageState | undefined }> {
  return openProfile(deps, tenantId, { job_id: jobId }, name, {
    missing: `The workflow declares browser profile "${name}", which does not exist for this tenant. Create it with /v1/browserProfiles/upload (or \`understudy profiles upload\`), then rerun the job.`,
  });
}

export async function openProfile(
  deps: Pick<ProfileDeps, "db" | "vault" | "clock">,
  tenantId: string,
  use: ProfileUse,
  name: string,
  messages: { missing: string },
): Promise<{ id: string; version: number; state: StorageState | undefined }> {
  const actor = { tenantId, apiKeyId: null };
  const row = await store.findProfileByName(deps.db, tenantId, name);
  if (!row || row.name !== name) {
    recordAuditEventSoon(deps.db, auditEvent(deps, actor, "profile.use", "not_found", { name }, JSON.stringify(use)));
    throw new ProfileUnusableError(messages.missing, "missing");
  }
  if (!row.sealedState) {
    recordAuditEventSoon(deps.db, auditEvent(deps, actor, "profile.use", "success", row, JSON.stringify({ ...use, version: row.version, state: "none" })));
    return { id: row.id, version: row.version, state: undefined };
  }
  let json: string;
  try {
    json = await deps.vault.openForTenant(deps.db, tenantId, sealContext(row), row.sealedState);
  } catch (error) {
    if (error instanceof VaultUnavailableError) throw error;
    if (!(error instanceof IntegrityError)) throw error;
    recordAuditEventSoon(deps.db, auditEvent(deps, actor, "profile.use", "integrity_failure", row, JSON.stringify(use)));
    throw new ProfileUnusableError(`The stored state of browser profile "${name}" failed its integrity check; upload it again, then ${"job_id" in use ? "rerun the job" : "open the session again"}.`);
  }
  const parsed = storageState.safeParse(JSON.parse(json));
  if (!parsed.success) throw new ProfileUnusableError(`The stored state of browser profile "${name}" is not a valid storageState; upload it again.`);
  recordAuditEventSoon(deps.db, auditEvent(deps, actor, "profile.use", "success", row, JSON.stringify({ ...use, version: row.version })));
  return { id: row.id, version: row.version, state: parsed.data };
}

/**
 * Saves the state a refreshing job's context (or a persisting session's
 * browser) ended with, re-sealed as the profile's next version. Returns the
 * version, or a reason it was not saved (the profile is gone, or the state
 * is too large).
 */
export async function saveRefreshedState(
  deps: Pick<ProfileDeps, "db" | "vault" | "clock">,
  tenantId: string,
  use: string | ProfileUse,
  profileId: string,
  state: unknown,
  limitBytes: number,
): Promise<{ version: number } | { skipped: string }> {
  const parsed = storageState.safeParse(state);
  if (!parsed.success) return { skipped: "the browser's state could not be read" };
  const json = JSON.stringify(parsed.data);
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > limitBytes) return { skipped: `the state is ${bytes} bytes; the limit is ${limitBytes} bytes (UNDERSTUDY_MAX_BODY_BYTES)` };
  return deps.db.transaction().execute(async (trx) => {
    await lockTenant(trx, tenantId);
    const row = await store.findProfileById(trx, tenantId, profileId);
    if (!row) return { skipped: "the profile no longer exists" };
    const version = row.version + 1;
    const sealedState = await deps.vault.sealForTenant(trx, tenantId, sealContext({ id: row.id, version, name: row.name }), json);
    await store.updateProfileState(trx, tenantId, row.id, { sealedState, version, updatedAt: deps.clock.now().toISOString() });
    await recordAuditEvent(trx, auditEvent(deps, { tenantId, apiKeyId: null }, "profile.refresh", "success", row, JSON.stringify({ ...(typeof use === "string" ? { job_id: use } : use), version })));
    return { version };
  });
}
