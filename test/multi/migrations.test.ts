/**
 * Instances started together on an empty PostgreSQL schema migrate it once:
 * Kysely's migrator holds an advisory lock while it runs, and the others then
 * find nothing left to do. Every instance answers, and each migration is
 * recorded exactly once.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { migrations } from "../../src/store/migrations";
import { newMasterKey, tempDir } from "../helpers";
import { freshSchema, rawRows } from "../postgres";
import { startServerProcess, type ServerProcess } from "../process-helpers";
import { describeWithPostgres } from "./cluster";

describeWithPostgres("migrations with several instances", () => {
  const started: ServerProcess[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    await Promise.all(started.map((s) => (s.child.exitCode === null ? s.stop() : 0)));
    for (const cleanup of cleanups) await cleanup();
  });

  test("3 instances started at once on an empty schema: each migration runs once, and all three serve", async () => {
    const schema = await freshSchema();
    const dir = tempDir("understudy-migrate-");
    cleanups.push(() => schema.drop(), () => dir.remove());
    const master = newMasterKey();
    const instances = await Promise.all(
      [0, 1, 2].map((n) =>
        startServerProcess(["serve"], {
          cwd: dir.path,
          env: {
            UNDERSTUDY_DATABASE_URL: schema.url,
            UNDERSTUDY_MASTER_KEY: master.text,
            UNDERSTUDY_DB: join(dir.path, `instance-${n}`, "understudy.db"),
            UNDERSTUDY_WORKFLOWS_DIR: join(dir.path, "workflows"),
          },
          timeoutMs: 30_000,
        }),
      ),
    );
    started.push(...instances);
    for (const instance of instances) expect((await fetch(`${instance.url}/readyz`)).status).toBe(200);
    const applied = await rawRows(schema.url, "SELECT name FROM kysely_migration ORDER BY name");
    expect(applied.map((r) => r.name)).toEqual(Object.keys(migrations).sort());
    // One master key check row: the first instance made it, the others verified against it.
    expect(await rawRows(schema.url, "SELECT count(*)::int AS n FROM vault_meta")).toEqual([{ n: 1 }]);
  }, 60_000);
});
