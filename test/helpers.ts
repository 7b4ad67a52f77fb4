import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock, randomId, type Clock } from "../src/clock";
import { loadConfig, type Config } from "../src/config";
import { createApp, apiRoutes } from "../src/http/app";
import type { AppDeps } from "../src/http/route";
import { memoryLogger } from "../src/log";
import { listen } from "../src/server/listen";
import { openStore } from "../src/server/start";
import type { Db } from "../src/store/database";
import { createApiKey, createTenant } from "../src/tenants/service";
import { generateMasterKey, toMasterKey } from "../src/vault/master-key";

export { apiRoutes };

export function tempDir(prefix = "understudy-test-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function newMasterKey(): { text: string; bytes: Uint8Array } {
  const text = generateMasterKey();
  return { text, bytes: new Uint8Array(Buffer.from(text, "base64")) };
}

export interface TestResponse {
  status: number;
  headers: Headers;
  /** The parsed JSON body (undefined when it was not JSON). */
  body: any;
  text: string;
}

export interface TestServer {
  url: string;
  db: Db;
  deps: AppDeps;
  dbPath: string;
  masterKey: string;
  /** API keys of two tenants, "alpha" and "beta". */
  keys: { alpha: string; beta: string };
  tenants: { alpha: string; beta: string };
  /** Every log line the server wrote (request log and errors). */
  logs: string[];
  /** POST a JSON body (object is stringified; a string is sent as is) with the given API key (default alpha's). */
  post(path: string, body?: unknown, options?: { key?: string | null; headers?: Record<string, string> }): Promise<TestResponse>;
  close(): Promise<void>;
}

/**
 * A real server over real HTTP on 127.0.0.1 with a fresh SQLite file, a fresh
 * master key, and two tenants with an API key each.
 */
export async function startTestServer(
  options: { env?: Record<string, string>; clock?: Clock; nowMs?: () => number } = {},
): Promise<TestServer> {
  const dir = tempDir();
  const dbPath = join(dir.path, "understudy.db");
  const master = newMasterKey();
  const config: Config = loadConfig({ UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0", ...options.env });
  const clock = options.clock ?? systemClock;
  const store = await openStore(config, dbPath, { current: toMasterKey(master.bytes) }, clock);
  const log = memoryLogger();
  const deps: AppDeps = { db: store.db, vault: store.vault, config, clock, newId: randomId, log, nowMs: options.nowMs };
  const app = createApp(deps);
  const server = await listen(app, { hostname: "127.0.0.1", port: 0, maxBodyBytes: config.maxBodyBytes });
  const alpha = await createTenant(store.db, clock, randomId, "alpha");
  const beta = await createTenant(store.db, clock, randomId, "beta");
  const keys = {
    alpha: (await createApiKey(store.db, clock, randomId, alpha.id)).key,
    beta: (await createApiKey(store.db, clock, randomId, beta.id)).key,
  };
  return {
    url: server.url,
    db: store.db,
    deps,
    dbPath,
    masterKey: master.text,
    keys,
    tenants: { alpha: alpha.id, beta: beta.id },
    logs: log.lines,
    async post(path, body = {}, opts = {}) {
      const key = opts.key === undefined ? keys.alpha : opts.key;
      const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
      if (key !== null) headers["x-api-key"] = key;
      const response = await fetch(server.url + path, {
        method: "POST",
        headers,
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: response.status, headers: response.headers, body: parsed, text };
    },
    async close() {
      await server.stop();
      await store.db.destroy();
      dir.remove();
    },
  };
}
