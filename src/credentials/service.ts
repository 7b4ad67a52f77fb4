import { recordAuditEvent, recordAuditEvents, recordAuditEventSoon, type AuditAction, type AuditEvent, type AuditOutcome } from "../audit/store";
import { AppError } from "../errors";
import type { AppDeps, Caller } from "../http/route";
import type { Db } from "../store/database";
import { Batcher } from "../store/batcher";
import { lockTenant, lockTenants } from "../store/locks";
import { IntegrityError, VaultUnavailableError, type Vault } from "../vault/vault";
import * as store from "./store";

/**
 * What a credential's sealed value is bound to besides its tenant (the vault
 * adds that): its id, version and name. A ciphertext copied onto another row,
 * replayed from an older version, or left under a name that was swapped or
 * damaged in the database does not open. A rename re-seals.
 */
const SEAL_FORMAT = 2;
const sealContext = (credential: { id: string; version: number; name: string }) =>
  `credential/v2/${credential.id}/${credential.version}/${credential.name}`;
/** Format 1, from before the name was bound: opened only to upgrade it (upgradeCredentialSeals). */
const legacySealContext = (credential: { id: string; version: number }) => `credential/${credential.id}/${credential.version}`;

type StoredValue = { id: string; name: string; version: number; sealed_value: Uint8Array; seal_format: number };

/**
 * Opens a stored credential's value; throws IntegrityError when it does not
 * open as this row (format 1 never does: those rows are upgraded at start).
 */
export async function openStoredValue(deps: Pick<AppDeps, "vault">, db: Db, tenantId: string, row: StoredValue): Promise<string> {
  if (row.seal_format !== SEAL_FORMAT) throw new IntegrityError();
  return deps.vault.openForTenant(db, tenantId, sealContext(row), row.sealed_value, { remember: true });
}

/** A credential's value was replaced or deleted: the vault forgets the old one now rather than when it goes stale. */
function forgetValue(deps: Pick<AppDeps, "vault">, tenantId: string, row: StoredValue | store.CredentialRow) {
  deps.vault.forgetOpened(tenantId, sealContext(row));
}

const storedValueOf = (row: store.CredentialRow): StoredValue => ({
  id: row.id,
  name: row.name,
  version: row.version,
  sealed_value: row.sealedValue,
  seal_format: row.sealFormat,
});

/**
 * Re-seals, in one transaction, every credential sealed before names were
 * bound (format 1), so that each value is bound to its name; run at start,
 * once the vault is open. A value that does not open is left as it is: a read
 * of it fails its check like that of any damaged value.
 */
export async function upgradeCredentialSeals(db: Db, vault: Vault): Promise<{ upgraded: number; unopenable: number }> {
  if ((await store.listCredentialsSealedBefore(db, SEAL_FORMAT)).length === 0) return { upgraded: 0, unopenable: 0 };
  return db.transaction().execute(async (trx) => {
    let upgraded = 0;
    let unopenable = 0;
    for (const row of await store.listCredentialsSealedBefore(trx, SEAL_FORMAT)) {
      let value: string;
      try {
        value = await vault.openForTenant(trx, row.tenantId, legacySealContext(row), row.sealedValue);
      } catch (error) {
        if (!(error instanceof IntegrityError || error instanceof VaultUnavailableError)) throw error;
        unopenable++;
        continue;
      }
      const sealedValue = await vault.sealForTenant(trx, row.tenantId, sealContext(row), value);
      await store.updateCredential(trx, row.tenantId, row.id, { sealedValue, sealFormat: SEAL_FORMAT, updatedAt: row.updatedAt });
      upgraded++;
    }
    return { upgraded, unopenable };
  });
}

const notFound = (what: string) =>
  new AppError("NOT_FOUND", `Credential ${what} not found. List this tenant's credentials with /v1/credentials/list.`);

const nameTaken = (name: string, hint: string) =>
  new AppError("CONFLICT", `A credential named "${name}" already exists. ${hint}`, { data: { name } });

function checkValueSize(deps: AppDeps, value: string) {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > deps.config.maxValueBytes) {
    throw new AppError(
      "PAYLOAD_TOO_LARGE",
      `The credential value is ${bytes} bytes; the limit is ${deps.config.maxValueBytes} bytes (UNDERSTUDY_MAX_VALUE_BYTES).`,
      { data: { limit_bytes: deps.config.maxValueBytes } },
    );
  }
}

function auditEvent(
  deps: AppDeps,
  caller: Caller,
  action: AuditAction,
  outcome: AuditOutcome,
  credential: { id?: string | null; name?: string | null },
  detail?: string,
): AuditEvent {
  return {
    at: deps.clock.now().toISOString(),
    tenantId: caller.tenantId,
    apiKeyId: caller.apiKeyId,
    action,
    outcome,
    credentialId: credential.id ?? null,
    credentialName: credential.name ?? null,
    detail: detail ?? null,
  };
}

/** Audits a change inside its transaction. */
async function audit(db: Db, ...event: Parameters<typeof auditEvent>) {
  await recordAuditEvent(db, auditEvent(...event));
}

/** Audits a read after the response, batched (see recordAuditEventSoon). */
function auditSoon(...event: Parameters<typeof auditEvent>) {
  recordAuditEventSoon(event[0].db, auditEvent(...event));
}

/**
 * A refused change: the transaction rolls back, and the refusal is audited
 * after it, so the audit row is not rolled back with the change.
 */
class Refusal {
  constructor(
    readonly error: AppError,
    readonly outcome: AuditOutcome,
    readonly credential: { id?: string | null; name?: string | null },
    readonly detail?: string,
  ) {}
}

/**
 * A change to the caller's credentials, with the tenant's lock held (see
 * lockTenant): its checks (the name is free, no job holds a reference) see
 * every change committed before it, on PostgreSQL as on SQLite, so two
 * racing creates of one name are a 200 and a 409, never a 500.
 */
async function auditedTransaction<T>(deps: AppDeps, caller: Caller, action: AuditAction, work: (trx: Db) => Promise<T>): Promise<T> {
  try {
    return await deps.db.transaction().execute(async (trx) => {
      await lockTenant(trx, caller.tenantId);
      return work(trx);
    });
  } catch (thrown) {
    if (!(thrown instanceof Refusal)) throw thrown;
    await audit(deps.db, deps, caller, action, thrown.outcome, thrown.credential, thrown.detail);
    throw thrown.error;
  }
}

export async function createCredential(deps: AppDeps, caller: Caller, name: string, value: string) {
  checkValueSize(deps, value);
  return auditedTransaction(deps, caller, "credential.create", async (trx) => {
    if (await store.findCredentialByName(trx, caller.tenantId, name)) {
      throw new Refusal(nameTaken(name, "Use /v1/credentials/upsert to replace its value."), "conflict", { name });
    }
    const id = deps.newId();
    const at = deps.clock.now().toISOString();
    const sealedValue = await deps.vault.sealForTenant(trx, caller.tenantId, sealContext({ id, version: 1, name }), value);
    await store.insertCredential(trx, { id, tenantId: caller.tenantId, name, sealedValue, version: 1, sealFormat: SEAL_FORMAT, createdAt: at, updatedAt: at });
    await audit(trx, deps, caller, "credential.create", "success", { id, name });
    return { id };
  });
}

export async function upsertCredential(deps: AppDeps, caller: Caller, name: string, value: string) {
  checkValueSize(deps, value);
  return upserts(deps).submit({ caller, name, value });
}

type Upserts = Batcher<{ caller: Caller; name: string; value: string }, { id: string; overwritten: boolean }>;
const upsertBatchers = new WeakMap<AppDeps, Upserts>();

/**
 * Upserts, group-committed: those that arrive together share one
 * transaction. Their tenants are locked first, in sorted order. A batch that
 * fails is retried one upsert at a time (Batcher), so each caller gets its
 * own outcome.
 */
function upserts(deps: AppDeps): Upserts {
  let batcher = upsertBatchers.get(deps);
  if (!batcher) {
    batcher = new Batcher(async (requests) =>
      deps.db.transaction().execute(async (trx) => {
        await lockTenants(trx, requests.map((r) => r.caller.tenantId));
        return upsertAll(trx, deps, requests);
      }),
    );
    upsertBatchers.set(deps, batcher);
  }
  return batcher;
}

/**
 * A batch of upserts in a transaction that holds their tenants' locks, as
 * if run one after another in arrival order: each gets its own version
 * (and audit row), and a later upsert of a name in the batch overwrites an
 * earlier one. Only what the last one leaves is written: one read of the
 * names per tenant, one seal and one write per name, one insert of every
 * new credential and one of the audit rows, whatever the batch's size (on
 * PostgreSQL each statement is a round trip).
 */
async function upsertAll(trx: Db, deps: AppDeps, requests: readonly { caller: Caller; name: string; value: string }[]) {
  const key = (tenantId: string, name: string) => `${tenantId}\u0000${name}`;
  const stored = new Map<string, store.CredentialRow>();
  const byTenant = new Map<string, Set<string>>();
  for (const { caller, name } of requests) {
    let names = byTenant.get(caller.tenantId);
    if (!names) byTenant.set(caller.tenantId, (names = new Set()));
    names.add(name);
  }
  for (const [tenantId, names] of byTenant) {
    for (const row of await store.findCredentialsByNames(trx, tenantId, [...names])) stored.set(key(tenantId, row.name), row);
  }

  // The state each name is left in, and what each request answers.
  const latest = new Map<string, { tenantId: string; id: string; name: string; version: number; value: string; createdAt: string; updatedAt: string }>();
  const results: { id: string; overwritten: boolean }[] = [];
  const events: AuditEvent[] = [];
  for (const { caller, name, value } of requests) {
    const k = key(caller.tenantId, name);
    const before = latest.get(k) ?? stored.get(k);
    const at = deps.clock.now().toISOString();
    const id = before?.id ?? deps.newId();
    latest.set(k, { tenantId: caller.tenantId, id, name, version: (before?.version ?? 0) + 1, value, createdAt: before?.createdAt ?? at, updatedAt: at });
    results.push({ id, overwritten: before !== undefined });
    events.push(auditEvent(deps, caller, "credential.upsert", "success", { id, name }, before ? "overwritten" : "created"));
  }

  const created: store.CredentialRow[] = [];
  for (const [k, state] of latest) {
    const sealedValue = await deps.vault.sealForTenant(trx, state.tenantId, sealContext(state), state.value);
    const sealed = { sealedValue, version: state.version, sealFormat: SEAL_FORMAT, updatedAt: state.updatedAt };
    const existing = stored.get(k);
    if (existing) {
      await store.replaceValue(trx, state.tenantId, existing.id, sealed);
      forgetValue(deps, state.tenantId, existing);
    } else {
      created.push({ id: state.id, tenantId: state.tenantId, name: state.name, createdAt: state.createdAt, ...sealed });
    }
  }
  await store.insertCredentials(trx, created);
  await recordAuditEvents(trx, events);
  return results;
}

/**
 * The answer to a value that does not open as its row: a clear server
 * error naming the credential, logged and audited, never another value.
 */
function integrityFailure(deps: AppDeps, caller: Caller, credential: { id: string; name: string }, hint: string): AppError {
  deps.log.log("error", "credential failed its integrity check", { tenant_id: caller.tenantId, credential_id: credential.id, name: credential.name });
  return new AppError(
    "INTERNAL_SERVER_ERROR",
    `The stored value of credential "${credential.name}" failed its integrity check and cannot be decrypted. ${hint}`,
    { data: { credential_id: credential.id } },
  );
}

/** Decrypts one credential for the caller. Every read, found or not, is audited. */
export async function readCredential(deps: AppDeps, caller: Caller, name: string) {
  const row = await store.findCredentialByName(deps.db, caller.tenantId, name);
  if (!row) {
    auditSoon(deps, caller, "credential.read", "not_found", { name });
    throw notFound(`"${name}"`);
  }
  let value: string;
  try {
    // Only the row asked for answers: one that a damaged index hands back under another name does not.
    if (row.name !== name) throw new IntegrityError();
    value = await openStoredValue(deps, deps.db, caller.tenantId, storedValueOf(row));
  } catch (error) {
    if (error instanceof VaultUnavailableError) {
      auditSoon(deps, caller, "credential.read", "integrity_failure", { id: row.id, name }, error.problem);
      throw error;
    }
    if (!(error instanceof IntegrityError)) throw error;
    auditSoon(deps, caller, "credential.read", "integrity_failure", { id: row.id, name });
    throw integrityFailure(deps, caller, { id: row.id, name }, "Set it again with /v1/credentials/upsert, or restore the database from a backup.");
  }
  auditSoon(deps, caller, "credential.read", "success", row);
  return { id: row.id, value };
}

/** The caller's credentials sorted by name: every one, or `limit` of them after the name `afterName`. */
export async function listCredentials(deps: AppDeps, caller: Caller, page: { afterName?: string; limit?: number } = {}) {
  return store.listCredentials(deps.db, caller.tenantId, page);
}

export async function updateCredential(deps: AppDeps, caller: Caller, id: string, change: { name?: string; value?: string }) {
  if (change.value !== undefined) checkValueSize(deps, change.value);
  return auditedTransaction(deps, caller, "credential.update", async (trx) => {
    const existing = await store.findCredentialById(trx, caller.tenantId, id);
    if (!existing) {
      throw new Refusal(notFound(`with id ${id}`), "not_found", { id });
    }
    if (change.name !== undefined && change.name !== existing.name) {
      if (await store.findCredentialByName(trx, caller.tenantId, change.name)) {
        throw new Refusal(nameTaken(change.name, "Choose another name, or delete that credential first."), "conflict", existing, `rename to ${change.name}`);
      }
    }
    const at = deps.clock.now().toISOString();
    const name = change.name ?? existing.name;
    let sealed: { sealedValue: Uint8Array; version: number; sealFormat: number } | undefined;
    if (change.value !== undefined || name !== existing.name) {
      // The name is bound into the sealed value: a rename re-seals it.
      const value = change.value ?? (await openForRename(deps, caller, trx, existing));
      const version = existing.version + 1;
      sealed = { version, sealFormat: SEAL_FORMAT, sealedValue: await deps.vault.sealForTenant(trx, caller.tenantId, sealContext({ id, version, name }), value) };
    }
    await store.updateCredential(trx, caller.tenantId, id, { name: change.name, ...sealed, updatedAt: at });
    if (sealed) forgetValue(deps, caller.tenantId, existing);
    const what = [change.value !== undefined && "value", change.name !== undefined && change.name !== existing.name && `renamed from ${existing.name}`]
      .filter(Boolean)
      .join(", ");
    await audit(trx, deps, caller, "credential.update", "success", { id, name: change.name ?? existing.name }, what || "unchanged");
    return { name: change.name ?? existing.name };
  });
}

/** The current value of a credential being renamed alone; a value that does not open refuses the rename. */
async function openForRename(deps: AppDeps, caller: Caller, trx: Db, existing: store.CredentialRow): Promise<string> {
  try {
    return await openStoredValue(deps, trx, caller.tenantId, storedValueOf(existing));
  } catch (error) {
    if (!(error instanceof IntegrityError)) throw error;
    const refusal = integrityFailure(deps, caller, existing, "Rename it together with a new value, or restore the database from a backup.");
    throw new Refusal(refusal, "integrity_failure", existing, "rename refused");
  }
}

/**
 * Deletes a credential unless a queued or running job holds a reference to
 * it. The check and the delete share one transaction under the tenant's lock,
 * which jobs/create and the runner's claim also hold while they write
 * references, so no job can start with a credential that is gone.
 */
export async function deleteCredential(deps: AppDeps, caller: Caller, id: string) {
  return auditedTransaction(deps, caller, "credential.delete", async (trx) => {
    const existing = await store.findCredentialById(trx, caller.tenantId, id);
    if (!existing) {
      throw new Refusal(notFound(`with id ${id}`), "not_found", { id });
    }
    const jobIds = await store.listReferencingJobIds(trx, caller.tenantId, id);
    if (jobIds.length > 0) {
      const jobs = jobIds.length === 1 ? "1 queued or running job" : `${jobIds.length} queued or running jobs`;
      const them = jobIds.length === 1 ? "it" : "them";
      const error = new AppError(
        "CONFLICT",
        `Credential "${existing.name}" is still used by ${jobs}. Wait for ${them} to end or cancel ${them} with /v1/jobs/cancel, then delete again.`,
        { data: { job_ids: jobIds } },
      );
      throw new Refusal(error, "conflict", existing, `${jobIds.length} referencing jobs`);
    }
    await store.deleteCredential(trx, caller.tenantId, id);
    forgetValue(deps, caller.tenantId, existing);
    await audit(trx, deps, caller, "credential.delete", "success", existing);
    return { name: existing.name };
  });
}
