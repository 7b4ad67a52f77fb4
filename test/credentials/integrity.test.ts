import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Migrator, sql } from "kysely";
import { systemClock, randomId } from "../../src/clock";
import { openDatabase } from "../../src/store/database";
import { migrations } from "../../src/store/migrations";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { toMasterKey } from "../../src/vault/master-key";
import { Vault } from "../../src/vault/vault";
import { call, serveDeployment, type ServeDeployment } from "../e2e/serve-child";
import { editDatabaseFile, expectNoSecretIn, newMasterKey, serveDatabaseFile, tempDir } from "../helpers";
import { runCliProcess, type ServerProcess } from "../process-helpers";

// Issue 9, item 4: a row of the credentials table that does not match what
// sealed its value (a name swapped, a byte flipped) answers an error, never
// another credential's value.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function deployment(env: Record<string, string> = {}): ServeDeployment {
  // No workflows: these tests are about stored values.
  const d = serveDeployment({ workflowsDir: "workflows", env });
  cleanups.push(() => d.remove());
  return d;
}

async function start(d: ServeDeployment, env: Record<string, string> = {}): Promise<ServerProcess> {
  const server = await d.start(env);
  cleanups.push(() => server.child.exitCode === null && server.child.signalCode === null && server.stop());
  return server;
}

describe("a credentials row that does not match what sealed its value", () => {
  test("names of two rows swapped in the database file: get answers an error, not the other value", async () => {
    const d = deployment();
    const key = await d.addTenant("acme");
    const values = { c4: "value-of-c4-7f3a91", c6: "value-of-c6-b2e804", c5: "value-of-c5-untouched" };
    let server = await start(d);
    for (const [name, value] of Object.entries(values)) expect((await call(server, key, "/v1/credentials/upsert", { name, value })).status).toBe(200);
    expect(await server.stop()).toBe(0);

    editDatabaseFile(d.dbPath, [
      "UPDATE credentials SET name = 'swap_tmp' WHERE name = 'c4'",
      "UPDATE credentials SET name = 'c4' WHERE name = 'c6'",
      "UPDATE credentials SET name = 'c6' WHERE name = 'swap_tmp'",
    ]);

    server = await start(d);
    for (const name of ["c4", "c6"]) {
      const got = await call(server, key, "/v1/credentials/get", { name });
      expect(got.status).toBe(500);
      expect(got.body.code).toBe("INTERNAL_SERVER_ERROR");
      expect(got.body.message).toContain(`credential "${name}" failed its integrity check`);
      expect(got.body.message).toContain("restore the database from a backup");
      expectNoSecretIn(JSON.stringify(got.body), Object.values(values));
    }
    // The untouched row still answers.
    expect((await call(server, key, "/v1/credentials/get", { name: "c5" })).body.value).toBe(values.c5);
    // Setting it again is the way out the message names.
    expect((await call(server, key, "/v1/credentials/upsert", { name: "c4", value: "value-of-c4-again" })).status).toBe(200);
    expect((await call(server, key, "/v1/credentials/get", { name: "c4" })).body.value).toBe("value-of-c4-again");
    expect(await server.stop()).toBe(0);

    // The log names the credential's id, never a value.
    expect(server.stdout()).toContain("credential failed its integrity check");
    expectNoSecretIn(server.stdout() + server.stderr(), [...Object.values(values), "value-of-c4-again", d.env.UNDERSTUDY_MASTER_KEY!]);
  }, 30_000);

  test("random bit and byte flips in the credentials rows never answer another credential's value", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const pristine = join(dir.path, "pristine.db");
    const master = newMasterKey();
    // Names one bit apart (c0..c7) and rowids 1..10: a flip easily turns one row into another's.
    const tenants: { key: string; values: Record<string, string> }[] = [];
    {
      const s = await serveDatabaseFile(pristine, master.bytes);
      for (const [tenantName, count] of [["alpha", 8], ["beta", 2]] as const) {
        const tenant = await createTenant(s.db, systemClock, randomId, tenantName);
        const { key } = await createApiKey(s.db, systemClock, randomId, tenant.id);
        const values: Record<string, string> = {};
        for (let i = 0; i < count; i++) {
          values[`c${i}`] = `${tenantName}-secret-${i}-${randomId().slice(0, 8)}`;
          expect((await s.post("/v1/credentials/create", key, { name: `c${i}`, value: values[`c${i}`] })).status).toBe(200);
        }
        tenants.push({ key, values });
      }
      await s.close();
    }
    expect(existsSync(`${pristine}-wal`)).toBe(false); // closed cleanly: the main file holds everything
    const allValues = tenants.flatMap((t) => Object.values(t.values));

    // Where the credentials rows are: the cell content of the table's page and of its indexes' pages.
    const raw = new Database(pristine, { readonly: true });
    const pageSize = (raw.query("PRAGMA page_size").get() as { page_size: number }).page_size;
    const roots = raw.query("SELECT name, rootpage FROM sqlite_master WHERE tbl_name = 'credentials' AND rootpage > 0").all() as { name: string; rootpage: number }[];
    raw.close();
    const bytes = readFileSync(pristine);
    const regions = roots.map(({ name, rootpage }) => {
      const page = (rootpage - 1) * pageSize;
      // A leaf page each (0x0d table, 0x0a index): every row of the table is in it.
      expect({ name, leaf: [0x0d, 0x0a].includes(bytes[page]!) }).toEqual({ name, leaf: true });
      return { start: page + bytes.readUInt16BE(page + 5), end: page + pageSize };
    });
    const regionBytes = regions.reduce((n, r) => n + (r.end - r.start), 0);
    const offsetAt = (n: number) => {
      let rest = n % regionBytes;
      for (const r of regions) {
        if (rest < r.end - r.start) return r.start + rest;
        rest -= r.end - r.start;
      }
      throw new Error("unreachable");
    };

    const seen = { runs: 0, refusedAtStart: 0, errors: 0, ownValues: 0 };
    const flip = fc.record({ at: fc.nat(), mask: fc.oneof(fc.integer({ min: 0, max: 7 }).map((bit) => 1 << bit), fc.integer({ min: 1, max: 255 })) });
    await fc.assert(
      fc.asyncProperty(fc.array(flip, { minLength: 1, maxLength: 64 }), async (flips) => {
        seen.runs++;
        const damaged = Buffer.from(bytes);
        for (const { at, mask } of flips) damaged[offsetAt(at)]! ^= mask;
        const path = join(dir.path, `run-${seen.runs}.db`);
        writeFileSync(path, damaged);
        let s: Awaited<ReturnType<typeof serveDatabaseFile>>;
        try {
          s = await serveDatabaseFile(path, master.bytes);
        } catch {
          seen.refusedAtStart++; // a database too damaged to start serves nothing
          return;
        }
        try {
          for (const tenant of tenants) {
            for (const [name, value] of Object.entries(tenant.values)) {
              const got = await s.post("/v1/credentials/get", tenant.key, { name });
              if (got.status === 200) {
                // Its own value (the flips hit nothing it is bound to), or nothing.
                expect(got.body.value === value).toBe(true);
                seen.ownValues++;
              } else {
                expect(got.status === 404 || got.status === 500).toBe(true);
                expectNoSecretIn(got.text, allValues);
                seen.errors++;
              }
            }
          }
          expectNoSecretIn(s.logs.join("\n"), allValues);
        } finally {
          await s.close();
          for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
        }
      }),
      { numRuns: 30 },
    );
    // The flips did hit rows: many reads were refused.
    expect(seen.errors).toBeGreaterThan(0);
    console.log(`fuzz: ${JSON.stringify(seen)}`);
  }, 120_000);
});

describe("renames re-seal", () => {
  test("a renamed credential reads under its new name, also after a restart; the old name is gone", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const master = newMasterKey();
    let s = await serveDatabaseFile(dbPath, master.bytes);
    const tenant = await createTenant(s.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(s.db, systemClock, randomId, tenant.id);
    const created = await s.post("/v1/credentials/create", key, { name: "old_name", value: "renamed-value-5150" });
    const id = created.body.credential_id;
    const before = await s.db.selectFrom("credentials").select(["sealed_value", "version"]).where("id", "=", id).executeTakeFirstOrThrow();

    expect((await s.post("/v1/credentials/update", key, { id, name: "new_name" })).status).toBe(200);
    const after = await s.db.selectFrom("credentials").select(["sealed_value", "version"]).where("id", "=", id).executeTakeFirstOrThrow();
    expect(after.version).toBe(before.version + 1);
    expect(Buffer.from(after.sealed_value).equals(Buffer.from(before.sealed_value))).toBe(false);
    expect((await s.post("/v1/credentials/get", key, { name: "new_name" })).body.value).toBe("renamed-value-5150");
    expect((await s.post("/v1/credentials/get", key, { name: "old_name" })).status).toBe(404);
    // Rename and new value at once.
    expect((await s.post("/v1/credentials/update", key, { id, name: "newer_name", value: "second-value-6160" })).status).toBe(200);
    await s.close();

    s = await serveDatabaseFile(dbPath, master.bytes);
    cleanups.push(() => s.close());
    expect((await s.post("/v1/credentials/get", key, { name: "newer_name" })).body.value).toBe("second-value-6160");
  });

  test("renaming a credential whose stored value is damaged is refused, and changes nothing", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dbPath = join(dir.path, "u.db");
    const master = newMasterKey();
    const s = await serveDatabaseFile(dbPath, master.bytes);
    cleanups.push(() => s.close());
    const tenant = await createTenant(s.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(s.db, systemClock, randomId, tenant.id);
    const id = (await s.post("/v1/credentials/create", key, { name: "fragile", value: "fragile-value-7170" })).body.credential_id;
    const row = await s.db.selectFrom("credentials").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
    const damaged = Buffer.from(row.sealed_value);
    damaged[damaged.length - 1]! ^= 1;
    await s.db.updateTable("credentials").set({ sealed_value: damaged }).where("id", "=", id).execute();

    const renamed = await s.post("/v1/credentials/update", key, { id, name: "sturdy" });
    expect(renamed.status).toBe(500);
    expect(renamed.body.message).toContain('credential "fragile" failed its integrity check');
    expect(renamed.body.message).toContain("Rename it together with a new value");
    const unchanged = await s.db.selectFrom("credentials").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
    expect({ ...unchanged, sealed_value: Buffer.from(unchanged.sealed_value).toString("hex") }).toEqual({ ...row, sealed_value: damaged.toString("hex") });
    // The way out works: a new value with the new name.
    expect((await s.post("/v1/credentials/update", key, { id, name: "sturdy", value: "fresh-value-8180" })).status).toBe(200);
    expect((await s.post("/v1/credentials/get", key, { name: "sturdy" })).body.value).toBe("fresh-value-8180");
  });
});

/**
 * A database as Understudy wrote it before names were bound: schema up to
 * 0004 and values sealed with the tenant, id and version only (the
 * associated data of format 1, `<tenant>/credential/<id>/<version>`).
 */
async function legacyDatabase(dbPath: string, masterKey: Uint8Array, values: Record<string, string>): Promise<string> {
  const db = await openDatabase({ path: dbPath, synchronous: "normal", busyTimeoutMs: 5000 });
  try {
    // Up to 0004: later migrations (0005 and any added since) came after.
    const before = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < "0005_credential_seal_format"));
    const { error } = await new Migrator({ db, provider: { getMigrations: async () => before } }).migrateToLatest();
    if (error) throw error;
    // Today's vault asks, before it makes a tenant's first data key, whether
    // the tenant holds sealed data in tables of later migrations too: an
    // empty stand-in for the time of the sealing, dropped afterwards, so the
    // database keeps the schema of 0004.
    await sql`CREATE TABLE browser_profiles (tenant_id TEXT, sealed_state BLOB)`.execute(db);
    const vault = await Vault.open(db, { current: toMasterKey(masterKey) }, systemClock);
    const tenant = await createTenant(db, systemClock, randomId, "acme");
    const { key } = await createApiKey(db, systemClock, randomId, tenant.id);
    const at = new Date().toISOString();
    for (const [name, value] of Object.entries(values)) {
      const id = randomId();
      const sealed = await vault.sealForTenant(db, tenant.id, `credential/${id}/1`, value);
      await db.insertInto("credentials").values({ id, tenant_id: tenant.id, name, sealed_value: sealed, version: 1, created_at: at, updated_at: at }).execute();
    }
    await sql`DROP TABLE browser_profiles`.execute(db);
    return key;
  } finally {
    await db.destroy();
  }
}

describe("databases sealed before names were bound", () => {
  const values = { token: "legacy-token-9190", password: "legacy-password-2021" };

  test("upgrade at start and read; afterwards a swap of names is caught", async () => {
    const d = deployment();
    const master = newMasterKey();
    const key = await legacyDatabase(d.dbPath, master.bytes, values);
    let server = await start(d, { UNDERSTUDY_MASTER_KEY: master.text });
    for (const [name, value] of Object.entries(values)) expect((await call(server, key, "/v1/credentials/get", { name })).body.value).toBe(value);
    expect(await server.stop()).toBe(0);

    const raw = new Database(d.dbPath, { readonly: true });
    expect(raw.query("SELECT DISTINCT seal_format FROM credentials").all()).toEqual([{ seal_format: 2 }]);
    raw.close();

    editDatabaseFile(d.dbPath, [
      "UPDATE credentials SET name = 'swap_tmp' WHERE name = 'token'",
      "UPDATE credentials SET name = 'token' WHERE name = 'password'",
      "UPDATE credentials SET name = 'password' WHERE name = 'swap_tmp'",
    ]);
    server = await start(d, { UNDERSTUDY_MASTER_KEY: master.text });
    for (const name of Object.keys(values)) expect((await call(server, key, "/v1/credentials/get", { name })).status).toBe(500);
    expect(await server.stop()).toBe(0);
    expectNoSecretIn(server.stdout() + server.stderr(), [...Object.values(values), master.text]);
  }, 30_000);

  test("a backup from before restores with `understudy restore` and reads", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const master = newMasterKey();
    const backup = join(dir.path, "before-upgrade.db");
    const key = await legacyDatabase(backup, master.bytes, values);
    const d = deployment({ UNDERSTUDY_MASTER_KEY: master.text });
    const restored = await runCliProcess(["restore", backup], { cwd: d.cwd, env: d.env });
    expect(restored.code, restored.stderr).toBe(0);
    const server = await start(d);
    for (const [name, value] of Object.entries(values)) expect((await call(server, key, "/v1/credentials/get", { name })).body.value).toBe(value);
    // The backup itself is only read.
    copyFileSync(backup, join(dir.path, "copy.db"));
    const raw = new Database(join(dir.path, "copy.db"), { readonly: true });
    expect((raw.query("SELECT name FROM pragma_table_info('credentials') WHERE name = 'seal_format'").all() as unknown[]).length).toBe(0);
    raw.close();
    expect(await server.stop()).toBe(0);
  }, 30_000);
});
