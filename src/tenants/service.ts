import { createHash, randomBytes } from "node:crypto";
import type { Clock, IdSource } from "../clock";
import type { Db } from "../store/database";
import * as store from "./store";

export const TENANT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const API_KEY_PREFIX = "usk_";

export class TenantError extends Error {}

/** API keys are stored only as this hash; the key itself is shown once. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

export async function createTenant(db: Db, clock: Clock, newId: IdSource, rawName: string): Promise<store.Tenant> {
  const name = rawName.trim().toLowerCase();
  if (!TENANT_NAME.test(name)) {
    throw new TenantError(`Tenant name "${rawName}" is not valid: use 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit.`);
  }
  const tenant = { id: newId(), name, createdAt: clock.now().toISOString() };
  if (!(await store.insertTenant(db, tenant))) throw new TenantError(`A tenant named "${name}" already exists.`);
  return tenant;
}

export async function requireTenant(db: Db, name: string): Promise<store.Tenant> {
  const tenant = await store.findTenantByName(db, name.trim().toLowerCase());
  if (!tenant) throw new TenantError(`No tenant named "${name}". List them with \`understudy tenants list\`.`);
  return tenant;
}

/** Creates an API key for a tenant. The returned `key` is the only time it exists in clear. */
export async function createApiKey(
  db: Db,
  clock: Clock,
  newId: IdSource,
  tenantId: string,
  name: string | null = null,
): Promise<{ key: string; info: store.ApiKeyInfo }> {
  const key = API_KEY_PREFIX + randomBytes(32).toString("base64url");
  const info: store.ApiKeyInfo = {
    id: newId(),
    tenantId,
    name,
    prefix: key.slice(0, API_KEY_PREFIX.length + 8),
    createdAt: clock.now().toISOString(),
    lastUsedAt: null,
    revokedAt: null,
  };
  await store.insertApiKey(db, { ...info, keyHash: hashApiKey(key) });
  return { key, info };
}
