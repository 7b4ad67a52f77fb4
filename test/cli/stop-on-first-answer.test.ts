import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { newMasterKey, tempDir } from "../helpers";
import { freshSchema, onPostgres } from "../postgres";
import { childEnv, freePort } from "../process-helpers";

// The server answers /healthz while the last of its start-up finishes; a
// SIGTERM sent on that first 200 (an orchestrator that stops what it just
// saw ready, or the benchmark) must shut it down cleanly with exit 0, never
// find no handler yet and kill the process (exit 143).

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
const dirs: { remove(): void }[] = [];
afterAll(() => dirs.forEach((d) => d.remove()));

test("serve stopped by SIGTERM on its first /healthz 200 exits 0 after shutting down, every time", async () => {
  const dir = tempDir();
  dirs.push(dir);
  // On the PostgreSQL pass, a schema of its own: start-up's last steps there are round trips, a wider window.
  const schema = onPostgres ? await freshSchema() : undefined;
  const database: Record<string, string> = schema ? { UNDERSTUDY_DATABASE_URL: schema.url } : { UNDERSTUDY_DB: join(dir.path, "understudy.db") };
  const env = { UNDERSTUDY_MASTER_KEY: newMasterKey().text, ...database };
  for (let run = 0; run < 5; run++) {
    const port = freePort();
    const child = Bun.spawn([process.execPath, MAIN, "serve"], {
      cwd: dir.path,
      env: childEnv({ ...env, UNDERSTUDY_LISTEN: `127.0.0.1:${port}` }),
      stdout: "ignore",
      stderr: "pipe",
    });
    const deadline = Date.now() + 15_000;
    // As tight as a poll can be: no pause between attempts.
    for (;;) {
      expect(child.exitCode).toBeNull();
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error("serve did not answer /healthz in time");
    }
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const code = await child.exited;
    clearTimeout(timer);
    const stderr = await new Response(child.stderr).text();
    expect({ run, code }).toEqual({ run, code: 0 });
    expect(stderr).toContain("received SIGTERM, shutting down");
  }
  await schema?.drop();
}, 60_000);
