import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { revokeApiKey } from "../../src/tenants/store";
import { SESSION_TTL_MS, LINK_TTL_MS, createSignInLink } from "../../src/ui/sessions";
import { addApiKey, manualClock, startTestServer, type TestServer } from "../helpers";
import { signIn } from "./support";

/**
 * The dashboard's sign-in, sessions and CSRF defences over real HTTP: what a
 * browser (or an attacker's page) would be told.
 */
const clock = manualClock("2026-11-30T10:00:00.000Z");
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ clock });
});
afterAll(() => server.close());

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.url}${path}`, { headers, redirect: "manual" });
const postForm = (path: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { method: "POST", headers, body: new URLSearchParams(fields), redirect: "manual" });
const credentialNames = async () => (await server.post("/v1/credentials/list", {})).body.credentials.map((c: { name: string }) => c.name);

describe("signing in", () => {
  test("a page without a session sends the browser to the sign-in page; a change without one is refused with 401", async () => {
    for (const path of ["/ui/", "/ui/jobs", "/ui/credentials", "/ui/workflows", "/ui/schedules", "/ui/webhooks", "/ui/audit"]) {
      const r = await get(path);
      expect(r.status).toBe(303);
      expect(r.headers.get("location")).toBe("/ui/sign-in");
    }
    const r = await postForm("/ui/credentials/upsert", { name: "x", value: "y" });
    expect(r.status).toBe(401);
    expect(await r.text()).toContain("Sign in again");
    expect(await credentialNames()).toEqual([]);
  });

  test("an unknown, empty or revoked key gets a 4xx sign-in page with the reason, and no cookie", async () => {
    for (const [key, status, says] of [
      ["usk_not_a_real_key", 401, "not valid"],
      ["", 400, "Enter an API key"],
    ] as const) {
      const r = await postForm("/ui/sign-in", { api_key: key });
      expect(r.status).toBe(status);
      expect(await r.text()).toContain(says);
      expect(r.headers.getSetCookie().filter((c) => c.includes("session"))).toEqual([]);
    }
    const { key, apiKeyId } = await addApiKey(server, server.tenants.alpha);
    await revokeApiKey(server.db, apiKeyId, clock.iso());
    const r = await postForm("/ui/sign-in", { api_key: key });
    expect(r.status).toBe(401);
    const json = await postForm("/ui/sign-in", { api_key: server.keys.alpha }, { "content-type": "application/json" });
    expect(json.status).toBe(400);
  });

  test("a good key gives an HttpOnly, SameSite=Strict, expiring cookie that holds no API key; behind TLS it is Secure with the __Host- prefix", async () => {
    const r = await postForm("/ui/sign-in", { api_key: server.keys.alpha });
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/ui/jobs");
    const [cookie] = r.headers.getSetCookie().filter((c) => c.startsWith("understudy_session="));
    expect(cookie).toMatch(/^understudy_session=[A-Za-z0-9_-]{43}; Path=\/ui; Max-Age=28800; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(server.keys.alpha);

    const tls = await postForm("/ui/sign-in", { api_key: server.keys.alpha }, { "x-forwarded-proto": "https" });
    const [secure] = tls.headers.getSetCookie().filter((c) => c.includes("session="));
    expect(secure).toMatch(/^__Host-understudy_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=28800; HttpOnly; Secure; SameSite=Strict$/);
    const page = await get("/ui/jobs", { cookie: secure!.split(";")[0]!, "x-forwarded-proto": "https" });
    expect(page.status).toBe(200);
    expect(page.headers.get("strict-transport-security")).toBe("max-age=31536000");
    // The flash message a change carries to the next page is __Host- prefixed too.
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const changed = await postForm("/ui/credentials/upsert", { _csrf: csrf, name: "over_tls", value: "v" }, { cookie: secure!.split(";")[0]!, "x-forwarded-proto": "https" });
    expect(changed.status).toBe(303);
    expect(changed.headers.getSetCookie()).toEqual([expect.stringMatching(/^__Host-understudy_flash=[^;]+; Path=\/; Max-Age=60; HttpOnly; Secure; SameSite=Strict$/)]);
    await server.post("/v1/credentials/delete", { id: (await server.post("/v1/credentials/list", {})).body.credentials[0].credential_id });
    // The secure cookie is not taken over plain http, nor the plain one over TLS.
    expect((await get("/ui/jobs", { cookie: secure!.split(";")[0]! })).status).toBe(303);
    expect((await get("/ui/jobs", { cookie: cookie!.split(";")[0]!, "x-forwarded-proto": "https" })).status).toBe(303);
  });

  test("a session ends when it expires, when its API key is revoked, and on sign-out", async () => {
    const expiring = await signIn(server, server.keys.alpha);
    expect((await expiring.get("/ui/credentials")).status).toBe(200);
    clock.advance(SESSION_TTL_MS);
    expect((await expiring.get("/ui/credentials")).status).toBe(303);

    const { key, apiKeyId } = await addApiKey(server, server.tenants.alpha);
    const revoked = await signIn(server, key);
    expect((await revoked.get("/ui/credentials")).status).toBe(200);
    await revokeApiKey(server.db, apiKeyId, clock.iso());
    expect((await revoked.get("/ui/credentials")).status).toBe(303);

    const leaving = await signIn(server, server.keys.alpha);
    const out = await leaving.post("/ui/sign-out", {});
    expect(out.status).toBe(303);
    expect(out.location).toBe("/ui/sign-in");
    expect(out.headers.getSetCookie().find((c) => c.startsWith("understudy_session="))).toContain("Max-Age=0");
    // The old cookie, replayed, is worth nothing.
    expect((await leaving.get("/ui/credentials")).status).toBe(303);
    expect((await leaving.post("/ui/credentials/upsert", { name: "after_sign_out", value: "v" })).status).toBe(401);
    expect(await credentialNames()).not.toContain("after_sign_out");
  });

  test("the one-time sign-in link works once and within 15 minutes, and only by POST from the dashboard's own page", async () => {
    const alphaKey = await server.db.selectFrom("api_keys").select("id").where("tenant_id", "=", server.tenants.alpha).where("revoked_at", "is", null).executeTakeFirstOrThrow();
    const caller = { tenantId: server.tenants.alpha, apiKeyId: alphaKey.id };
    const { token } = await createSignInLink(server.deps, caller);
    const shown = await get(`/ui/sign-in/link?token=${token}`);
    expect(shown.status).toBe(200);
    expect(shown.headers.getSetCookie()).toEqual([]);
    expect(await postForm("/ui/sign-in/link", { token }, { "sec-fetch-site": "cross-site" }).then((r) => r.status)).toBe(403);
    const first = await postForm("/ui/sign-in/link", { token });
    expect(first.status).toBe(303);
    expect(first.headers.getSetCookie().some((c) => c.startsWith("understudy_session="))).toBe(true);
    const second = await postForm("/ui/sign-in/link", { token });
    expect(second.status).toBe(401);
    expect(await second.text()).toContain("has been used or has expired");

    const late = await createSignInLink(server.deps, caller);
    clock.advance(LINK_TTL_MS);
    expect((await postForm("/ui/sign-in/link", { token: late.token })).status).toBe(401);
  });
});

describe("CSRF and cross-site requests", () => {
  test("a change needs the session's CSRF token: missing, wrong or another session's token is refused with 403 and changes nothing", async () => {
    const client = await signIn(server, server.keys.alpha);
    const other = await signIn(server, server.keys.alpha);
    for (const fields of <Record<string, string>[]>[{ name: "csrf_missing", value: "v" }, { _csrf: "forged", name: "csrf_forged", value: "v" }, { _csrf: other.csrf, name: "csrf_other", value: "v" }]) {
      const r = await client.post("/ui/credentials/upsert", fields, { csrf: false });
      expect(r.status).toBe(403);
      expect(r.text).toContain("security token");
    }
    expect(await credentialNames()).toEqual([]);
    const ok = await client.post("/ui/credentials/upsert", { name: "csrf_ok", value: "v" });
    expect(ok.status).toBe(303);
    expect(await credentialNames()).toEqual(["csrf_ok"]);
    await server.post("/v1/credentials/delete", { id: (await server.post("/v1/credentials/list", {})).body.credentials[0].credential_id });
  });

  test("a request from another site or origin is refused even with the token", async () => {
    const client = await signIn(server, server.keys.alpha);
    for (const headers of <Record<string, string>[]>[{ "sec-fetch-site": "cross-site" }, { "sec-fetch-site": "same-site" }, { origin: "http://evil.example" }, { origin: "null" }]) {
      const r = await client.post("/ui/credentials/upsert", { name: "cross", value: "v" }, { headers });
      expect(r.status).toBe(403);
      expect(r.text).toContain("came from another");
    }
    expect(await credentialNames()).toEqual([]);
  });
});

describe("what every page sends", () => {
  test("a strict CSP, the security headers and no-store; no inline script or style anywhere", async () => {
    const client = await signIn(server, server.keys.alpha);
    for (const path of ["/ui/sign-in", "/ui/jobs", "/ui/credentials", "/ui/workflows", "/ui/schedules", "/ui/webhooks", "/ui/audit"]) {
      const r = path === "/ui/sign-in" ? await get(path) : await fetch(`${server.url}${path}`, { headers: { cookie: client.cookie } });
      const html = await r.text();
      expect(r.status).toBe(200);
      expect(r.headers.get("content-security-policy")).toBe(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      );
      expect(r.headers.get("x-content-type-options")).toBe("nosniff");
      expect(r.headers.get("x-frame-options")).toBe("DENY");
      expect(r.headers.get("referrer-policy")).toBe("same-origin");
      expect(r.headers.get("cross-origin-opener-policy")).toBe("same-origin");
      expect(r.headers.get("cache-control")).toBe("no-store");
      // Every script has a src; no style attribute, no style element, no on* handler.
      expect(html.match(/<script(?![^>]*\bsrc=)[^>]*>/g)).toBeNull();
      expect(html).not.toMatch(/\sstyle=|<style|\son[a-z]+=/i);
      expect(html).not.toContain(server.keys.alpha);
    }
  });

  test("the assets are served from the server itself, gzip'd, with immutable names; unknown ones are 404", async () => {
    const page = await (await get("/ui/sign-in")).text();
    const paths = [...page.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(paths).toHaveLength(3);
    expect(page).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    for (const path of paths) {
      const r = await fetch(`${server.url}${path}`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-encoding")).toBe("gzip");
      expect(r.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    }
    expect((await get("/ui/assets/app.000000000000.js")).status).toBe(404);
  });

  test("an unknown dashboard path is a 404 page; the API's routes are untouched", async () => {
    const client = await signIn(server, server.keys.alpha);
    expect((await client.get("/ui/nothing-here")).status).toBe(404);
    expect((await server.post("/v1/credentials/list", {})).status).toBe(200);
  });

  test("no session token, link token or API key reaches the request log", async () => {
    const client = await signIn(server, server.keys.alpha);
    await client.get("/ui/jobs");
    const token = client.cookie.split("=")[1]!;
    const logs = server.logs.join("\n");
    expect(logs).toContain('"path":"/ui/jobs"');
    expect(logs).not.toContain(token);
    expect(logs).not.toContain(server.keys.alpha);
    expect(logs).not.toContain("token=");
  });
});
