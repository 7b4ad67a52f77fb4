import { insertionOrder } from "../store/dialect";
import { PreparedQuery } from "../store/prepared";
import { readerOf, type Db } from "../store/database";
import { Batcher } from "../store/batcher";

export interface Tenant {
  id: string;
  name: string;
  createdAt: string;
}

export interface ApiKeyInfo {
  id: string;
  tenantId: string;
  name: string | null;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

const toTenant = (r: { id: string; name: string; created_at: string }): Tenant => ({
  id: r.id,
  name: r.name,
  createdAt: r.created_at,
});

/** False when a tenant of this name exists (made meanwhile by another process, say): names are unique. */
export async function insertTenant(db: Db, tenant: Tenant): Promise<boolean> {
  const result = await db
    .insertInto("tenants")
    .values({ id: tenant.id, name: tenant.name, created_at: tenant.createdAt })
    .onConflict((oc) => oc.column("name").doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function findTenantByName(db: Db, name: string): Promise<Tenant | undefined> {
  const row = await db.selectFrom("tenants").selectAll().where("name", "=", name).executeTakeFirst();
  return row && toTenant(row);
}

export async function listTenants(db: Db): Promise<Tenant[]> {
  return (await db.selectFrom("tenants").selectAll().orderBy("name").execute()).map(toTenant);
}

export async function insertApiKey(
  db: Db,
  key: { id: string; tenantId: string; name: string | null; prefix: string; keyHash: string; createdAt: string },
): Promise<void> {
  await db
    .insertInto("api_keys")
    .values({
      id: key.id,
      tenant_id: key.tenantId,
      name: key.name,
      prefix: key.prefix,
      key_hash: key.keyHash,
      created_at: key.createdAt,
      last_used_at: null,
      revoked_at: null,
    })
    .execute();
}

type ApiKeyLookup = { id: string; tenant_id: string; revoked_at: string | null; last_used_at: string | null };

const apiKeyByHash = new PreparedQuery<{ keyHash: string }, ApiKeyLookup>((db, slot) =>
  db.selectFrom("api_keys").select(["id", "tenant_id", "revoked_at", "last_used_at"]).where("key_hash", "=", slot("keyHash")),
);

/** On the path of every request: read through the read connection when there is one. */
export async function findApiKeyByHash(db: Db, keyHash: string): Promise<ApiKeyLookup | undefined> {
  if (readerOf(db)) return apiKeyByHash.readFirst(db, { keyHash });
  let lookups = keyLookups.get(db);
  if (!lookups) {
    // Requests that arrive together share one query (a round trip each is most of a request's cost on PostgreSQL).
    lookups = new Batcher<string, ApiKeyLookup | undefined>(async (hashes) => {
      const rows = await db.selectFrom("api_keys").select(["id", "tenant_id", "revoked_at", "last_used_at", "key_hash"]).where("key_hash", "in", [...new Set(hashes)]).execute();
      const byHash = new Map(rows.map(({ key_hash, ...row }) => [key_hash, row]));
      return hashes.map((hash) => byHash.get(hash));
    });
    keyLookups.set(db, lookups);
  }
  return lookups.submit(keyHash);
}

const keyLookups = new WeakMap<Db, Batcher<string, ApiKeyLookup | undefined>>();

export async function listApiKeys(db: Db, tenantId: string): Promise<ApiKeyInfo[]> {
  const rows = await db.selectFrom("api_keys").selectAll().where("tenant_id", "=", tenantId).orderBy("created_at").orderBy(insertionOrder(db)).execute();
  return rows.map((r) => ({
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    prefix: r.prefix,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
  }));
}

/** Revoking twice keeps the first time, also when two revokes race (the update is the check). */
export async function revokeApiKey(db: Db, id: string, at: string): Promise<"revoked" | "already" | "missing"> {
  const result = await db.updateTable("api_keys").set({ revoked_at: at }).where("id", "=", id).where("revoked_at", "is", null).executeTakeFirst();
  if (Number(result.numUpdatedRows) > 0) return "revoked";
  const row = await db.selectFrom("api_keys").select("id").where("id", "=", id).executeTakeFirst();
  return row ? "already" : "missing";
}

export async function touchApiKey(db: Db, id: string, at: string): Promise<void> {
  await db.updateTable("api_keys").set({ last_used_at: at }).where("id", "=", id).execute();
}
