import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { systemClock, randomId } from "../clock";
import { FatalError } from "../errors";
import type { Caller } from "../app-deps";
import type { Db } from "../store/database";
import { createApiKey, createTenant, hashApiKey } from "../tenants/service";
import { findApiKeyByHash, findTenantByName } from "../tenants/store";
import { decodeMasterKey, generateMasterKey } from "../vault/master-key";

export const DEV_DIR = ".understudy";
export const DEV_TENANT = "dev";

export interface DevPaths {
  dir: string;
  db: string;
  masterKey: string;
  apiKey: string;
}

export function devPaths(cwd: string, dbOverride?: string): DevPaths {
  const dir = join(cwd, DEV_DIR);
  return { dir, db: dbOverride ?? join(dir, "understudy.db"), masterKey: join(dir, "master.key"), apiKey: join(dir, "dev-api-key") };
}

function writeSecretFile(path: string, text: string) {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/**
 * The dev master key: generated into .understudy/master.key only when no
 * database exists yet. A database without its key is refused, never re-keyed.
 */
export function devMasterKey(paths: DevPaths, fromEnv: Uint8Array | undefined): { key: Uint8Array; generated: boolean } {
  if (fromEnv) return { key: fromEnv, generated: false };
  if (existsSync(paths.masterKey)) {
    const decoded = decodeMasterKey(readFileSync(paths.masterKey, "utf8"));
    if (!decoded.ok) throw new FatalError(`${paths.masterKey} ${decoded.problem}. Restore the key file; Understudy will not re-key a database.`);
    return { key: decoded.key, generated: false };
  }
  if (existsSync(paths.db)) {
    throw new FatalError(
      `${paths.db} exists but its master key ${paths.masterKey} is missing. Understudy will not give a database a new key: ` +
        `restore the key file (or set UNDERSTUDY_MASTER_KEY), or move the database away to start afresh.`,
    );
  }
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const text = generateMasterKey();
  writeSecretFile(paths.masterKey, `${text}\n`);
  return { key: new Uint8Array(Buffer.from(text, "base64")), generated: true };
}

/**
 * Makes sure the dev tenant exists and .understudy/dev-api-key holds a
 * working key; returns a new key only when it made one, and the key's caller
 * (for the dashboard's one-time sign-in link).
 */
export async function ensureDevTenant(db: Db, paths: DevPaths): Promise<{ newKey: string | undefined; caller: Caller }> {
  const tenant = (await findTenantByName(db, DEV_TENANT)) ?? (await createTenant(db, systemClock, randomId, DEV_TENANT));
  if (existsSync(paths.apiKey)) {
    const saved = readFileSync(paths.apiKey, "utf8").trim();
    const row = saved ? await findApiKeyByHash(db, hashApiKey(saved)) : undefined;
    if (row && !row.revoked_at && row.tenant_id === tenant.id) return { newKey: undefined, caller: { tenantId: tenant.id, apiKeyId: row.id } };
  }
  const { key, info } = await createApiKey(db, systemClock, randomId, tenant.id, "dev");
  writeSecretFile(paths.apiKey, `${key}\n`);
  return { newKey: key, caller: { tenantId: tenant.id, apiKeyId: info.id } };
}

export function devBanner(options: {
  version: string;
  url: string;
  cwd: string;
  paths: DevPaths;
  keyId: string;
  newKey: string | undefined;
  generatedKey: boolean;
  workflowsDir: string;
  workflows: { ready: number; failed: number };
  /** How handlers run, in a few words (RunningServer.isolation). */
  isolation: string;
  /** PostgreSQL, described without its password (else the SQLite file of paths.db). */
  database?: string;
  /** The dashboard's one-time sign-in link for the dev tenant. */
  signInLink?: string;
}): string {
  const rel = (p: string) => {
    const r = relative(options.cwd, p);
    return r === "" || r.startsWith("..") ? p : r;
  };
  const keyFile = rel(options.paths.apiKey);
  const lines = [
    `${options.version}: development mode`,
    `  listening    ${options.url}`,
    `  database     ${options.database ?? rel(options.paths.db)}`,
    `  master key   ${options.keyId}${options.generatedKey ? ` (new, saved in ${rel(options.paths.masterKey)})` : ""}`,
    `  tenant       ${DEV_TENANT}`,
    `  workflows    ${rel(options.workflowsDir)}: ${options.workflows.ready} ready${options.workflows.failed ? `, ${options.workflows.failed} failed` : ""}` +
      (options.workflows.ready + options.workflows.failed === 0 ? " (try UNDERSTUDY_WORKFLOWS_DIR=examples/workflows)" : " (reloaded on change)"),
    `  handlers     ${options.isolation}`,
    options.newKey
      ? `  API key      ${options.newKey}\n               (shown once; saved in ${keyFile})`
      : `  API key      in ${keyFile}`,
    `  dashboard    ${options.url}/ui/`,
    ...(options.signInLink ? [`               one-time sign-in link (15 min): ${options.signInLink}`] : []),
    "",
    "Try it:",
    `  curl -s ${options.url}/v1/credentials/upsert -H "x-api-key: $(cat ${keyFile})" \\`,
    `       -H 'content-type: application/json' -d '{"name":"password","value":"s3cret"}'`,
    "",
    "Point the libretto CLI at it:",
    `  export LIBRETTO_API_URL=${options.url} LIBRETTO_API_KEY=$(cat ${keyFile})`,
    "",
  ];
  return lines.join("\n");
}
