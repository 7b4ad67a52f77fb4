import type { Db } from "../store/database";

export async function readVaultMeta(db: Db) {
  return db.selectFrom("vault_meta").selectAll().where("id", "=", 1).executeTakeFirst();
}

export async function insertVaultMeta(db: Db, masterKeyId: string, keyCheck: Uint8Array, at: string) {
  await db
    .insertInto("vault_meta")
    .values({ id: 1, master_key_id: masterKeyId, key_check: keyCheck, created_at: at, rotated_at: null })
    .execute();
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

export async function insertTenantKey(db: Db, tenantId: string, masterKeyId: string, wrapped: Uint8Array, at: string) {
  await db
    .insertInto("tenant_keys")
    .values({ tenant_id: tenantId, master_key_id: masterKeyId, wrapped_key: wrapped, created_at: at, rotated_at: null })
    .onConflict((oc) => oc.column("tenant_id").doNothing())
    .execute();
}

export async function rewrapTenantKey(db: Db, tenantId: string, masterKeyId: string, wrapped: Uint8Array, at: string) {
  await db
    .updateTable("tenant_keys")
    .set({ master_key_id: masterKeyId, wrapped_key: wrapped, rotated_at: at })
    .where("tenant_id", "=", tenantId)
    .execute();
}
