import type { Clock, IdSource } from "../clock";
import { AppError } from "../errors";
import type { Logger } from "../log";
import { openProfile, ProfileUnusableError, saveRefreshedState, uploadProfileState } from "../profiles/service";
import { storageState, type StorageState } from "../profiles/state";
import type { Db } from "../store/database";
import type { Vault } from "../vault/vault";

/** A session's browser profile (sessions/create's profile_name): what it loads, and where its state goes back. */
export interface SessionProfile {
  name: string;
  /** Undefined when the profile does not exist yet (profile_persist makes it at close). */
  id: string | undefined;
  persist: boolean;
  state: StorageState | undefined;
}

/** How sessions reach the tenant's profiles (sealed in the database): given to BrowserSessions. */
export interface SessionProfiles {
  open(tenantId: string, sessionId: string, name: string, persist: boolean): Promise<SessionProfile>;
  /** Saves the browser's state as the profile's next version; failures are logged, never thrown. */
  save(tenantId: string, sessionId: string, profile: SessionProfile, state: StorageState): Promise<void>;
}

export function sessionProfiles(deps: { db: Db; vault: Vault; clock: Clock; newId: IdSource; log: Logger; maxBodyBytes: number }): SessionProfiles {
  return {
    async open(tenantId, sessionId, name, persist) {
      try {
        const opened = await openProfile(deps, tenantId, { session_id: sessionId }, name, {
          missing: `No cloud profile found for ${name}. Upload its state with /v1/browserProfiles/upload (or \`understudy profiles upload\`), or send profile_persist: true to start without one and save the session's state into it at close.`,
        });
        return { name, id: opened.id, persist, state: opened.state };
      } catch (error) {
        if (!(error instanceof ProfileUnusableError)) throw error;
        if (error.reason === "missing" && persist) return { name, id: undefined, persist, state: undefined };
        throw new AppError(error.reason === "missing" ? "NOT_FOUND" : "CONFLICT", error.message, { data: { profile_name: name } });
      }
    },
    async save(tenantId, sessionId, profile, state) {
      const fields = { session_id: sessionId, tenant_id: tenantId, profile: profile.name };
      try {
        const parsed = storageState.parse(state);
        if (profile.id !== undefined) {
          const saved = await saveRefreshedState(deps, tenantId, { session_id: sessionId }, profile.id, parsed, deps.maxBodyBytes);
          if ("skipped" in saved) deps.log.log("warn", "browser session profile not saved", { ...fields, reason: saved.skipped });
          else deps.log.log("info", "browser session profile saved", { ...fields, version: saved.version });
        } else {
          const saved = await uploadProfileState(deps, { tenantId, apiKeyId: null }, profile.name, parsed, deps.maxBodyBytes);
          deps.log.log("info", "browser session profile saved", { ...fields, version: saved.version });
        }
      } catch (error) {
        deps.log.log("warn", "browser session profile not saved", { ...fields, reason: error instanceof AppError ? error.message : "error" });
      }
    },
  };
}
