/**
 * `understudy profiles upload|list|delete` on the database, and
 * `understudy run --profile-state FILE` with a real Chromium against a test
 * site that needs a cookie.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config";
import { openProfileForJob } from "../../src/profiles/service";
import { openStore } from "../../src/server/start";
import { toMasterKey } from "../../src/vault/master-key";
import { describeWithChromium } from "../chromium";
import { newMasterKey, tempDir } from "../helpers";
import { runCliProcess } from "../process-helpers";
import { signedInState, startCookieSite } from "./site";

setDefaultTimeout(60_000);

const dirs: { remove(): void }[] = [];
afterAll(() => {
  for (const d of dirs) d.remove();
});
function workDir(): string {
  const dir = tempDir();
  dirs.push(dir);
  return dir.path;
}

describe("understudy profiles", () => {
  test("upload seals a storageState file as the tenant's profile; list shows it without the state; delete removes it", async () => {
    const cwd = workDir();
    const master = newMasterKey();
    const dbPath = join(cwd, "u.db");
    const env = { UNDERSTUDY_MASTER_KEY: master.text, UNDERSTUDY_DB: dbPath };
    expect((await runCliProcess(["tenants", "create", "acme"], { cwd, env })).code).toBe(0);
    const cookie = `cli-cookie-${crypto.randomUUID()}`;
    const state = { cookies: [{ name: "sid", value: cookie, domain: "example.test" }], origins: [] };
    writeFileSync(join(cwd, "state.json"), JSON.stringify(state));

    const uploaded = await runCliProcess(["profiles", "upload", "--tenant", "acme", "portal", "state.json"], { cwd, env });
    expect({ code: uploaded.code, stderr: uploaded.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('Created browser profile "portal" of tenant "acme" (1 cookies, 0 origins)') });
    expect(uploaded.stdout).toMatch(/^[0-9a-f-]{36}\tportal\tversion 1\n$/);
    const replaced = await runCliProcess(["profiles", "upload", "--tenant", "acme", "portal", "state.json"], { cwd, env });
    expect(replaced.stdout).toContain("\tportal\tversion 2\n");

    const listed = await runCliProcess(["profiles", "list", "--tenant", "acme"], { cwd, env });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain("\tportal\tversion 2\t");
    for (const run of [uploaded, replaced, listed]) expect(run.stdout + run.stderr).not.toContain(cookie);
    expect(readFileSync(dbPath).includes(Buffer.from(cookie))).toBe(false);

    // What the server opens for a job is the file's state (Playwright's defaults filled in).
    const store = await openStore(loadConfig({}), dbPath, { current: toMasterKey(master.bytes) });
    try {
      const tenant = await store.db.selectFrom("tenants").select("id").where("name", "=", "acme").executeTakeFirstOrThrow();
      const opened = await openProfileForJob({ db: store.db, vault: store.vault, clock: { now: () => new Date() } }, tenant.id, "cli-test", "portal");
      expect(opened.state?.cookies).toEqual([{ name: "sid", value: cookie, domain: "example.test", path: "/", expires: -1, httpOnly: false, secure: false, sameSite: "Lax" }]);
    } finally {
      await store.db.destroy();
    }

    const deleted = await runCliProcess(["profiles", "delete", "--tenant", "acme", "portal"], { cwd, env });
    expect({ code: deleted.code, stderr: deleted.stderr }).toEqual({ code: 0, stderr: 'Deleted browser profile "portal" of tenant "acme".\n' });
    const again = await runCliProcess(["profiles", "delete", "--tenant", "acme", "portal"], { cwd, env });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("No cloud profile found for portal");
    expect((await runCliProcess(["profiles", "list", "--tenant", "acme"], { cwd, env })).stdout).toBe("");
  });

  test("a file that is not a storageState, a bad name or no master key is refused, and nothing is stored", async () => {
    const cwd = workDir();
    const env = { UNDERSTUDY_MASTER_KEY: newMasterKey().text, UNDERSTUDY_DB: join(cwd, "u.db") };
    expect((await runCliProcess(["tenants", "create", "acme"], { cwd, env })).code).toBe(0);
    writeFileSync(join(cwd, "bad.json"), JSON.stringify({ cookies: [{ name: "sid", value: "secret-value-123" }] }));
    writeFileSync(join(cwd, "notjson.json"), "secret-value-456 {");
    writeFileSync(join(cwd, "ok.json"), JSON.stringify({ cookies: [] }));
    const bad = await runCliProcess(["profiles", "upload", "--tenant", "acme", "portal", "bad.json"], { cwd, env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("bad.json is not a Playwright storageState: cookies.0.domain");
    const notJson = await runCliProcess(["profiles", "upload", "--tenant", "acme", "portal", "notjson.json"], { cwd, env });
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).not.toContain("secret-value-456");
    expect((await runCliProcess(["profiles", "upload", "--tenant", "acme", "a/b", "ok.json"], { cwd, env })).code).toBe(2);
    const noKey = await runCliProcess(["profiles", "upload", "--tenant", "acme", "portal", "ok.json"], { cwd, env: { UNDERSTUDY_DB: env.UNDERSTUDY_DB } });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain("UNDERSTUDY_MASTER_KEY");
    expect((await runCliProcess(["profiles", "list", "--tenant", "acme"], { cwd, env })).stdout).toBe("");
    expect((await runCliProcess(["profiles", "list"], { cwd, env })).code).toBe(2);
  });
});

const WORKFLOW = `import { workflow } from "libretto";
export default workflow("local-portal", {
  authProfile: { name: "portal", refresh: true },
  async handler(ctx, input) {
    await ctx.page.goto(input.site + "/set");
    await ctx.page.goto(input.site + "/whoami");
    return { who: await ctx.page.textContent("#who") };
  },
});
`;

describeWithChromium("understudy run --profile-state", (chromiumPath) => {
  test("the state file's cookie is in the browser; with refresh, what the site set is written back to the file", async () => {
    const site = startCookieSite();
    try {
      const cwd = workDir();
      writeFileSync(join(cwd, "portal.ts"), WORKFLOW);
      writeFileSync(join(cwd, "state.json"), JSON.stringify(signedInState(site)));
      const env = { UNDERSTUDY_CHROMIUM_PATH: chromiumPath };
      const params = JSON.stringify({ site: site.url });

      const without = await runCliProcess(["run", "portal.ts", "--params", params], { cwd, env, timeoutMs: 45_000 });
      expect(without.code).toBe(0);
      expect(JSON.parse(without.stdout)).toEqual({ who: "signed out" });
      expect(without.stderr).toContain('declares authProfile "portal"; a local run starts without it unless given --profile-state FILE');

      const run = await runCliProcess(["run", "portal.ts", "--params", params, "--profile-state", "state.json"], { cwd, env, timeoutMs: 45_000 });
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: expect.stringContaining("browser state saved to state.json") });
      expect(JSON.parse(run.stdout)).toEqual({ who: "signed in as alice" });
      const saved = JSON.parse(readFileSync(join(cwd, "state.json"), "utf8"));
      expect(Object.fromEntries(saved.cookies.map((c: { name: string; value: string }) => [c.name, c.value]))).toEqual({ sid: site.session, fresh: site.fresh });
      expect(run.stderr).not.toContain(site.session);
    } finally {
      site.stop();
    }
  });
});
