import { expect, test } from "bun:test";
import { chromium } from "playwright-core";
import { pruneOnce } from "../../src/artifacts/retention";
import { loadConfig } from "../../src/config";
import { decodePng } from "../artifacts/png";
import { describeWithChromium } from "../chromium";
import { sessionHarness } from "./support";

// Session recordings (README "Remote browser sessions"): screenshots of a
// session's pages, taken by the server, shown at a tokened URL that a person
// opens in a web browser without the API key.

/** The PNGs inlined in a recording page. */
function inlinePngs(html: string): Uint8Array[] {
  return [...html.matchAll(/src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/g)].map((m) => new Uint8Array(Buffer.from(m[1]!, "base64")));
}

describeWithChromium("session recordings", (chromiumPath) => {
  const { start, siteUrl } = sessionHarness(chromiumPath, "<!doctype html><title>Recorded</title><body style='background:#1e90ff'><h1 id=greeting>Hello from 127.0.0.1</h1>");

  test("a closed session's recording opens without the API key and holds a PNG of its page; only its own token opens it", async () => {
    const server = await start({ UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS: "0" });
    const session = (await server.post("/v1/sessions/create", { start_url: siteUrl(), viewport: { width: 800, height: 600 } })).body;
    const id: string = session.session_id;
    // Nothing recorded yet (final screenshot only): null.
    expect((await server.post("/v1/recordings/get", { session_id: id })).body).toEqual({ recording_url: null, recording_url_expires_at: null });

    const client = await chromium.connectOverCDP(session.cdp_url);
    try {
      const page = client.contexts()[0]!.pages()[0]!;
      await page.waitForLoadState();
      expect(await page.locator("#greeting").textContent()).toBe("Hello from 127.0.0.1");
    } finally {
      await client.close();
    }
    expect((await server.post("/v1/sessions/close", { session_id: id })).status).toBe(200);

    const got = await server.post("/v1/recordings/get", { session_id: id });
    expect(got.status).toBe(200);
    const url: string = got.body.recording_url;
    expect(url.startsWith(`${server.url}/v1/recordings/view/${id}/`)).toBe(true);
    const token = url.slice(url.lastIndexOf("/") + 1);
    expect(Buffer.from(token, "base64url").length).toBe(32);
    // Expires with the artifacts' retention (7 days by default) after its last screenshot.
    const expiresIn = new Date(got.body.recording_url_expires_at).getTime() - Date.now();
    expect(expiresIn).toBeGreaterThan(6 * 24 * 3600 * 1000);
    expect(expiresIn).toBeLessThanOrEqual(7 * 24 * 3600 * 1000);

    // A web browser's GET: no API key.
    const view = await fetch(url);
    expect(view.status).toBe(200);
    expect(view.headers.get("content-type")).toContain("text/html");
    const csp = view.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("img-src data:");
    expect(csp).not.toContain("script-src");
    expect(view.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await view.text();
    expect(html).not.toContain("<script");
    const pngs = inlinePngs(html);
    expect(pngs.length).toBeGreaterThanOrEqual(1);
    const png = decodePng(pngs.at(-1)!);
    expect(png.width).toBeGreaterThan(100);
    expect(png.width).toBeLessThanOrEqual(800);
    expect(png.height).toBeGreaterThan(100);
    expect(png.height).toBeLessThanOrEqual(600);
    // The page's blue background is what was captured.
    const [r, g, b] = png.pixel(png.width - 5, png.height - 5);
    expect([r, g, b]).toEqual([0x1e, 0x90, 0xff]);

    // A tampered token, a missing one, another session's token: 404 with the JSON error body.
    const tampered = url.slice(0, -2) + (url.endsWith("AA") ? "BB" : "AA");
    for (const bad of [tampered, `${server.url}/v1/recordings/view/${id}/`, `${server.url}/v1/recordings/view/${id}`]) {
      const refused = await fetch(bad);
      expect(refused.status).toBe(404);
      expect(await refused.json()).toMatchObject({ success: false, code: "NOT_FOUND", status: 404 });
    }
    const other = (await server.post("/v1/sessions/create", {}, { key: server.keys.beta })).body;
    await server.post("/v1/sessions/close", { session_id: other.session_id }, { key: server.keys.beta });
    const otherUrl: string = (await server.post("/v1/recordings/get", { session_id: other.session_id }, { key: server.keys.beta })).body.recording_url;
    const otherToken = otherUrl.slice(otherUrl.lastIndexOf("/") + 1);
    expect((await fetch(url.replace(token, otherToken))).status).toBe(404);
    expect((await fetch(otherUrl)).status).toBe(200);
    // Only GET opens it.
    expect((await fetch(url, { method: "POST" })).status).toBe(405);

    // Tenant B cannot get A's recording: 404, as if absent.
    const foreign = await server.post("/v1/recordings/get", { session_id: id }, { key: server.keys.beta });
    expect(foreign.status).toBe(404);

    // Each recordings/get gives a working URL; earlier ones keep working.
    const second: string = (await server.post("/v1/recordings/get", { session_id: id })).body.recording_url;
    expect(second).not.toBe(url);
    expect((await fetch(second)).status).toBe(200);
    expect((await fetch(url)).status).toBe(200);

    // No token reaches the log, the metrics or the database in clear.
    const logs = server.logs.join("\n");
    for (const t of [token, otherToken, second.slice(second.lastIndexOf("/") + 1)]) expect(logs).not.toContain(t);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).not.toContain(token);
    const stored = await server.db.selectFrom("session_recording_tokens").select("token_hash").execute();
    expect(stored.some((row) => row.token_hash.includes(token))).toBe(false);

    // Retention: once the recording is older than UNDERSTUDY_ARTIFACT_RETENTION_DAYS, its URL is a 404, and pruning deletes it.
    const old = new Date(Date.now() - 8 * 24 * 3600 * 1000).toISOString();
    await server.db.updateTable("session_recording_frames").set({ created_at: old }).where("session_id", "=", id).execute();
    expect((await fetch(url)).status).toBe(404);
    const counts = await pruneOnce(server.db, { now: () => new Date() }, loadConfig({}).artifacts);
    expect(counts.recordings).toBeGreaterThanOrEqual(1);
    expect(await server.db.selectFrom("session_recording_frames").select("id").where("session_id", "=", id).execute()).toEqual([]);
    expect(await server.db.selectFrom("session_recording_tokens").select("id").where("session_id", "=", id).execute()).toEqual([]);
    // The other session's recent recording is kept.
    expect((await fetch(otherUrl)).status).toBe(200);
    // A pruned recording: null again while the session is known, and its old URL is a 404.
    expect((await server.post("/v1/recordings/get", { session_id: id })).body.recording_url).toBeNull();
    expect((await fetch(url)).status).toBe(404);
  });

  test("periodic screenshots are taken while a session runs, and a final one when it idles out", async () => {
    const server = await start({ UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS: "200", UNDERSTUDY_SESSION_IDLE_MS: "1500" });
    const session = (await server.post("/v1/sessions/create", { start_url: siteUrl() })).body;
    const id: string = session.session_id;
    const frameCount = async () => (await server.db.selectFrom("session_recording_frames").select("id").where("session_id", "=", id).execute()).length;
    for (let i = 0; i < 200 && (await frameCount()) < 2; i++) await Bun.sleep(100);
    expect(await frameCount()).toBeGreaterThanOrEqual(2);
    const get = () => server.post("/v1/sessions/get", { session_id: id });
    for (let i = 0; i < 400 && (await get()).body.status === "running"; i++) await Bun.sleep(50);
    expect((await get()).body).toMatchObject({ status: "closed", closed_reason: "idle_timeout" });
    const url: string = (await server.post("/v1/recordings/get", { session_id: id })).body.recording_url;
    const pngs = inlinePngs(await (await fetch(url)).text());
    expect(pngs.length).toBeGreaterThanOrEqual(2);
    for (const png of pngs) expect(decodePng(png).width).toBeGreaterThan(0);
  });

  test("shutdown keeps a final screenshot of each open session (bounded in time)", async () => {
    const server = await start({ UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS: "0" });
    const id: string = (await server.post("/v1/sessions/create", { start_url: siteUrl() })).body.session_id;
    // What the server's close does first (it then closes the database, in a directory the test helper removes).
    await server.server.deps.sessions.closeAll();
    expect((await server.post("/v1/sessions/get", { session_id: id })).body).toMatchObject({ status: "closed", closed_reason: "shutdown" });
    const rows = await server.db.selectFrom("session_recording_frames").select(["tenant_id", "bytes"]).where("session_id", "=", id).execute();
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows[0]!.tenant_id).toBe(server.tenants.alpha);
    expect(decodePng(rows[0]!.bytes).width).toBeGreaterThan(0);
  });
});
