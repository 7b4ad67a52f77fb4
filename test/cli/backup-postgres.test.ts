import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { randomId, systemClock } from "../../src/clock";
import { loadConfig } from "../../src/config";
import { openStore } from "../../src/server/start";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { toMasterKey } from "../../src/vault/master-key";
import { newMasterKey, tempDir } from "../helpers";
import { describeWithPostgres } from "../multi/cluster";
import { testDatabaseUrl } from "../postgres";
import { postJson, runCliProcess, startServerProcess } from "../process-helpers";

/**
 * `understudy backup` / `restore` with UNDERSTUDY_DATABASE_URL, against the
 * test cluster with the real pg_dump and pg_restore. Each test database is
 * a database of its own (a dump covers a whole database), dropped after.
 */
describeWithPostgres("backup and restore on PostgreSQL (pg_dump, pg_restore)", () => {
  const PASSWORD = "pw-must-not-leak-7f3a";
  const master = newMasterKey();
  let dir: { path: string; remove(): void };
  const names = [`ops_bk_src_${process.pid}`, `ops_bk_dst_${process.pid}`, `ops_bk_bad_${process.pid}`];
  let admin: pg.Client;
  /** The URL of one of this file's databases, with a password (trust auth ignores it; it must never show). */
  const urlOf = (name: string) => {
    const url = new URL(testDatabaseUrl!);
    url.password = PASSWORD;
    url.pathname = `/${name}`;
    url.search = "";
    return url.toString();
  };
  // Set in beforeAll: the body of a skipped describe still runs, without a test database.
  let source = "";
  let target = "";
  let wrongKeyTarget = "";
  let apiKey = "";
  /** A PATH whose pg_dump/pg_restore record their argv and PGPASSWORD, then run the real tools. */
  const pathWithSpy = () => `${join(dir.path, "spy")}:${process.env.PATH}`;
  const env = (url: string, extra: Record<string, string> = {}) => ({ UNDERSTUDY_DATABASE_URL: url, UNDERSTUDY_MASTER_KEY: master.text, PATH: pathWithSpy(), ...extra });

  beforeAll(async () => {
    dir = tempDir("understudy-pgbackup-");
    const spyDir = join(dir.path, "spy");
    [source, target, wrongKeyTarget] = names.map(urlOf) as [string, string, string];
    admin = new pg.Client({ connectionString: testDatabaseUrl });
    await admin.connect();
    for (const name of names) {
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      await admin.query(`CREATE DATABASE ${name}`);
    }
    mkdirSync(spyDir);
    for (const tool of ["pg_dump", "pg_restore"]) {
      const real = Bun.which(tool);
      if (!real) throw new Error(`${tool} is not on PATH (install postgresql-client)`);
      const spy = join(spyDir, tool);
      writeFileSync(spy, `#!/bin/sh\nprintf '%s\\n' "$@" >> '${dir.path}/${tool}.argv'\nprintf '%s\\n' "$PGPASSWORD" >> '${dir.path}/${tool}.pgpassword'\nexec '${real}' "$@"\n`);
      chmodSync(spy, 0o755);
    }
    // A tenant with a stored credential, through a real server on the source database.
    const store = await openStore(loadConfig({ UNDERSTUDY_DATABASE_URL: source }), join(dir.path, "unused.db"), { current: toMasterKey(master.bytes) });
    const tenant = await createTenant(store.db, systemClock, randomId, "acme");
    apiKey = (await createApiKey(store.db, systemClock, randomId, tenant.id)).key;
    await store.db.destroy();
    const server = await startServerProcess(["serve"], { cwd: dir.path, env: { ...env(source), UNDERSTUDY_REQUEST_LOG: "off" } });
    expect((await postJson(server.url, "/v1/credentials/create", apiKey, { name: "site", value: "the-secret-value" })).status).toBe(200);
    await server.stop();
  }, 60_000);

  afterAll(async () => {
    for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
    dir?.remove();
  });

  const cli = (args: string[], extra: Record<string, string>) => runCliProcess(args, { cwd: dir.path, env: extra, timeoutMs: 60_000 });
  const tableCount = async (name: string) => {
    const client = new pg.Client({ connectionString: urlOf(name) });
    await client.connect();
    try {
      return Number((await client.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'")).rows[0].n);
    } finally {
      await client.end();
    }
  };

  test("backup runs pg_dump (custom format) into a 0600 file, with the password in PGPASSWORD only, and never prints it", async () => {
    const file = join(dir.path, "backup.dump");
    const out = await cli(["backup", file], env(source));
    expect(out.code).toBe(0);
    expect(out.stderr).toContain(`Backed up PostgreSQL postgres@`);
    expect(out.stdout + out.stderr).not.toContain(PASSWORD);
    expect(readFileSync(file).subarray(0, 5).toString("latin1")).toBe("PGDMP");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir.path, "pg_dump.argv"), "utf8")).not.toContain(PASSWORD);
    expect(readFileSync(join(dir.path, "pg_dump.pgpassword"), "utf8").trim()).toBe(PASSWORD);

    const again = await cli(["backup", file], env(source));
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("exists; choose another file or pass --force");
  }, 60_000);

  test("restore refuses a wrong master key and a database that has tables, changing nothing", async () => {
    const file = join(dir.path, "backup.dump");
    const wrong = await cli(["restore", file], env(wrongKeyTarget, { UNDERSTUDY_MASTER_KEY: newMasterKey().text }));
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("Refusing to restore");
    expect(wrong.stderr).toContain("The master key does not open this database");
    expect(wrong.stderr + wrong.stdout).not.toContain(PASSWORD);
    expect(await tableCount(names[2]!)).toBe(0);

    const intoUsed = await cli(["restore", file], env(source));
    expect(intoUsed.code).not.toBe(0);
    expect(intoUsed.stderr).toContain("is not empty");
    expect(intoUsed.stderr + intoUsed.stdout).not.toContain(PASSWORD);
  }, 60_000);

  test("restore into an empty database: a server started on it reads the tenant's credential", async () => {
    const file = join(dir.path, "backup.dump");
    const out = await cli(["restore", file], env(target));
    expect({ code: out.code, stderr: out.stderr }).toEqual({ code: 0, stderr: expect.stringContaining("Restored") });
    expect(out.stderr + out.stdout).not.toContain(PASSWORD);
    expect(readFileSync(join(dir.path, "pg_restore.argv"), "utf8")).not.toContain(PASSWORD);

    const server = await startServerProcess(["serve"], { cwd: dir.path, env: { ...env(target), UNDERSTUDY_REQUEST_LOG: "off" } });
    try {
      const listed = await postJson(server.url, "/v1/credentials/list", apiKey, {});
      expect(listed.body.credentials.map((c: { name: string }) => c.name)).toEqual(["site"]);
    } finally {
      await server.stop();
    }
  }, 60_000);

  test("without pg_dump on PATH, backup says exactly what to run, without the password", async () => {
    const file = join(dir.path, "never.dump");
    const out = await cli(["backup", file], env(source, { PATH: "/nonexistent" }));
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain("pg_dump is not on PATH");
    expect(out.stderr).toContain(`pg_dump --format=custom --file=${file} 'postgres://postgres@`);
    expect(out.stderr).not.toContain(PASSWORD);
    expect(existsSync(file)).toBe(false);
  });
});
