import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { masterKeyId } from "../../src/vault/master-key";
import { newMasterKey } from "../helpers";
import { postJson, runCliProcess, startServerProcess, processScope } from "../process-helpers";

const { workDir, started, cleanup } = processScope();
afterAll(cleanup);

describe("backup and restore", () => {
  test("--help, and usage errors exit 2", async () => {
    const cwd = workDir();
    for (const command of ["backup", "restore"]) {
      const help = await runCliProcess([command, "--help"], { cwd });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`usage: understudy ${command} FILE`);
      for (const args of [[command], [command, "a", "b"], [command, "x", "--bogus"]]) {
        const run = await runCliProcess(args, { cwd });
        expect({ args, code: run.code }).toEqual({ args, code: 2 });
        expect(run.stderr).toContain(`usage: understudy ${command}`);
      }
    }
  });

  test("a backup taken under write load restores every value acknowledged before it, encrypted, and only with its key", async () => {
    const cwd = workDir();
    const key = newMasterKey();
    const dbA = join(cwd, "a", "understudy.db");
    const env = { UNDERSTUDY_MASTER_KEY: key.text, UNDERSTUDY_DB: dbA, UNDERSTUDY_REQUEST_LOG: "off" };
    expect((await runCliProcess(["tenants", "create", "acme"], { cwd, env })).code).toBe(0);
    const apiKey = (await runCliProcess(["keys", "create", "--tenant", "acme"], { cwd, env })).stdout.trim();
    const server = await started(startServerProcess(["serve"], { cwd, env }));

    // The write load: a few writers upserting fresh names, each acknowledged value recorded with when it was.
    const acked = new Map<string, { value: string; at: number }>();
    let stop = false;
    let next = 0;
    const writer = async () => {
      for (let i = 0; i < 2000 && !stop; i++) {
        const name = `cred_${next++}`;
        const value = `val-${randomBytes(12).toString("hex")}`;
        const answer = await postJson(server.url, "/v1/credentials/upsert", apiKey, { name, value });
        if (answer.status === 200) acked.set(name, { value, at: performance.now() });
      }
    };
    const load = Promise.all([writer(), writer(), writer()]);
    for (let i = 0; i < 400 && acked.size < 60; i++) await Bun.sleep(10);
    expect(acked.size).toBeGreaterThanOrEqual(60);

    const backupFile = join(cwd, "backup.db");
    const backupStarted = performance.now();
    const backup = await runCliProcess(["backup", backupFile], { cwd, env });
    expect(backup.code).toBe(0);
    const ackedAtBackupEnd = acked.size;
    for (let i = 0; i < 400 && acked.size < ackedAtBackupEnd + 20; i++) await Bun.sleep(10);
    stop = true;
    await load;
    expect(await server.stop()).toBe(0);

    const before = [...acked].filter(([, a]) => a.at < backupStarted);
    expect(before.length).toBeGreaterThanOrEqual(60);
    expect(acked.size).toBeGreaterThan(before.length); // the load really did run across the backup

    // 0600, refused when it exists, and no value in clear.
    expect(statSync(backupFile).mode & 0o777).toBe(0o600);
    const again = await runCliProcess(["backup", backupFile], { cwd, env });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("--force");
    const bytes = readFileSync(backupFile);
    for (const [, { value }] of acked) expect(bytes.includes(value)).toBe(false);

    // A wrong key is refused, naming the expected key id, and changes nothing: neither a fresh target nor the old database.
    const wrongKey = newMasterKey();
    const dbB = join(cwd, "b", "understudy.db");
    const wrongFresh = await runCliProcess(["restore", backupFile, "--db", dbB], { cwd, env: { ...env, UNDERSTUDY_MASTER_KEY: wrongKey.text } });
    expect(wrongFresh.code).toBe(1);
    expect(wrongFresh.stderr).toContain(masterKeyId(key.bytes));
    expect(existsSync(join(cwd, "b"))).toBe(false);
    const filesOfA = readdirSync(join(cwd, "a")).sort();
    const bytesOfA = readFileSync(dbA);
    const wrongOver = await runCliProcess(["restore", backupFile], { cwd, env: { ...env, UNDERSTUDY_MASTER_KEY: wrongKey.text } });
    expect(wrongOver.code).toBe(1);
    expect(wrongOver.stderr).toContain(`expects master key ${masterKeyId(key.bytes)}`);
    expect(readdirSync(join(cwd, "a")).sort()).toEqual(filesOfA);
    expect(readFileSync(dbA).equals(bytesOfA)).toBe(true);

    // The right key restores into a fresh data dir, and a server there reads back every value acknowledged before the backup.
    const envB = { ...env, UNDERSTUDY_DB: dbB };
    const restore = await runCliProcess(["restore", backupFile], { cwd, env: envB });
    expect(restore.code).toBe(0);
    expect(statSync(dbB).mode & 0o777).toBe(0o600);
    const restored = await started(startServerProcess(["serve"], { cwd, env: envB }));
    for (const [name, { value }] of before) {
      const got = await postJson(restored.url, "/v1/credentials/get", apiKey, { name });
      expect({ name, status: got.status, value: got.body.value }).toEqual({ name, status: 200, value });
    }
    // Restoring over a database a running server has open is refused.
    const busy = await runCliProcess(["restore", backupFile], { cwd, env: envB });
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain("in use");
    expect(await restored.stop()).toBe(0);

    // Over an existing database, with the server stopped: the replaced one is kept beside it.
    const over = await runCliProcess(["restore", backupFile], { cwd, env });
    expect(over.code).toBe(0);
    const kept = readdirSync(join(cwd, "a")).filter((f) => /^understudy\.db\.before-restore-[^.]+$/.test(f));
    expect(kept.length).toBe(1);
    expect(readFileSync(join(cwd, "a", kept[0]!)).equals(bytesOfA)).toBe(true);
  }, 60_000);

  test("restore refuses a file that is not a database", async () => {
    const cwd = workDir();
    const key = newMasterKey();
    const junk = join(cwd, "junk.db");
    writeFileSync(junk, "not sqlite at all, clearly");
    const run = await runCliProcess(["restore", junk, "--db", join(cwd, "x.db")], { cwd, env: { UNDERSTUDY_MASTER_KEY: key.text } });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("not an SQLite database");
    expect(existsSync(join(cwd, "x.db"))).toBe(false);
  });
});
