import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { recordAuditEventSoon } from "../audit/store";
import type { AppDeps, Caller } from "../app-deps";
import type { Db } from "../store/database";
import { hashApiKey } from "../tenants/service";
import { findApiKeyByHash } from "../tenants/store";

/** A dashboard session lasts this long from sign-in; then the person signs in again. */
export const SESSION_TTL_MS = 8 * 60 * 60 * 1000;
/** A one-time sign-in link (the dev banner's) works once, within this time. */
export const LINK_TTL_MS = 15 * 60 * 1000;

export interface DashboardSession extends Caller {
  /** The tenant's name, for the page's frame. */
  tenantName: string;
  /** The session's row id (never its token). */
  sessionId: string;
  expiresAt: string;
  /** The token every form and every state-changing request must carry. */
  csrfToken: string;
}

const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/**
 * The CSRF token is derived from the session's token (which only the
 * HttpOnly cookie holds), so it needs no storage and cannot be guessed
 * without the cookie.
 */
const csrfFor = (token: string) => createHmac("sha256", token).update("understudy dashboard csrf").digest("base64url");

export function csrfMatches(session: DashboardSession, presented: string | undefined | null): boolean {
  if (!presented) return false;
  const a = Buffer.from(session.csrfToken);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

async function insertRow(deps: AppDeps, caller: Caller, kind: "session" | "link", ttlMs: number): Promise<{ token: string; expiresAt: string }> {
  const token = randomBytes(32).toString("base64url");
  const now = deps.clock.now();
  const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
  await deps.db
    .insertInto("dashboard_sessions")
    .values({ id: deps.newId(), token_hash: hashToken(token), kind, tenant_id: caller.tenantId, api_key_id: caller.apiKeyId, created_at: now.toISOString(), expires_at: expiresAt })
    .execute();
  return { token, expiresAt };
}

/** Exchanges a tenant API key for a session token; undefined for a missing, unknown or revoked key (audited like the API's refusals). */
export async function signInWithKey(deps: AppDeps, presented: string): Promise<{ token: string; expiresAt: string } | undefined> {
  const key = presented.trim();
  const row = key ? await findApiKeyByHash(deps.db, hashApiKey(key)) : undefined;
  const at = deps.clock.now().toISOString();
  if (!row || row.revoked_at) {
    recordAuditEventSoon(deps.db, {
      at,
      tenantId: row?.tenant_id ?? null,
      apiKeyId: row?.id ?? null,
      action: "api_key.rejected",
      outcome: "rejected",
      detail: `dashboard sign-in: ${!key ? "missing" : row ? "revoked" : "unknown"}`,
    });
    return undefined;
  }
  const caller = { tenantId: row.tenant_id, apiKeyId: row.id };
  const session = await insertRow(deps, caller, "session", SESSION_TTL_MS);
  recordAuditEventSoon(deps.db, { at, tenantId: caller.tenantId, apiKeyId: caller.apiKeyId, action: "dashboard.sign_in", outcome: "success" });
  return session;
}

/** A one-time sign-in link's token for this key's tenant (for the dev banner). */
export function createSignInLink(deps: AppDeps, caller: Caller): Promise<{ token: string; expiresAt: string }> {
  return insertRow(deps, caller, "link", LINK_TTL_MS);
}

/** Spends a one-time link: the link row is gone whatever happens next; a session token when it was valid. */
export async function signInWithLink(deps: AppDeps, linkToken: string): Promise<{ token: string; expiresAt: string } | undefined> {
  const now = deps.clock.now().toISOString();
  const link = await deps.db
    .deleteFrom("dashboard_sessions")
    .where("token_hash", "=", hashToken(linkToken))
    .where("kind", "=", "link")
    .returning(["tenant_id", "api_key_id", "expires_at"])
    .executeTakeFirst();
  if (!link || link.expires_at <= now) return undefined;
  const key = await deps.db.selectFrom("api_keys").select("revoked_at").where("id", "=", link.api_key_id).executeTakeFirst();
  if (!key || key.revoked_at) return undefined;
  const caller = { tenantId: link.tenant_id, apiKeyId: link.api_key_id };
  const session = await insertRow(deps, caller, "session", SESSION_TTL_MS);
  recordAuditEventSoon(deps.db, { at: now, tenantId: caller.tenantId, apiKeyId: caller.apiKeyId, action: "dashboard.sign_in", outcome: "success", detail: "one-time link" });
  return session;
}

/** The live session a cookie's token names: not expired, and its API key not revoked. */
export async function findSession(deps: AppDeps, token: string | undefined): Promise<DashboardSession | undefined> {
  if (!token || token.length > 100) return undefined;
  const now = deps.clock.now().toISOString();
  const row = await deps.db
    .selectFrom("dashboard_sessions as s")
    .innerJoin("api_keys as k", "k.id", "s.api_key_id")
    .innerJoin("tenants as t", "t.id", "s.tenant_id")
    .select(["s.id", "s.tenant_id", "s.api_key_id", "s.expires_at", "t.name"])
    .where("s.token_hash", "=", hashToken(token))
    .where("s.kind", "=", "session")
    .where("s.expires_at", ">", now)
    .where("k.revoked_at", "is", null)
    .executeTakeFirst();
  if (!row) return undefined;
  return { sessionId: row.id, tenantId: row.tenant_id, tenantName: row.name, apiKeyId: row.api_key_id, expiresAt: row.expires_at, csrfToken: csrfFor(token) };
}

/** Signs out: the session row is deleted, so the cookie is worthless from now on. */
export async function endSession(deps: AppDeps, session: DashboardSession): Promise<void> {
  await deps.db.deleteFrom("dashboard_sessions").where("id", "=", session.sessionId).execute();
  recordAuditEventSoon(deps.db, {
    at: deps.clock.now().toISOString(),
    tenantId: session.tenantId,
    apiKeyId: session.apiKeyId,
    action: "dashboard.sign_out",
    outcome: "success",
  });
}

/** Drops expired sessions and links (the pruner runs it; an expired row is refused anyway). */
export async function pruneSessions(db: Db, now: string): Promise<void> {
  await db.deleteFrom("dashboard_sessions").where("expires_at", "<=", now).execute();
}
