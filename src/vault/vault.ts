import { randomBytes } from "node:crypto";
import type { Clock } from "../clock";
import { FatalError } from "../errors";
import type { Db } from "../store/database";
import type { MasterKey } from "./master-key";
import { RecentValues } from "./recent";
import { deriveKey, open, openDeterministic, seal, sealDeterministic } from "./seal";
import * as store from "./store";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

const KEY_CHECK_PLAINTEXT = "understudy key check v1";
const KEY_CHECK_AD = "understudy/key-check/v1";
const tenantKeyAd = (tenantId: string) => `understudy/tenant-key/v1/${tenantId}`;
const CURSOR_KEY_PURPOSE = "understudy/list-cursors/v1";
const cursorAd = (tenantId: string, list: string) => `understudy/cursor/v1/${tenantId}/${list}`;

/** The master keys this process holds: the current one, and the previous one while rotating. */
export interface Keyring {
  readonly current: MasterKey;
  readonly previous?: MasterKey;
}

export interface VaultOptions {
  /** How long a value opened with `remember` is kept for reads that come again; 0 (the default) keeps none. */
  rememberOpenedMs?: number;
}

/** A sealed value that does not open where it is: tampered, copied from another row, or corrupt. */
export class IntegrityError extends Error {
  constructor() {
    super("sealed value failed its integrity check");
    this.name = "IntegrityError";
  }
}

/**
 * The vault cannot serve a tenant until the operator acts: its data key is
 * missing from the database, or another process rotated the master key
 * under this running server. `message` is for the server log,
 * `clientMessage` for the API client; neither holds a secret (key ids are
 * one-way fingerprints).
 */
export class VaultUnavailableError extends Error {
  constructor(
    readonly problem: "data_key_missing" | "master_key_rotated",
    message: string,
    readonly clientMessage: string,
  ) {
    super(message);
    this.name = "VaultUnavailableError";
  }
}

function dataKeyMissing(tenantId: string): VaultUnavailableError {
  return new VaultUnavailableError(
    "data_key_missing",
    `The data key of tenant ${tenantId} is missing: its row in the tenant_keys table was removed from the database, ` +
      "so the values stored for this tenant cannot be decrypted, and Understudy will not make it a new data key while they exist. " +
      "Restore the database from a backup (`understudy restore FILE`, server stopped).",
    "This tenant's data key is missing from the server's database, so its stored secrets cannot be decrypted or changed. " +
      "The server's operator must restore the database from a backup; nothing was changed.",
  );
}

/**
 * Master key -> per-tenant data keys (wrapped by the master key, stored) ->
 * values sealed with XChaCha20-Poly1305. The only module that touches ciphers.
 */
export class Vault {
  readonly #keyring: Keyring;
  readonly #clock: Clock;
  /** Unwrapped tenant data keys. Data keys never change, so this stays valid across a rotation. */
  readonly #dataKeys = new Map<string, Uint8Array>();
  /** Cursor keys by master key id. */
  readonly #cursorKeys = new Map<string, Uint8Array>();

  /** Values opened with `remember`, for reads that come again (see RecentValues). */
  readonly #recent: RecentValues;

  private constructor(keyring: Keyring, clock: Clock, options: VaultOptions) {
    this.#keyring = keyring;
    this.#clock = clock;
    this.#recent = new RecentValues(options.rememberOpenedMs ?? 0);
  }

  get keyId(): string {
    return this.#keyring.current.id;
  }

  /**
   * Checks that the keyring opens this database before anything else runs,
   * so a wrong key stops start-up instead of failing at the first read. A
   * database with sealed data but no key check is never given a new key.
   */
  static async open(db: Db, keyring: Keyring, clock: Clock, options: VaultOptions = {}): Promise<Vault> {
    const vault = new Vault(keyring, clock, options);
    let meta = await store.readVaultMeta(db);
    if (!meta) {
      if (await store.holdsSealedData(db)) {
        throw new FatalError(
          "This database holds encrypted data but no key check; Understudy will not assign it a new master key. " +
            "Restore the database from a backup.",
        );
      }
      await store.insertVaultMeta(db, keyring.current.id, vault.#sealKeyCheck(keyring.current), clock.now().toISOString());
      // Another instance starting at the same moment may have stored its own first: it is checked like any other.
      meta = await store.readVaultMeta(db);
      if (!meta) throw new Error("the vault_meta row is gone");
    }
    const key = vault.#keyById(meta.master_key_id);
    if (!key) {
      throw new FatalError(
        `The master key does not open this database: it expects master key ${meta.master_key_id}, ` +
          `but the key given is ${keyring.current.id}${keyring.previous ? ` (previous: ${keyring.previous.id})` : ""}. ` +
          "Set UNDERSTUDY_MASTER_KEY (or UNDERSTUDY_MASTER_KEY_FILE) to the key this database was created with.",
      );
    }
    if (!open(key.key, meta.key_check, KEY_CHECK_AD)) {
      throw new FatalError(
        `The key check of this database does not open with master key ${key.id}; the database is damaged. Restore it from a backup.`,
      );
    }
    // Unwrap every tenant's data key now: a key that cannot be unwrapped is a
    // start-up error, not a failure at some later read, and a rotation run by
    // another process cannot make a running server lose its keys.
    for (const row of await store.listTenantKeys(db)) vault.#unwrap(row);
    return vault;
  }

  /**
   * Seals a value for one tenant; `context` names where it will be stored
   * (e.g. credential id, version and name). A tenant's first seal makes its
   * data key. Throws VaultUnavailableError when that key is missing although
   * values of the tenant are stored, or when the master key was rotated away
   * from this process.
   */
  async sealForTenant(db: Db, tenantId: string, context: string, plaintext: string): Promise<Uint8Array> {
    const dataKey = await this.#dataKeyFor(db, tenantId, { create: true });
    return seal(dataKey, encoder.encode(plaintext), `${tenantId}/${context}`);
  }

  /**
   * Opens a value sealed by sealForTenant with the same tenant and context;
   * throws IntegrityError otherwise. With `remember`, the value is kept for a
   * while, and a later open of the very same bytes under the same tenant and
   * context returns it without the cipher (see RecentValues).
   */
  async openForTenant(db: Db, tenantId: string, context: string, sealed: Uint8Array, options?: { remember: boolean }): Promise<string> {
    const associatedData = `${tenantId}/${context}`;
    const remember = options?.remember === true;
    if (remember) {
      const recent = this.#recent.get(associatedData, sealed);
      if (recent !== undefined) return recent;
    }
    const dataKey = await this.#dataKeyFor(db, tenantId, { create: false });
    const plaintext = open(dataKey, sealed, associatedData);
    if (!plaintext) throw new IntegrityError();
    let value: string;
    try {
      value = decoder.decode(plaintext);
    } catch {
      throw new IntegrityError();
    }
    if (remember) this.#recent.set(associatedData, sealed, value);
    return value;
  }

  /** Forgets a remembered value at once: its credential was changed or deleted. */
  forgetOpened(tenantId: string, context: string): void {
    this.#recent.forget(`${tenantId}/${context}`);
  }

  /**
   * Seals a list cursor (a position in one of a tenant's lists) so that the
   * client can neither read it nor use it for another tenant or list. The key
   * is derived from the master key, so nothing is stored and no tenant key is
   * created by a read; deterministic, so a position always gives one cursor.
   */
  sealCursor(tenantId: string, list: string, position: Uint8Array): Uint8Array {
    return sealDeterministic(this.#cursorKey(this.#keyring.current), position, cursorAd(tenantId, list));
  }

  /** The position sealed by sealCursor for this tenant and list (under the current or the previous master key), else undefined. */
  openCursor(tenantId: string, list: string, sealed: Uint8Array): Uint8Array | undefined {
    const { current, previous } = this.#keyring;
    for (const key of previous ? [current, previous] : [current]) {
      const position = openDeterministic(this.#cursorKey(key), sealed, cursorAd(tenantId, list));
      if (position) return position;
    }
    return undefined;
  }

  #cursorKey(master: MasterKey): Uint8Array {
    let key = this.#cursorKeys.get(master.id);
    if (!key) {
      key = deriveKey(master.key, CURSOR_KEY_PURPOSE);
      this.#cursorKeys.set(master.id, key);
    }
    return key;
  }

  /**
   * Re-wraps every tenant data key still wrapped by the previous master key
   * with the current one, and moves the key check, in one transaction. Values
   * are not re-encrypted: their data keys do not change, so every value stays
   * readable before, during and after.
   */
  async rotate(db: Db): Promise<{ rewrapped: number; alreadyCurrent: number }> {
    const { current, previous } = this.#keyring;
    if (!previous) throw new FatalError("rotate-key needs UNDERSTUDY_MASTER_KEY_PREVIOUS (the old key) beside UNDERSTUDY_MASTER_KEY (the new one).");
    const at = this.#clock.now().toISOString();
    return db.transaction().execute(async (trx) => {
      // First, so that a running server cannot store a new tenant key wrapped
      // by the previous key after the list below was read (store.insertTenantKeyIfCurrent).
      await store.lockVaultMeta(trx);
      let rewrapped = 0;
      let alreadyCurrent = 0;
      for (const row of await store.listTenantKeys(trx)) {
        if (row.master_key_id === current.id) {
          alreadyCurrent++;
          continue;
        }
        const dataKey = this.#unwrap(row);
        await store.rewrapTenantKey(trx, row.tenant_id, current.id, seal(current.key, dataKey, tenantKeyAd(row.tenant_id)), at);
        rewrapped++;
      }
      const meta = await store.readVaultMeta(trx);
      if (meta && meta.master_key_id !== current.id) {
        await store.updateVaultMeta(trx, current.id, this.#sealKeyCheck(current), at);
      }
      return { rewrapped, alreadyCurrent };
    });
  }

  /**
   * Why this running server may not wrap new tenant keys, or undefined when
   * it may: another process (`rotate-key`) moved the database to a master
   * key this server does not hold. For /readyz.
   */
  async staleMasterKey(db: Db): Promise<VaultUnavailableError | undefined> {
    const meta = await store.readVaultMeta(db);
    if (!meta || this.#keyById(meta.master_key_id)) return undefined;
    return this.#rotatedAway(meta.master_key_id);
  }

  async #dataKeyFor(db: Db, tenantId: string, options: { create: boolean }): Promise<Uint8Array> {
    const cached = this.#dataKeys.get(tenantId);
    if (cached) return cached;
    let row = await store.findTenantKey(db, tenantId);
    // Two tries: a rotation (another process) may commit between reading
    // vault_meta and the insert, which then stores nothing; the second try
    // wraps with the key the rotation moved to, when this process holds it.
    for (let attempt = 1; !row; attempt++) {
      // Opening needs the key the value was sealed with; a new one cannot open it.
      if (!options.create || (await store.tenantHoldsSealedData(db, tenantId))) throw dataKeyMissing(tenantId);
      // Wrapped by the master key the database names as current (the one a
      // restart needs), never by one that a rotation has left behind.
      const meta = await store.readVaultMeta(db);
      if (!meta) throw new Error("the vault_meta row is gone");
      const wrapping = this.#keyById(meta.master_key_id);
      if (!wrapping) throw this.#rotatedAway(meta.master_key_id);
      const dataKey = new Uint8Array(randomBytes(32));
      const createdAt = this.#clock.now().toISOString();
      // Another writer (a transaction of this process, or another instance on
      // PostgreSQL) may be inserting this tenant's key at the same moment: the
      // insert then waits for it and does nothing, and the stored row, re-read,
      // is the one key everyone uses.
      if (await store.insertTenantKeyIfCurrent(db, tenantId, wrapping.id, seal(wrapping.key, dataKey, tenantKeyAd(tenantId)), createdAt)) {
        this.#madeHere.set(tenantId, { dataKey, createdAt });
        if (db.isTransaction) this.#uncommitted(db).add(tenantId);
      }
      row = await store.findTenantKey(db, tenantId);
      if (!row && attempt >= 2) throw (await this.staleMasterKey(db)) ?? new Error("tenant key vanished after insert");
    }
    // A key inserted by this transaction is not cached before it commits: were
    // the transaction rolled back, the cached key would seal later values with
    // a key that no row holds (and another writer would make the tenant a
    // different one). The next transaction reads it back, committed.
    const uncommitted = this.#uncommittedKeys.get(db)?.has(tenantId) ?? false;
    if (!this.#keyById(row.master_key_id)) {
      // Wrapped by a key this process lacks. When it is the key this process
      // made (a rotate-key since re-wrapped it; the row keeps its created_at),
      // this process still holds it, as it holds every key it had cached.
      const made = this.#madeHere.get(tenantId);
      if (made && made.createdAt === row.created_at) {
        if (!uncommitted) this.#dataKeys.set(tenantId, made.dataKey);
        return made.dataKey;
      }
      // Otherwise a server on the new key made it after a rotation.
      const stale = await this.staleMasterKey(db);
      if (stale) throw stale;
    }
    if (uncommitted) return this.#unwrapUncached(row);
    this.#madeHere.delete(tenantId);
    return this.#unwrap(row);
  }

  /** Tenant keys inserted by a transaction still open, by transaction. */
  readonly #uncommittedKeys = new WeakMap<Db, Set<string>>();
  /** The data keys this process made and has not yet read back committed, with the created_at of their row. */
  readonly #madeHere = new Map<string, { dataKey: Uint8Array; createdAt: string }>();

  #uncommitted(trx: Db): Set<string> {
    let tenants = this.#uncommittedKeys.get(trx);
    if (!tenants) this.#uncommittedKeys.set(trx, (tenants = new Set()));
    return tenants;
  }

  #rotatedAway(masterKeyId: string): VaultUnavailableError {
    return new VaultUnavailableError(
      "master_key_rotated",
      `The master key was rotated to ${masterKeyId} while this server runs on ${this.#keyring.current.id}: ` +
        "it will not wrap a new tenant data key with a key that is no longer current (a server restarted on the new key could not open it). " +
        "Restart this server with UNDERSTUDY_MASTER_KEY (or UNDERSTUDY_MASTER_KEY_FILE) set to the new key.",
      "The server's master key was rotated while it was running, so it cannot store secrets for a tenant that has none yet. " +
        "The server's operator must restart it with the new master key; nothing was changed. Try again after the restart.",
    );
  }

  #unwrap(row: { tenant_id: string; master_key_id: string; wrapped_key: Uint8Array }): Uint8Array {
    const cached = this.#dataKeys.get(row.tenant_id);
    if (cached) return cached;
    const dataKey = this.#unwrapUncached(row);
    this.#dataKeys.set(row.tenant_id, dataKey);
    return dataKey;
  }

  #unwrapUncached(row: { tenant_id: string; master_key_id: string; wrapped_key: Uint8Array }): Uint8Array {
    const key = this.#keyById(row.master_key_id);
    if (!key) {
      throw new FatalError(
        `A tenant data key is wrapped by master key ${row.master_key_id}, which this process does not have ` +
          `(current: ${this.#keyring.current.id}). Set UNDERSTUDY_MASTER_KEY_PREVIOUS to that key and run \`understudy rotate-key\`.`,
      );
    }
    const dataKey = open(key.key, row.wrapped_key, tenantKeyAd(row.tenant_id));
    if (!dataKey) {
      throw new FatalError(`The data key of tenant ${row.tenant_id} does not open with master key ${key.id}; the database is damaged.`);
    }
    return dataKey;
  }

  #keyById(id: string): MasterKey | undefined {
    const { current, previous } = this.#keyring;
    if (current.id === id) return current;
    if (previous?.id === id) return previous;
    return undefined;
  }

  #sealKeyCheck(key: MasterKey): Uint8Array {
    return seal(key.key, encoder.encode(KEY_CHECK_PLAINTEXT), KEY_CHECK_AD);
  }
}
