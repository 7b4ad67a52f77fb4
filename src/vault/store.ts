import { sql } from "kysely";
import type { Db } from "../store/database";
import { isPostgres } from "../store/postgres";

export async function readVaultMeta(db: Db) {
  return db.selectFrom("vault_meta").selectAll().where("id", "=", 1).executeTakeFirst();
}

export async function insertVaultMeta(db: Db, masterKeyId: string, keyCheck: Uint8Array, at: string) {
  await db
    .insertInto("vault_meta")
    .values({ id: 1, master_key_id: masterKeyId, key_check: keyCheck, created_at: at, rotated_at: null })
    // Several instances starting together on a new PostgreSQL database: one row wins, the others check against it.
    .onConflict((oc) => oc.column("id").doNothing())
    .execute();
}

/**
 * Holds the vault_meta row until the transaction ends (PostgreSQL), so that no
 * new tenant key can be stored meanwhile with the master key being rotated
 * away (insertTenantKeyIfCurrent waits for it). A no-op on SQLite, where the
 * rotation's write transaction already excludes every other writer.
 */
export async function lockVaultMeta(db: Db) {
  if (isPostgres(db)) await db.selectFrom("vault_meta").select("id").where("id", "=", 1).forUpdate().execute();
}

export async function updateVaultMeta(db: Db, masterKeyId: string, keyCheck: Uint8Array, at: string) {
  await db
    .updateTable("vault_meta")
    .set({ master_key_id: masterKeyId, key_check: keyCheck, rotated_at: at })
    .where("id", "=", 1)
    .execute();
}

/** True when the database holds anything sealed: such a database must never get a new key. */
export async function holdsSealedData(db: Db): Promise<boolean> {
  const keys = await db.selectFrom("tenant_keys").select("tenant_id").limit(1).executeTakeFirst();
  const values = await db.selectFrom("credentials").select("id").limit(1).executeTakeFirst();
  return keys !== undefined || values !== undefined;
}

export async function listTenantKeys(db: Db) {
  return db.selectFrom("tenant_keys").selectAll().execute();
}

export async function findTenantKey(db: Db, tenantId: string) {
  return db.selectFrom("tenant_keys").selectAll().where("tenant_id", "=", tenantId).executeTakeFirst();
}

/**
 * Stores a tenant's new data key only while `masterKeyId` is still the
 * database's current master key: the check and the insert are one statement,
 * so a rotation committed by another process in between cannot leave a key
 * wrapped by the old master key behind it. True when this call inserted it
 * (false: another writer's key is there, or the master key moved on).
 */
export async function insertTenantKeyIfCurrent(db: Db, tenantId: string, masterKeyId: string, wrapped: Uint8Array, at: string): Promise<boolean> {
  const current = db
    .selectFrom("vault_meta")
    .select([sql<string>`${tenantId}`.as("tenant_id"), "master_key_id", sql<Uint8Array>`${wrapped}`.as("wrapped_key"), sql<string>`${at}`.as("created_at"), sql<null>`NULL`.as("rotated_at")])
    .where("id", "=", 1)
    .where("master_key_id", "=", masterKeyId);
  const result = await db
    .insertInto("tenant_keys")
    .columns(["tenant_id", "master_key_id", "wrapped_key", "created_at", "rotated_at"])
    // On PostgreSQL a plain read of vault_meta does not wait for a rotation
    // in progress (READ COMMITTED): the insert would commit the old wrap
    // behind the rotation's back. FOR SHARE waits for a rotation holding the
    // row (lockVaultMeta) and then re-checks the committed master key id, and
    // a rotation that starts later waits until this key is committed, so it
    // re-wraps it. SQLite serializes writers anyway.
    .expression(isPostgres(db) ? current.forShare() : current)
    .onConflict((oc) => oc.column("tenant_id").doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
}

/**
 * Whether anything sealed for this tenant is stored: such a tenant must never
 * get a new data key (its values would become unreadable for good).
 */
export async function tenantHoldsSealedData(db: Db, tenantId: string): Promise<boolean> {
  const found = await db
    .selectFrom("credentials")
    .select(sql<number>`1`.as("found"))
    .where("tenant_id", "=", tenantId)
    .unionAll(db.selectFrom("webhook_endpoints").select(sql<number>`1`.as("found")).where("tenant_id", "=", tenantId))
    .unionAll(
      db
        .selectFrom("jobs")
        .select(sql<number>`1`.as("found"))
        .where("tenant_id", "=", tenantId)
        .where((eb) => eb.or([eb("sealed_params_credentials", "is not", null), eb("sealed_callback_secret", "is not", null)])),
    )
    .unionAll(
      db.selectFrom("browser_profiles").select(sql<number>`1`.as("found")).where("tenant_id", "=", tenantId).where("sealed_state", "is not", null),
    )
    .unionAll(
      db
        .selectFrom("schedules")
        .select(sql<number>`1`.as("found"))
        .where("tenant_id", "=", tenantId)
        .where((eb) => eb.or([eb("sealed_params_credentials", "is not", null), eb("sealed_callback_secret", "is not", null)])),
    )
    .limit(1)
    .executeTakeFirst();
  return found !== undefined;
}

export async function rewrapTenantKey(db: Db, tenantId: string, masterKeyId: string, wrapped: Uint8Array, at: string) {
  await db
    .updateTable("tenant_keys")
    .set({ master_key_id: masterKeyId, wrapped_key: wrapped, rotated_at: at })
    .where("tenant_id", "=", tenantId)
    .execute();
}
