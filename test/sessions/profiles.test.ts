/**
 * Browser profiles in remote sessions (`libretto run --provider
 * libretto-cloud` sends a workflow's authProfile as profile_name, and its
 * refresh as profile_persist): the profile's cookies and localStorage are in
 * the session's browser before its start page opens, and with persist the
 * browser's state is the profile's next version once the session ends.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { openProfileForJob } from "../../src/profiles/service";
import { describeWithChromium } from "../chromium";
import type { TestServer } from "../helpers";
import { signedInState, startCookieSite } from "../profiles/site";
import { sessionHarness } from "./support";

const STORED_PREFERENCE = "dark-mode-preference-0b7e";
const CART = "three-apples-in-the-cart-5c1d";

async function storedState(server: TestServer, name: string, tenant = server.tenants.alpha) {
  return openProfileForJob(server.deps, tenant, "test-read", name);
}

describeWithChromium("browser profiles in remote sessions", (chromiumPath) => {
  const { start } = sessionHarness(chromiumPath, "<!doctype html><title>unused</title>");

  test("profile_name loads the profile before the start page; profile_persist saves what the site set; it is refused to other tenants and sealed at rest", async () => {
    const site = startCookieSite();
    try {
      const server = await start();
      const state = { ...signedInState(site), origins: [{ origin: site.url, localStorage: [{ name: "pref", value: STORED_PREFERENCE }] }] };
      expect((await server.post("/v1/browserProfiles/upload", { name: "shop", state })).status).toBe(200);
      const before = await storedState(server, "shop");

      // Another tenant has no profile of that name: 404, and no browser starts.
      const refused = await server.post("/v1/sessions/create", { profile_name: "shop", start_url: `${site.url}/whoami` }, { key: server.keys.beta });
      expect(refused.status).toBe(404);
      expect(refused.body.message).toContain("No cloud profile found for shop");
      expect(server.deps.sessions.openSessionIds(server.tenants.beta)).toEqual([]);

      const created = await server.post("/v1/sessions/create", { profile_name: "shop", profile_persist: true, start_url: `${site.url}/whoami` });
      expect(created.status).toBe(200);
      const session = created.body;
      const browser = await chromium.connectOverCDP(session.cdp_url);
      try {
        const first = browser.contexts()[0]!.pages()[0]!;
        await first.waitForLoadState();
        // The start page's own request carried the profile's cookie.
        expect(first.url()).toBe(`${site.url}/whoami`);
        expect(await first.locator("#who").textContent()).toBe("signed in as alice");
        expect(await first.evaluate("localStorage.getItem('pref')")).toBe(STORED_PREFERENCE);
        // What the site and the page change during the session.
        await first.goto(`${site.url}/set`);
        await first.evaluate(`localStorage.setItem('cart', ${JSON.stringify(CART)})`);
      } finally {
        await browser.close();
      }

      // While the session would still save into it, the profile cannot be deleted.
      const busy = await server.post("/v1/browserProfiles/delete", { name: "shop" });
      expect(busy.status).toBe(409);
      expect(busy.body.data.session_ids).toEqual([session.session_id]);
      expect(busy.body.message).toContain("/v1/sessions/close");

      expect((await server.post("/v1/sessions/close", { session_id: session.session_id })).status).toBe(200);
      const after = await storedState(server, "shop");
      expect(after.version).toBe(before.version + 1);
      const cookies = Object.fromEntries(after.state!.cookies.map((c) => [c.name, c.value]));
      expect(cookies).toEqual({ sid: site.session, fresh: site.fresh });
      const storage = after.state!.origins.find((o) => o.origin === site.url)?.localStorage ?? [];
      expect(Object.fromEntries(storage.map((e) => [e.name, e.value]))).toEqual({ pref: STORED_PREFERENCE, cart: CART });
      // Beta's profiles are untouched; beta cannot see alpha's.
      expect((await server.post("/v1/browserProfiles/list", {}, { key: server.keys.beta })).body.profiles).toEqual([]);

      // Never in clear: not in a log line, not in the raw database (its WAL included).
      const logs = server.logs.join("\n");
      const files = [server.dbPath, `${server.dbPath}-wal`].filter((path) => existsSync(path)).map((path) => readFileSync(path));
      for (const secret of [site.session, site.fresh, STORED_PREFERENCE, CART]) {
        expect(logs).not.toContain(secret);
        for (const file of files) expect(file.includes(Buffer.from(secret))).toBe(false);
      }
      // Deletable once the session is closed.
      expect((await server.post("/v1/browserProfiles/delete", { name: "shop" })).status).toBe(200);
    } finally {
      site.stop();
    }
  });

  test("without profile_persist the profile is left as it was; a new name with profile_persist is made at close; bad combinations are 4xx", async () => {
    const site = startCookieSite();
    try {
      const server = await start();
      expect((await server.post("/v1/browserProfiles/upload", { name: "portal", state: signedInState(site) })).status).toBe(200);
      const before = await storedState(server, "portal");
      const session = (await server.post("/v1/sessions/create", { profile_name: "portal", start_url: `${site.url}/whoami` })).body;
      const browser = await chromium.connectOverCDP(session.cdp_url);
      try {
        const page = browser.contexts()[0]!.pages()[0]!;
        expect(await page.locator("#who").textContent()).toBe("signed in as alice");
        await page.goto(`${site.url}/set`);
      } finally {
        await browser.close();
      }
      await server.post("/v1/sessions/close", { session_id: session.session_id });
      const after = await storedState(server, "portal");
      expect(after.version).toBe(before.version);
      expect(after.state!.cookies.map((c) => c.name)).toEqual(["sid"]);

      // A name that does not exist: 404 unless the session is to make it.
      const missing = await server.post("/v1/sessions/create", { profile_name: "new-login" });
      expect(missing.status).toBe(404);
      expect(missing.body.message).toContain("profile_persist");
      const making = (await server.post("/v1/sessions/create", { profile_name: "new-login", profile_persist: true, start_url: `${site.url}/set` })).body;
      expect(making.status).toBe("running");
      await server.post("/v1/sessions/close", { session_id: making.session_id });
      const made = await storedState(server, "new-login");
      expect(made.state!.cookies.map((c) => [c.name, c.value])).toEqual([["fresh", site.fresh]]);

      for (const [input, field] of [
        [{ profile_persist: true }, "profile_persist"],
        [{ profile_name: "has spaces inside" }, "profile_name"],
        [{ profile_name: 42 }, "profile_name"],
      ] as const) {
        const answer = await server.post("/v1/sessions/create", input);
        expect(answer.status).toBe(400);
        expect(JSON.stringify(answer.body.data.issues)).toContain(field);
      }
      expect(server.deps.sessions.openSessionIds(server.tenants.alpha)).toEqual([]);
    } finally {
      site.stop();
    }
  });
});
