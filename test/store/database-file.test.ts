import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { call, serveDeployment } from "../e2e/serve-child";
import { expectNoSecretIn } from "../helpers";
import { runCliProcess, startServerProcess } from "../process-helpers";

// Issue 9, item 5: a database file that is there but empty, or not a
// database, is refused with a message that says what to do; only a first
// start (no file at all) makes a new database.

const deployments: ReturnType<typeof serveDeployment>[] = [];
afterAll(() => {
  for (const d of deployments) d.remove();
});

function deployment() {
  const d = serveDeployment({ workflowsDir: "workflows" });
  deployments.push(d);
  return d;
}

/** `understudy ARGS` on the deployment; a refused start exits at once (bounded anyway). */
async function cli(d: ReturnType<typeof deployment>, args: string[]) {
  return runCliProcess(args, { cwd: d.cwd, env: d.env, timeoutMs: 15_000 });
}

function expectUntouched(d: ReturnType<typeof deployment>, bytes: Buffer) {
  expect(readFileSync(d.dbPath).equals(bytes)).toBe(true);
  expect(existsSync(`${d.dbPath}-wal`)).toBe(false);
  expect(existsSync(`${d.dbPath}-shm`)).toBe(false);
}

describe("a database file that is there but no database", () => {
  test("an empty (0-byte) file: serve, the admin commands and backup refuse it, saying why and what to do, and leave it as it is", async () => {
    const d = deployment();
    writeFileSync(d.dbPath, "");
    const expected =
      `The database file ${d.dbPath} exists but is empty (0 bytes). Understudy makes a new database only where there is no file at all. ` +
      "If this is meant to be a fresh start, delete the file; otherwise restore the database from a backup (`understudy restore FILE`, server stopped).";
    for (const args of [["serve"], ["tenants", "list"], ["keys", "create", "--tenant", "acme"], ["backup", join(d.cwd, "b.db")]]) {
      const run = await cli(d, args);
      expect({ args, code: run.code }).toEqual({ args, code: 1 });
      expect(run.stderr).toBe(`understudy ${args[0]}: ${expected}\n`);
      expectUntouched(d, Buffer.alloc(0));
    }
  }, 60_000);

  test("a file that is not SQLite (garbage) is refused; one with an SQLite header but damaged pages too", async () => {
    const d = deployment();
    const garbage = randomBytes(64 * 1024);
    writeFileSync(d.dbPath, garbage);
    const run = await cli(d, ["serve"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`The database file ${d.dbPath} is not an SQLite database (it does not start with the SQLite header)`);
    expect(run.stderr).toContain("Point UNDERSTUDY_DB (or --db) at the right file, or restore the database from a backup");
    expectUntouched(d, garbage);

    // A real database whose pages after the first are overwritten.
    const good = deployment();
    await good.addTenant("acme");
    const damaged = Buffer.from(readFileSync(good.dbPath));
    expect(damaged.length).toBeGreaterThan(8192);
    randomBytes(damaged.length - 4096).copy(damaged, 4096);
    writeFileSync(d.dbPath, damaged);
    const again = await cli(d, ["serve"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`^understudy serve: The database file ${d.dbPath} is damaged \\(SQLite: [^)]+\\); restore the database from a backup`));
    expect(again.stderr).not.toContain("unexpected error");
    expectNoSecretIn(run.stderr + again.stderr, [d.env.UNDERSTUDY_MASTER_KEY!]);
  }, 60_000);

  test("no file at all is a first start: serve makes the database", async () => {
    const d = deployment();
    expect(existsSync(d.dbPath)).toBe(false);
    const server = await startServerProcess(["serve"], { cwd: d.cwd, env: d.env });
    try {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(statSync(d.dbPath).size).toBeGreaterThan(0);
  }, 30_000);

  test("the way out: `understudy restore` puts a backup in place of the empty file, and everything reads", async () => {
    const d = deployment();
    const key = await d.addTenant("acme");
    let server = await d.start();
    expect((await call(server, key, "/v1/credentials/upsert", { name: "token", value: "kept-safe-6060" })).status).toBe(200);
    const backup = join(d.cwd, "backup.db");
    expect((await cli(d, ["backup", backup])).code).toBe(0);
    expect(await server.stop()).toBe(0);

    // Lost: the file truncated to nothing.
    for (const suffix of ["-wal", "-shm"]) rmSync(d.dbPath + suffix, { force: true });
    writeFileSync(d.dbPath, "");
    expect((await cli(d, ["serve"])).code).toBe(1);

    const restored = await cli(d, ["restore", backup]);
    expect(restored.code, restored.stderr).toBe(0);
    server = await d.start();
    expect((await call(server, key, "/v1/credentials/get", { name: "token" })).body.value).toBe("kept-safe-6060");
    expect(await server.stop()).toBe(0);
  }, 60_000);
});
