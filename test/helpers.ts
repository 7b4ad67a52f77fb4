import { Database as BunDatabase } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock, randomId, type Clock, type IdSource } from "../src/clock";
import { loadConfig, type Config } from "../src/config";
import { apiRoutes } from "../src/http/app";
import type { AppDeps, RunnerHandle } from "../src/http/route";
import { Runner } from "../src/runner/runner";
import type { WorkflowDefinition } from "../src/workflows/define";
import { WorkflowRegistry } from "../src/workflows/registry";
import { memoryLogger } from "../src/log";
import { openStore, startServer, type RunningServer } from "../src/server/start";
import type { Db } from "../src/store/database";
import { isPostgres } from "../src/store/postgres";
import { createApiKey, createTenant } from "../src/tenants/service";
import { generateMasterKey, toMasterKey } from "../src/vault/master-key";
import { freshSchema, onPostgres } from "./postgres";

export { apiRoutes };

/** A runner that runs nothing, for apps built without one. */
export const idleRunner: RunnerHandle = { wake() {}, cancel: () => false };

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
  /** The SQLite file (on the PostgreSQL run: unused, see databaseUrl). */
  dbPath: string;
  /** On the PostgreSQL run: the URL of this server's own schema. */
  databaseUrl: string | undefined;
  masterKey: string;
  runner: Runner;
  /** The running server (its workers: runner, deliveries, scheduler). */
  server: RunningServer;
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
  options: {
    env?: Record<string, string>;
    clock?: Clock;
    nowMs?: () => number;
    /** Workflows the server can run (default: none). */
    workflows?: WorkflowDefinition[];
    /** Don't start the runner: jobs stay queued (for tests of queued-job behaviour). */
    runnerPaused?: boolean;
    /** Don't start the server's scheduler timer (tests that drive a scheduler of their own). */
    schedulerPaused?: boolean;
    /** The server's id source (default: random UUIDv7s). */
    newId?: IdSource;
    /** The master key, base64 (default: a fresh one). */
    masterKey?: string;
  } = {},
): Promise<TestServer> {
  const dir = tempDir();
  const dbPath = join(dir.path, "understudy.db");
  // On the PostgreSQL run (test/postgres.ts), a fresh schema instead of a fresh file.
  const schema = onPostgres && options.env?.UNDERSTUDY_DATABASE_URL === undefined ? await freshSchema() : undefined;
  const master = options.masterKey
    ? { text: options.masterKey, bytes: new Uint8Array(Buffer.from(options.masterKey, "base64")) }
    : newMasterKey();
  // Workflows handed in as code (closures over the test's state) can only run
  // in this process; test/worker/ covers the worker processes with files.
  const config: Config = loadConfig({
    UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0",
    UNDERSTUDY_LISTEN: "127.0.0.1:0",
    UNDERSTUDY_WORKFLOW_ISOLATION: "none",
    ...(schema ? { UNDERSTUDY_DATABASE_URL: schema.url } : {}),
    ...options.env,
  });
  const clock = options.clock ?? systemClock;
  const store = await openStore(config, dbPath, { current: toMasterKey(master.bytes) }, clock);
  const log = memoryLogger();
  // The same wiring as `understudy serve`, on a free port, with workflows handed in.
  const server = await startServer(config, store, log, {
    workflowsDir: join(dir.path, "workflows"),
    workflows: WorkflowRegistry.fromDefinitions(options.workflows ?? [], log),
    clock,
    nowMs: options.nowMs,
    runnerPaused: options.runnerPaused,
    schedulerPaused: options.schedulerPaused,
    newId: options.newId,
  });
  const { deps, runner } = server;
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
    runner,
    server,
    keys,
    tenants: { alpha: alpha.id, beta: beta.id },
    logs: log.lines,
    async post(path, body = {}, opts = {}) {
      const key = opts.key === undefined ? keys.alpha : opts.key;
      const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
      if (key !== null) headers["x-api-key"] = key;
      return fetchParsed(server.url + path, "POST", headers, body);
    },
    databaseUrl: config.databaseUrl,
    async close() {
      await server.close();
      await schema?.drop();
      dir.remove();
    },
  };
}

// ---------------------------------------------------------------------------
// Generic helpers for the shared HTTP suites (test/http/*) and capability tests.

import { sql } from "kysely";

/** Any request: any method, a raw or JSON body (undefined sends none), the given API key (default alpha's; null sends none). */
export async function sendRequest(
  server: TestServer,
  method: string,
  path: string,
  options: { body?: unknown; key?: string | null; headers?: Record<string, string> } = {},
): Promise<TestResponse> {
  const key = options.key === undefined ? server.keys.alpha : options.key;
  const headers: Record<string, string> = { "content-type": "application/json", ...options.headers };
  if (key !== null) headers["x-api-key"] = key;
  return fetchParsed(server.url + path, method, headers, options.body);
}

/** Tables a rejected request must leave as they were. The audit log and api_keys.last_used_at legitimately change. */
const VOLATILE_TABLES = new Set(["audit_events", "api_keys", "kysely_migration", "kysely_migration_lock", "sqlite_sequence"]);

async function userTables(db: Db): Promise<string[]> {
  const rows = isPostgres(db)
    ? await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`.execute(db)
    : await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`.execute(db);
  return rows.rows.map((r) => r.name);
}

async function tableRows(db: Db, table: string, where?: { column: string; value: string }): Promise<Record<string, unknown>[]> {
  const query = where
    ? sql<Record<string, unknown>>`SELECT * FROM ${sql.table(table)} WHERE ${sql.ref(where.column)} = ${where.value}`
    : sql<Record<string, unknown>>`SELECT * FROM ${sql.table(table)}`;
  return (await query.execute(db)).rows;
}

/**
 * Every row of every table except the volatile ones, as comparable JSON, so a
 * test can assert that a rejected request changed nothing. Tables added by
 * later migrations are included automatically.
 */
export async function snapshotDb(db: Db): Promise<Record<string, unknown[]>> {
  const snapshot: Record<string, unknown[]> = {};
  for (const table of await userTables(db)) {
    if (VOLATILE_TABLES.has(table)) continue;
    snapshot[table] = sortRows((await tableRows(db, table)).map(comparableRow));
  }
  return snapshot;
}

/** Every row of one tenant (tables with a tenant_id column), so a test can assert another tenant's request changed none of them. */
export async function snapshotTenant(db: Db, tenantId: string): Promise<Record<string, unknown[]>> {
  const snapshot: Record<string, unknown[]> = {};
  for (const table of await userTables(db)) {
    if (VOLATILE_TABLES.has(table)) continue;
    const columns = isPostgres(db)
      ? await sql<{ name: string }>`SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ${table}`.execute(db)
      : await sql<{ name: string }>`SELECT name FROM pragma_table_info(${table})`.execute(db);
    const column = table === "tenants" ? "id" : "tenant_id";
    if (!columns.rows.some((c) => c.name === column)) continue;
    snapshot[table] = sortRows((await tableRows(db, table, { column, value: tenantId })).map(comparableRow));
  }
  return snapshot;
}

/** Every cell of every table (blobs as UTF-8, base64 and hex) joined into one string, to search for a value that must not be stored. */
export async function dumpDb(db: Db): Promise<string> {
  const parts: string[] = [];
  for (const table of await userTables(db)) {
    for (const row of await tableRows(db, table)) {
      for (const cell of Object.values(row)) {
        if (cell instanceof Uint8Array) {
          const bytes = Buffer.from(cell);
          parts.push(bytes.toString("utf8"), bytes.toString("base64"), bytes.toString("hex"));
        } else {
          parts.push(String(cell));
        }
      }
    }
  }
  return parts.join("\n");
}

function comparableRow(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, v instanceof Uint8Array ? `blob:${Buffer.from(v).toString("hex")}` : v]),
  );
}

function sortRows(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return rows.map((r) => [JSON.stringify(r), r] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
}

/** The forms in which a secret could leak: as is, base64, base64url and hex. */
export function secretForms(secret: string): string[] {
  const bytes = Buffer.from(secret, "utf8");
  return [secret, bytes.toString("base64"), bytes.toString("base64url"), bytes.toString("hex")];
}

/** A name unique within this process, for tests that must not collide. */
let uniqueCounter = 0;
export function uniqueName(prefix = "cred"): string {
  uniqueCounter += 1;
  return `${prefix}_${uniqueCounter}_${Math.random().toString(36).slice(2, 8)}`;
}

/** A further tenant with one API key, for tests that need a tenant no other test has written to. */
export async function addTenant(server: TestServer, name: string): Promise<{ tenantId: string; key: string; apiKeyId: string }> {
  const tenant = await createTenant(server.db, server.deps.clock, server.deps.newId, name);
  const { key, info } = await createApiKey(server.db, server.deps.clock, server.deps.newId, tenant.id);
  return { tenantId: tenant.id, key, apiKeyId: info.id };
}

/** A further API key of an existing tenant (e.g. one a test then revokes). */
export async function addApiKey(server: TestServer, tenantId: string): Promise<{ key: string; apiKeyId: string }> {
  const { key, info } = await createApiKey(server.db, server.deps.clock, server.deps.newId, tenantId);
  return { key, apiKeyId: info.id };
}

/** A clock tests move by hand. */
export function manualClock(start = "2026-01-02T03:04:05.678Z"): Clock & { advance(ms: number): void; iso(): string } {
  let now = Date.parse(start);
  return {
    now: () => new Date(now),
    advance: (ms) => void (now += ms),
    iso: () => new Date(now).toISOString(),
  };
}

/**
 * The real server (the wiring of `understudy serve`, handlers in-process) on
 * a database file the test made or damaged, over real HTTP on 127.0.0.1.
 * For tests that stop and start a server on the same file quickly.
 */
export async function serveDatabaseFile(
  dbPath: string,
  masterKey: Uint8Array,
  options: { workflows?: WorkflowDefinition[] } = {},
): Promise<{ url: string; db: Db; logs: string[]; post(path: string, key: string, body: unknown): Promise<TestResponse>; close(): Promise<void> }> {
  const config = loadConfig({ UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0", UNDERSTUDY_LISTEN: "127.0.0.1:0", UNDERSTUDY_WORKFLOW_ISOLATION: "none" });
  const store = await openStore(config, dbPath, { current: toMasterKey(masterKey) });
  const log = memoryLogger();
  const server = await startServer(config, store, log, { workflowsDir: join(dbPath, "..", "workflows"), workflows: WorkflowRegistry.fromDefinitions(options.workflows ?? [], log) });
  return {
    url: server.url,
    db: store.db,
    logs: log.lines,
    post: (path, key, body) => fetchParsed(server.url + path, "POST", { "content-type": "application/json", "x-api-key": key }, body),
    close: () => server.close(),
  };
}

/** Asserts that no form of any secret (secretForms) is in `text`, without echoing a secret on failure. */
export function expectNoSecretIn(text: string, secrets: readonly string[]): void {
  for (const [i, secret] of secrets.entries()) {
    for (const form of secretForms(secret)) {
      if (text.includes(form)) throw new Error(`secret #${i} (in one of its forms) appears in the text checked`);
    }
  }
}

/** Edits a database file with SQLite itself, as an operator's `sqlite3` would (its server stopped), in one transaction. */
export function editDatabaseFile(dbPath: string, statements: readonly string[]): void {
  const raw = new BunDatabase(dbPath);
  try {
    raw.transaction(() => {
      for (const statement of statements) raw.run(statement);
    })();
  } finally {
    raw.close();
  }
}

/** A request with `body` (JSON unless already a string; undefined sends none); the answer's body parsed when it is JSON. */
async function fetchParsed(url: string, method: string, headers: Record<string, string>, body: unknown): Promise<TestResponse> {
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}
