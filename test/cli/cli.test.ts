import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { masterKeyId } from "../../src/vault/master-key";
import { newMasterKey } from "../helpers";
import { postJson, runCliProcess, startServerProcess, processScope } from "../process-helpers";

const { workDir, started, cleanup } = processScope();
afterAll(cleanup);
const COMMANDS = ["serve", "dev", "keygen", "tenants", "keys", "profiles", "rotate-key", "backup", "restore", "run", "healthcheck", "version"];

describe("usage", () => {
  test("no command, an unknown command or an unknown flag prints usage and exits 2", async () => {
    const cwd = workDir();
    for (const args of [[], ["frobnicate"], ["tenants", "list", "--bogus"], ["keygen", "extra"], ["tenants", "destroy"], ["keys", "create"]]) {
      const run = await runCliProcess(args, { cwd });
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toContain("usage: understudy");
    }
  });

  test("every command has --help, exit 0", async () => {
    const cwd = workDir();
    for (const command of COMMANDS) {
      const run = await runCliProcess([command, "--help"], { cwd });
      expect({ command, code: run.code }).toEqual({ command, code: 0 });
      expect(run.stdout).toContain(`usage: understudy ${command}`);
    }
    const main = await runCliProcess(["--help"], { cwd });
    expect(main.code).toBe(0);
    for (const command of COMMANDS) expect(main.stdout).toContain(command);
  });

  test("keygen prints 32 random bytes in base64, and version prints the version", async () => {
    const cwd = workDir();
    const one = await runCliProcess(["keygen"], { cwd });
    const two = await runCliProcess(["keygen"], { cwd });
    expect(one.code).toBe(0);
    const key = one.stdout.trim();
    expect(Buffer.from(key, "base64").length).toBe(32);
    expect(key).not.toBe(two.stdout.trim());
    expect(one.stderr).toContain(masterKeyId(new Uint8Array(Buffer.from(key, "base64"))));
    const version = await runCliProcess(["version"], { cwd });
    expect(version.stdout).toMatch(/^understudy \d+\.\d+\.\d+ \(.+\)\n$/);
  });
});

describe("keygen --out", () => {
  test("writes the key to a new file with mode 0600, and prints only its id", async () => {
    const cwd = workDir();
    const run = await runCliProcess(["keygen", "--out", "master.key"], { cwd });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("");
    const path = join(cwd, "master.key");
    const key = readFileSync(path, "utf8").trim();
    expect(Buffer.from(key, "base64").length).toBe(32);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(run.stderr).toContain(masterKeyId(new Uint8Array(Buffer.from(key, "base64"))));
    expect(run.stderr).not.toContain(key);
  });

  test("refuses to overwrite an existing file, which stays as it was", async () => {
    const cwd = workDir();
    const path = join(cwd, "master.key");
    writeFileSync(path, "the only copy of an old key\n", { mode: 0o600 });
    const run = await runCliProcess(["keygen", "--out", path], { cwd });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("already exists");
    expect(run.stdout).toBe("");
    expect(readFileSync(path, "utf8")).toBe("the only copy of an old key\n");
  });
});

describe("configuration", () => {
  test("serve without a master key stops with what to do", async () => {
    const run = await runCliProcess(["serve"], { cwd: workDir() });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("UNDERSTUDY_MASTER_KEY");
    expect(run.stderr).toContain("keygen");
  });

  test("every bad variable is reported at once, by name, and a bad key is never echoed", async () => {
    const badKey = "c2hvcnQta2V5LXNlY3JldC12YWx1ZQ=="; // base64 of 22 bytes
    const run = await runCliProcess(["serve"], {
      cwd: workDir(),
      env: {
        UNDERSTUDY_LISTEN: "nowhere",
        UNDERSTUDY_MAX_BODY_BYTES: "lots",
        UNDERSTUDY_RATE_LIMIT_PER_SECOND: "-3",
        UNDERSTUDY_MASTER_KEY: badKey,
      },
    });
    expect(run.code).toBe(1);
    for (const name of ["UNDERSTUDY_LISTEN", "UNDERSTUDY_MAX_BODY_BYTES", "UNDERSTUDY_RATE_LIMIT_PER_SECOND", "UNDERSTUDY_MASTER_KEY"]) {
      expect(run.stderr).toContain(name);
    }
    expect(run.stderr).toContain("22 bytes");
    expect(run.stderr).not.toContain(badKey);
    expect(run.stderr).not.toContain("short-key-secret-value");
  });

  test("both a key and a key file is an error; a key file alone works", async () => {
    const cwd = workDir();
    const key = newMasterKey();
    writeFileSync(join(cwd, "key"), `${key.text}\n`);
    const both = await runCliProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY: key.text, UNDERSTUDY_MASTER_KEY_FILE: join(cwd, "key") } });
    expect(both.code).toBe(1);
    expect(both.stderr).toContain("set only one");
    const missing = await runCliProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY_FILE: join(cwd, "nope") } });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("UNDERSTUDY_MASTER_KEY_FILE");
    const server = await started(startServerProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY_FILE: join(cwd, "key") } }));
    expect(server.stderr()).toContain(masterKeyId(key.bytes));
    expect(await server.stop()).toBe(0);
  });
});

describe("tenants, keys and serve", () => {
  test("a tenant's key works over HTTP until it is revoked", async () => {
    const cwd = workDir();
    const env = { UNDERSTUDY_MASTER_KEY: newMasterKey().text, UNDERSTUDY_DB: join(cwd, "db", "u.db") };
    expect((await runCliProcess(["tenants", "create", "Acme"], { cwd, env })).code).toBe(0);
    const duplicate = await runCliProcess(["tenants", "create", "acme"], { cwd, env });
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain("already exists");
    expect((await runCliProcess(["tenants", "list"], { cwd, env })).stdout).toContain("\tacme\t");

    const created = await runCliProcess(["keys", "create", "--tenant", "acme", "--name", "ci"], { cwd, env });
    expect(created.code).toBe(0);
    const apiKey = created.stdout.trim();
    expect(apiKey).toMatch(/^usk_[A-Za-z0-9_-]{43}$/);
    const keyId = /API key ([0-9a-f-]{36})/.exec(created.stderr)![1]!;

    const server = await started(startServerProcess(["serve"], { cwd, env }));
    expect((await postJson(server.url, "/v1/credentials/upsert", apiKey, { name: "pw", value: "hunter2-cli" })).status).toBe(200);
    expect((await postJson(server.url, "/v1/credentials/get", apiKey, { name: "pw" })).body.value).toBe("hunter2-cli");

    const listed = await runCliProcess(["keys", "list", "--tenant", "acme"], { cwd, env });
    expect(listed.stdout).toContain(keyId);
    expect(listed.stdout).toContain("active");
    expect(listed.stdout).not.toContain(apiKey);
    expect(listed.stdout).not.toContain("last used never");

    expect((await runCliProcess(["keys", "revoke", keyId], { cwd, env })).code).toBe(0);
    expect((await postJson(server.url, "/v1/credentials/get", apiKey, { name: "pw" })).status).toBe(401);
    expect((await runCliProcess(["keys", "list", "--tenant", "acme"], { cwd, env })).stdout).toContain("revoked");
    expect((await runCliProcess(["keys", "revoke", "00000000-0000-4000-8000-000000000000"], { cwd, env })).code).toBe(1);

    expect(await server.stop()).toBe(0);
    // The request log saw neither the value nor the key.
    expect(server.stdout()).toContain('"path":"/v1/credentials/get"');
    expect(server.stdout()).not.toContain("hunter2-cli");
    expect(server.stdout()).not.toContain(apiKey);
  });

  test("a wrong master key stops serve quickly, naming the expected key id", async () => {
    const cwd = workDir();
    const right = newMasterKey();
    const db = join(cwd, "u.db");
    expect((await runCliProcess(["tenants", "create", "acme"], { cwd, env: { UNDERSTUDY_DB: db } })).code).toBe(0);
    const first = await started(startServerProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY: right.text, UNDERSTUDY_DB: db } }));
    expect(await first.stop()).toBe(0);
    const wrong = await runCliProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY: newMasterKey().text, UNDERSTUDY_DB: db } });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(masterKeyId(right.bytes));
    console.log(`wrong master key: serve exited ${wrong.code} after ${Math.round(wrong.ms)} ms`);
  });

  test("rotate-key re-wraps, then the new key alone serves every value and the old one is refused", async () => {
    const cwd = workDir();
    const oldKey = newMasterKey();
    const newKey = newMasterKey();
    const db = join(cwd, "u.db");
    await runCliProcess(["tenants", "create", "acme"], { cwd, env: { UNDERSTUDY_DB: db } });
    const apiKey = (await runCliProcess(["keys", "create", "--tenant", "acme"], { cwd, env: { UNDERSTUDY_DB: db } })).stdout.trim();
    const before = await started(startServerProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY: oldKey.text, UNDERSTUDY_DB: db } }));
    await postJson(before.url, "/v1/credentials/create", apiKey, { name: "token", value: "rotate-me-please" });

    const noPrevious = await runCliProcess(["rotate-key"], { cwd, env: { UNDERSTUDY_MASTER_KEY: newKey.text, UNDERSTUDY_DB: db } });
    expect(noPrevious.code).toBe(1);
    expect(noPrevious.stderr).toContain("UNDERSTUDY_MASTER_KEY_PREVIOUS");

    const rotated = await runCliProcess(["rotate-key"], {
      cwd,
      env: { UNDERSTUDY_MASTER_KEY: newKey.text, UNDERSTUDY_MASTER_KEY_PREVIOUS: oldKey.text, UNDERSTUDY_DB: db },
    });
    expect(rotated.code).toBe(0);
    expect(rotated.stderr).toContain("1 tenant key(s) re-wrapped");
    // The server started before the rotation still reads.
    expect((await postJson(before.url, "/v1/credentials/get", apiKey, { name: "token" })).body.value).toBe("rotate-me-please");
    expect(await before.stop()).toBe(0);

    const after = await started(startServerProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY: newKey.text, UNDERSTUDY_DB: db } }));
    expect((await postJson(after.url, "/v1/credentials/get", apiKey, { name: "token" })).body.value).toBe("rotate-me-please");
    expect(await after.stop()).toBe(0);
    const old = await runCliProcess(["serve"], { cwd, env: { UNDERSTUDY_MASTER_KEY: oldKey.text, UNDERSTUDY_DB: db } });
    expect(old.code).toBe(1);
    expect(old.stderr).toContain(masterKeyId(newKey.bytes));
  });

  test("a database written by a newer version is refused", async () => {
    const cwd = workDir();
    const db = join(cwd, "u.db");
    expect((await runCliProcess(["tenants", "list"], { cwd, env: { UNDERSTUDY_DB: db } })).code).toBe(0);
    const raw = new Database(db);
    raw.run("INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_the_future', '2030-01-01T00:00:00.000Z')");
    raw.close();
    const run = await runCliProcess(["tenants", "list"], { cwd, env: { UNDERSTUDY_DB: db } });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("newer version of Understudy");
    expect(run.stderr).toContain("9999_from_the_future");
  });

  test("healthcheck exits 0 against a live server and 1 against none", async () => {
    const cwd = workDir();
    const server = await started(startServerProcess(["dev"], { cwd }));
    const port = new URL(server.url).port;
    expect((await runCliProcess(["healthcheck"], { cwd, env: { UNDERSTUDY_LISTEN: `0.0.0.0:${port}` } })).code).toBe(0);
    expect(await server.stop()).toBe(0);
    expect((await runCliProcess(["healthcheck"], { cwd, env: { UNDERSTUDY_LISTEN: `127.0.0.1:${port}` } })).code).toBe(1);
  });
});

describe("dev mode", () => {
  test("the banner prints the dashboard and a one-time sign-in link for the dev tenant: it signs in once, then never again", async () => {
    const cwd = workDir();
    const server = await started(startServerProcess(["dev"], { cwd }));
    try {
      expect(server.stderr()).toContain(`  dashboard    ${server.url}/ui/`);
      const link = new RegExp(`one-time sign-in link \\(15 min\\): (${server.url.replace(/[.]/g, "\\.")}/ui/sign-in/link\\?token=[A-Za-z0-9_-]{43})`).exec(server.stderr())?.[1];
      expect(link).toBeDefined();
      const token = new URL(link!).searchParams.get("token")!;
      const page = await fetch(link!);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("Continue to the dashboard");
      const spend = () => fetch(`${server.url}/ui/sign-in/link`, { method: "POST", body: new URLSearchParams({ token }), redirect: "manual" });
      const first = await spend();
      expect(first.status).toBe(303);
      const cookie = first.headers.getSetCookie().find((c) => c.startsWith("understudy_session="))!.split(";")[0]!;
      const jobs = await fetch(`${server.url}/ui/jobs`, { headers: { cookie } });
      expect(jobs.status).toBe(200);
      expect(await jobs.text()).toContain(`<strong data-tenant="true">dev</strong>`);
      expect((await spend()).status).toBe(401);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  test("first start makes a key, a tenant and an API key; a second reuses them; a database without its key is refused", async () => {
    const cwd = workDir();
    const first = await started(startServerProcess(["dev"], { cwd }));
    const keyFile = join(cwd, ".understudy", "master.key");
    const apiKeyFile = join(cwd, ".understudy", "dev-api-key");
    for (const file of [keyFile, apiKeyFile, join(cwd, ".understudy", "understudy.db")]) {
      expect((statSync(file).mode & 0o777).toString(8)).toBe("600");
    }
    const apiKey = readFileSync(apiKeyFile, "utf8").trim();
    const keyId = masterKeyId(new Uint8Array(Buffer.from(readFileSync(keyFile, "utf8").trim(), "base64")));
    expect(first.stderr()).toContain(apiKey); // printed once
    expect(first.stderr()).toContain(keyId);
    expect(first.stderr()).toContain("curl -s http://127.0.0.1:");
    expect((await postJson(first.url, "/v1/credentials/upsert", apiKey, { name: "pw", value: "dev-secret-value" })).status).toBe(200);
    expect(await first.stop()).toBe(0);

    const second = await started(startServerProcess(["dev"], { cwd }));
    expect(second.stderr()).not.toContain(apiKey);
    expect(second.stderr()).toContain("in .understudy/dev-api-key");
    expect(second.stderr()).toContain(keyId);
    expect(second.stderr()).not.toContain("(new, saved in");
    expect((await postJson(second.url, "/v1/credentials/get", apiKey, { name: "pw" })).body.value).toBe("dev-secret-value");
    expect(await second.stop()).toBe(0);
    expect(readFileSync(keyFile, "utf8").trim()).toBeTruthy();

    rmSync(keyFile);
    const refused = await runCliProcess(["dev"], { cwd });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("will not give a database a new key");
    expect(existsSync(keyFile)).toBe(false);
  });
});
