import { BrowserSessions } from "../../src/sessions/service";
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { flushAuditEvents } from "../../src/audit/store";
import { systemClock, randomId } from "../../src/clock";
import { loadConfig } from "../../src/config";
import { createApp } from "../../src/http/app";
import { silentLogger } from "../../src/log";
import { openStore } from "../../src/server/start";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { toMasterKey } from "../../src/vault/master-key";
import { DEFAULT_ARCHIVE_LIMITS } from "../../src/deployments/archive";
import { Deployments } from "../../src/deployments/service";
import { WorkflowCatalog } from "../../src/workflows/catalog";
import { WorkflowRegistry } from "../../src/workflows/registry";
import { dumpDb, idleRunner, newMasterKey, secretForms, startTestServer, tempDir, type TestServer } from "../helpers";
import { onPostgres, testDatabaseUrl } from "../postgres";

const config = loadConfig({ UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0" });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(): Promise<TestServer> {
  const s = await startTestServer();
  cleanups.push(() => s.close());
  return s;
}

/** Every byte SQLite keeps for this database: the file, its WAL and shared memory. */
function rawDatabaseBytes(dbPath: string): Buffer {
  return Buffer.concat(
    [dbPath, `${dbPath}-wal`, `${dbPath}-shm`].filter((p) => existsSync(p)).map((p) => readFileSync(p)),
  );
}

/** An in-process app on a database file, for restart tests: open, use, close, reopen. */
async function appOn(dbPath: string, key: Uint8Array, previous?: Uint8Array) {
  const store = await openStore(config, dbPath, { current: toMasterKey(key), previous: previous && toMasterKey(previous) });
  const workflows = WorkflowRegistry.fromDefinitions([], silentLogger);
  const deploymentsDir = join(dirname(dbPath), "deployments");
  const app = createApp({
    db: store.db,
    vault: store.vault,
    config,
    clock: systemClock,
    newId: randomId,
    log: silentLogger,
    workflows,
    catalog: new WorkflowCatalog(workflows, deploymentsDir),
    deployments: new Deployments({
      db: store.db,
      clock: systemClock,
      newId: randomId,
      log: silentLogger,
      dir: deploymentsDir,
      limits: DEFAULT_ARCHIVE_LIMITS,
      buildLeaseMs: 60_000,
      discover: async () => [],
    }),
    runner: idleRunner,
    jobEndHooks: [],
    webhooks: { allowPrivate: false, wake() {} },
    sessions: new BrowserSessions({
      limits: config.sessions,
      chromiumPath: undefined,
      wrap: (command) => [...command],
      websockets: false,
      clock: systemClock,
      newId: randomId,
      log: silentLogger,
    }),
  });
  const call = async (path: string, apiKey: string, body: unknown) => {
    const response = await app.request(path, { method: "POST", headers: { "x-api-key": apiKey }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as any };
  };
  return { store, call, close: () => store.db.destroy() };
}

describe("encryption at rest", () => {
  test.skipIf(onPostgres)("the raw database file never contains a stored value, in any form", async () => {
    const s = await server();
    const values = ["correct-horse-battery-staple-7731", "pässwörd-ünïcode-✓-9921", "x".repeat(3000) + "tail-4412"];
    for (const [i, value] of values.entries()) {
      expect((await s.post("/v1/credentials/upsert", { name: `secret_${i}`, value })).status).toBe(200);
    }
    // Overwrite one: the old value must not linger either.
    await s.post("/v1/credentials/upsert", { name: "secret_0", value: "second-value-5512" });
    const raw = rawDatabaseBytes(s.dbPath);
    expect(raw.length).toBeGreaterThan(0);
    for (const value of [...values, "second-value-5512"]) {
      for (const form of [value, Buffer.from(value).toString("base64"), Buffer.from(value).toString("hex")]) {
        expect(raw.includes(Buffer.from(form))).toBe(false);
      }
    }
    expect(raw.includes(Buffer.from(s.masterKey))).toBe(false);
    expect(raw.includes(Buffer.from(s.keys.alpha))).toBe(false);
  });

  // PostgreSQL's counterpart: no file of ours to read, so every stored row of
  // the schema (as the test's own connection reads them) and a pg_dump of it,
  // what a backup or anyone with the database's dump would hold. A value is
  // sealed before it is sent, so none can be in a dead row version either.
  test.skipIf(!onPostgres)("no stored row, and no pg_dump of the schema, contains a stored value, in any form", async () => {
    const s = await server();
    const values = ["correct-horse-battery-staple-7731", "pässwörd-ünïcode-✓-9921", "x".repeat(3000) + "tail-4412"];
    for (const [i, value] of values.entries()) {
      expect((await s.post("/v1/credentials/upsert", { name: `secret_${i}`, value })).status).toBe(200);
    }
    await s.post("/v1/credentials/upsert", { name: "secret_0", value: "second-value-5512" });
    const signingSecret = `whsec_${Buffer.from("webhook-signing-secret-8812-abcdefgh").toString("base64")}`;
    expect((await s.post("/v1/webhooks/create", { url: "https://hooks.example.com/x", signing_secret: signingSecret })).status).toBe(200);
    await flushAuditEvents(s.db);

    const rows = await dumpDb(s.db);
    expect(rows).toContain("secret_1"); // the names are there: the dump is real
    const schema = /search_path=(\S+)/.exec(new URL(s.databaseUrl!).searchParams.get("options") ?? "")?.[1];
    expect(schema).toBeDefined();
    const dumped = spawnSync("/usr/bin/pg_dump", ["--no-owner", "--schema", schema!, "--dbname", testDatabaseUrl!], { encoding: "utf8" });
    expect(dumped.status).toBe(0);
    expect(dumped.stdout).toContain("secret_1");
    expect(dumped.stdout).toContain("COPY");

    const secrets = [...values, "second-value-5512", signingSecret, s.masterKey, s.keys.alpha, s.keys.beta];
    for (const secret of secrets) {
      for (const form of [secret, ...secretForms(secret)]) {
        expect(rows.includes(form)).toBe(false);
        expect(dumped.stdout.includes(form)).toBe(false);
      }
    }
  });

  test("a ciphertext copied onto another credential's row fails to open, cleanly", async () => {
    const s = await server();
    const a = await s.post("/v1/credentials/create", { name: "first", value: "value-of-first-1234" });
    const b = await s.post("/v1/credentials/create", { name: "second", value: "value-of-second-5678" });
    const source = await s.db.selectFrom("credentials").select(["sealed_value", "version"]).where("id", "=", a.body.credential_id).executeTakeFirstOrThrow();
    await s.db
      .updateTable("credentials")
      .set({ sealed_value: source.sealed_value, version: source.version })
      .where("id", "=", b.body.credential_id)
      .execute();

    const read = await s.post("/v1/credentials/get", { json: { name: "second" } });
    expect(read.status).toBe(500);
    expect(read.body.json.code).toBe("INTERNAL_SERVER_ERROR");
    expect(read.body.json.message).toContain("failed its integrity check");
    expect(read.text).not.toContain("value-of-first-1234");
    expect(read.text).not.toContain("value-of-second-5678");
    expect(read.text).not.toMatch(/at .*\.ts:\d+/); // no stack

    // The server carries on: the untouched credential still reads.
    expect((await s.post("/v1/credentials/get", { name: "first" })).body.value).toBe("value-of-first-1234");
    await flushAuditEvents(s.db);
    const audit = await s.db.selectFrom("audit_events").selectAll().where("outcome", "=", "integrity_failure").execute();
    expect(audit.map((e) => e.credential_name)).toEqual(["second"]);
  });

  test("an older version's ciphertext replayed onto its own row fails to open", async () => {
    const s = await server();
    const created = await s.post("/v1/credentials/create", { name: "rotating", value: "old-value-1111" });
    const old = await s.db.selectFrom("credentials").select("sealed_value").where("id", "=", created.body.credential_id).executeTakeFirstOrThrow();
    await s.post("/v1/credentials/update", { id: created.body.credential_id, value: "new-value-2222" });
    await s.db.updateTable("credentials").set({ sealed_value: old.sealed_value }).where("id", "=", created.body.credential_id).execute();
    expect((await s.post("/v1/credentials/get", { name: "rotating" })).status).toBe(500);
  });

  test("a sealed value moved to another tenant does not open there", async () => {
    const s = await server();
    const a = await s.post("/v1/credentials/create", { name: "shared_name", value: "alpha-only-3141" });
    const b = await s.post("/v1/credentials/create", { name: "shared_name", value: "beta-only-2718" }, { key: s.keys.beta });
    const alphaRow = await s.db.selectFrom("credentials").selectAll().where("id", "=", a.body.credential_id).executeTakeFirstOrThrow();
    await s.db
      .updateTable("credentials")
      .set({ sealed_value: alphaRow.sealed_value })
      .where("id", "=", b.body.credential_id)
      .execute();
    const read = await s.post("/v1/credentials/get", { name: "shared_name" }, { key: s.keys.beta });
    expect(read.status).toBe(500);
    expect(read.text).not.toContain("alpha-only-3141");
  });

  test("values survive a restart", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const master = newMasterKey();
    const first = await appOn(dbPath, master.bytes);
    const tenant = await createTenant(first.store.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(first.store.db, systemClock, randomId, tenant.id);
    expect((await first.call("/v1/credentials/create", key, { name: "token", value: "survives-restart-42" })).status).toBe(200);
    await first.close();

    const second = await appOn(dbPath, master.bytes);
    cleanups.push(() => second.close());
    expect((await second.call("/v1/credentials/get", key, { name: "token" })).body.value).toBe("survives-restart-42");
  });
});

describe("master key checks", () => {
  test("a wrong master key is refused at open, naming the expected key id", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const right = newMasterKey();
    const wrong = newMasterKey();
    const first = await appOn(dbPath, right.bytes);
    await first.close();
    const expectedId = toMasterKey(right.bytes).id;
    await expect(appOn(dbPath, wrong.bytes)).rejects.toThrow(expectedId);
  });

  test("a database holding sealed data but no key check is never given a new key", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const master = newMasterKey();
    const first = await appOn(dbPath, master.bytes);
    const tenant = await createTenant(first.store.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(first.store.db, systemClock, randomId, tenant.id);
    await first.call("/v1/credentials/create", key, { name: "token", value: "keep-me-safe-77" });
    await first.store.db.deleteFrom("vault_meta").execute();
    await first.close();

    await expect(appOn(dbPath, newMasterKey().bytes)).rejects.toThrow("will not assign it a new master key");
    // Even the right key does not silently write a new check over it.
    await expect(appOn(dbPath, master.bytes)).rejects.toThrow("will not assign it a new master key");
  });

  test("rotation keeps every value readable: before, during (running server), and after", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const oldKey = newMasterKey();
    const newKey = newMasterKey();

    // A server running with only the old key, with values in three tenants.
    const running = await appOn(dbPath, oldKey.bytes);
    const apiKeys: string[] = [];
    for (const name of ["t1", "t2", "t3"]) {
      const tenant = await createTenant(running.store.db, systemClock, randomId, name);
      const { key } = await createApiKey(running.store.db, systemClock, randomId, tenant.id);
      apiKeys.push(key);
      for (let i = 0; i < 5; i++) {
        await running.call("/v1/credentials/create", key, { name: `c${i}`, value: `${name}-value-${i}` });
      }
    }

    // Rotate from a second process-like store on the same file, as `understudy rotate-key` does.
    const rotator = await appOn(dbPath, newKey.bytes, oldKey.bytes);
    const result = await rotator.store.vault.rotate(rotator.store.db);
    expect(result).toEqual({ rewrapped: 3, alreadyCurrent: 0 });
    expect(await rotator.store.vault.rotate(rotator.store.db)).toEqual({ rewrapped: 0, alreadyCurrent: 3 });
    await rotator.close();

    // The running server (old key only) still reads and writes everything.
    for (const [t, key] of apiKeys.entries()) {
      for (let i = 0; i < 5; i++) {
        expect((await running.call("/v1/credentials/get", key, { name: `c${i}` })).body.value).toBe(`t${t + 1}-value-${i}`);
      }
    }
    await running.close();

    // After: the new key alone opens everything; the old key alone is refused by id.
    const after = await appOn(dbPath, newKey.bytes);
    for (const [t, key] of apiKeys.entries()) {
      for (let i = 0; i < 5; i++) {
        expect((await after.call("/v1/credentials/get", key, { name: `c${i}` })).body.value).toBe(`t${t + 1}-value-${i}`);
      }
    }
    await after.close();
    await expect(appOn(dbPath, oldKey.bytes)).rejects.toThrow(toMasterKey(newKey.bytes).id);
  });

  test("a server given the new key and the previous one before rotate-key runs wraps new tenant keys with the database's current key", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const oldKey = newMasterKey();
    const newKey = newMasterKey();
    await (await appOn(dbPath, oldKey.bytes)).close();
    // Started with both keys, ahead of the rotation: the database still names the old key as current.
    const both = await appOn(dbPath, newKey.bytes, oldKey.bytes);
    const tenant = await createTenant(both.store.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(both.store.db, systemClock, randomId, tenant.id);
    expect((await both.call("/v1/credentials/create", key, { name: "token", value: "made-before-rotation-1" })).status).toBe(200);
    const row = await both.store.db.selectFrom("tenant_keys").select("master_key_id").where("tenant_id", "=", tenant.id).executeTakeFirstOrThrow();
    expect(row.master_key_id).toBe(toMasterKey(oldKey.bytes).id);
    expect(await both.store.vault.rotate(both.store.db)).toEqual({ rewrapped: 1, alreadyCurrent: 0 });
    await both.close();
    const after = await appOn(dbPath, newKey.bytes);
    cleanups.push(() => after.close());
    expect((await after.call("/v1/credentials/get", key, { name: "token" })).body.value).toBe("made-before-rotation-1");
  });

  test("a tenant key still wrapped by a key the process lacks stops start-up with the way out", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const oldKey = newMasterKey();
    const newKey = newMasterKey();
    const first = await appOn(dbPath, oldKey.bytes);
    const tenant = await createTenant(first.store.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(first.store.db, systemClock, randomId, tenant.id);
    await first.call("/v1/credentials/create", key, { name: "token", value: "v-1" });
    await first.close();
    // Key check moved to the new key, but the tenant key left behind (an interrupted manual edit).
    const rotator = await appOn(dbPath, newKey.bytes, oldKey.bytes);
    await rotator.store.vault.rotate(rotator.store.db);
    await rotator.store.db.updateTable("tenant_keys").set({ master_key_id: toMasterKey(oldKey.bytes).id }).execute();
    await rotator.close();
    await expect(appOn(dbPath, newKey.bytes)).rejects.toThrow("UNDERSTUDY_MASTER_KEY_PREVIOUS");
  });
});
