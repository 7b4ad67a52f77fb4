import { expect, test } from "bun:test";
import { chromium, type Browser } from "playwright-core";
import { chromiumProcessesUsing, describeWithChromium, waitUntil } from "../chromium";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { bwrapAssertionsApply } from "../bwrap";
import { startTestServer } from "../helpers";
import { sessionHarness } from "./support";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** connectOverCDP's failure, as text (it must fail). */
async function refusal(cdpUrl: string): Promise<string> {
  let browser: Browser | undefined;
  try {
    browser = await chromium.connectOverCDP(cdpUrl, { timeout: 10_000 });
  } catch (error) {
    return String(error);
  }
  await browser.close();
  throw new Error("connectOverCDP succeeded where it should be refused");
}

describeWithChromium("remote browser sessions", (chromiumPath) => {
  const { start, siteUrl } = sessionHarness(chromiumPath, "<!doctype html><title>Remote</title><h1 id=greeting>Hello from 127.0.0.1</h1>");

  test("a Playwright client drives the session's browser over cdp_url; the token is the URL's only credential", async () => {
    const server = await start();
    const created = await server.post("/v1/sessions/create", { json: { timeout_seconds: 600, start_url: siteUrl() } });
    expect(created.status).toBe(200);
    const session = created.body.json;
    expect(session).toMatchObject({ success: true, status: "running", live_view_url: null });
    const cdpUrl: string = session.cdp_url;
    expect(cdpUrl.startsWith(`${server.url.replace("http", "ws")}/v1/sessions/cdp/${session.session_id}/`)).toBe(true);
    const token = cdpUrl.slice(cdpUrl.lastIndexOf("/") + 1);
    expect(Buffer.from(token, "base64url").length).toBe(32);
    expect((await server.post("/v1/sessions/get", { session_id: session.session_id })).body).toMatchObject({ status: "running", cdp_url: cdpUrl });

    const browser = await chromium.connectOverCDP(cdpUrl);
    try {
      // The start page is open in the default context, as the libretto CLI expects.
      const context = browser.contexts()[0]!;
      const first = context.pages()[0]!;
      await first.waitForLoadState();
      expect(await first.locator("#greeting").textContent()).toBe("Hello from 127.0.0.1");
      const page = await context.newPage();
      await page.goto(`${siteUrl()}other`);
      expect(await page.title()).toBe("Remote");
    } finally {
      await browser.close(); // disconnects only: the session goes on
    }
    expect((await server.post("/v1/sessions/get", { session_id: session.session_id })).body.status).toBe("running");

    // Given the http form of the URL, connectOverCDP first reads /json/version under it, as from Chromium.
    const overHttp = await chromium.connectOverCDP(cdpUrl.replace(/^ws/, "http"));
    try {
      const page = await overHttp.contexts()[0]!.newPage();
      await page.goto(siteUrl());
      expect(await page.locator("#greeting").textContent()).toBe("Hello from 127.0.0.1");
    } finally {
      await overHttp.close();
    }

    // Another tenant's token on this session's URL, or a wrong one, is refused.
    const other = (await server.post("/v1/sessions/create", {}, { key: server.keys.beta })).body;
    const otherToken = other.cdp_url.slice(other.cdp_url.lastIndexOf("/") + 1);
    const withOthersToken = cdpUrl.replace(token, otherToken);
    expect(await refusal(withOthersToken)).toContain("404");
    expect(await refusal(withOthersToken.replace(/^ws/, "http"))).toContain("404");
    expect(await refusal(cdpUrl.replace(token, token.slice(0, -2) + (token.endsWith("AA") ? "BB" : "AA")))).toContain("404");
    // A plain HTTP GET of the URL answers a JSON error, not the browser.
    const plain = await fetch(cdpUrl.replace("ws", "http"));
    expect(plain.status).toBe(400);

    // Beta cannot see or close alpha's session: 404, as if absent.
    for (const path of ["/v1/sessions/get", "/v1/sessions/close", "/v1/recordings/get"]) {
      const answer = await server.post(path, { session_id: session.session_id }, { key: server.keys.beta });
      expect(answer.status).toBe(404);
    }
    expect((await server.post("/v1/sessions/get", { session_id: session.session_id })).body.status).toBe("running");

    // No log line holds a token.
    const logs = server.logs.join("\n");
    expect(logs).not.toContain(token);
    expect(logs).not.toContain(otherToken);

    // After close: the URL is refused, the browser is gone, get says closed.
    const pid = server.server.deps.sessions.browserOf(session.session_id)!.pid;
    const { userDataDir } = server.server.deps.sessions.browserOf(session.session_id)!;
    const closed = await server.post("/v1/sessions/close", { session_id: session.session_id });
    expect(closed.body).toMatchObject({ success: true });
    expect(isAlive(pid)).toBe(false);
    expect(chromiumProcessesUsing(userDataDir)).toEqual([]);
    expect(await refusal(cdpUrl)).toContain("404");
    expect((await server.post("/v1/sessions/get", { session_id: session.session_id })).body).toMatchObject({
      status: "closed",
      cdp_url: null,
      closed_reason: "closed",
    });
    // Its final screenshot is its recording (test/sessions/recordings.test.ts).
    const recording = (await server.post("/v1/recordings/get", { session_id: session.session_id })).body;
    expect(recording.recording_url.startsWith(`${server.url}/v1/recordings/view/${session.session_id}/`)).toBe(true);
  });

  test("a connected client loses the session when it is closed", async () => {
    const server = await start();
    const session = (await server.post("/v1/sessions/create", {})).body;
    const browser = await chromium.connectOverCDP(session.cdp_url);
    const disconnected = new Promise<void>((resolve) => browser.on("disconnected", () => resolve()));
    await server.post("/v1/sessions/close", { session_id: session.session_id });
    await disconnected;
    expect(browser.isConnected()).toBe(false);
  });

  test("after the idle timeout with no client connected, the session is closed and its URL refused", async () => {
    const server = await start({ UNDERSTUDY_SESSION_IDLE_MS: "300" });
    const session = (await server.post("/v1/sessions/create", {})).body;
    const { pid } = server.server.deps.sessions.browserOf(session.session_id)!;
    const get = () => server.post("/v1/sessions/get", { session_id: session.session_id });
    // A connected client, even a silent one, keeps the session (several idle periods pass here).
    const client = await chromium.connectOverCDP(session.cdp_url);
    await Bun.sleep(1_500);
    expect((await get()).body.status).toBe("running");
    expect(client.isConnected()).toBe(true);
    // Once it leaves, the idle time runs.
    await client.close();
    for (let i = 0; i < 200 && (await get()).body.status === "running"; i++) await Bun.sleep(50);
    expect((await get()).body).toMatchObject({ status: "closed", closed_reason: "idle_timeout", cdp_url: null });
    await waitUntil(() => !isAlive(pid), 10_000, "the idle session's browser is gone");
    expect(await refusal(session.cdp_url)).toContain("idle timeout");
  });

  test("sessions are capped per tenant and in total", async () => {
    const server = await start({ UNDERSTUDY_SESSIONS_PER_TENANT: "1", UNDERSTUDY_MAX_SESSIONS: "2" });
    const first = await server.post("/v1/sessions/create", {});
    expect(first.status).toBe(200);
    const again = await server.post("/v1/sessions/create", {});
    expect(again.status).toBe(429);
    expect(again.body.message).toContain("UNDERSTUDY_SESSIONS_PER_TENANT");
    expect((await server.post("/v1/sessions/create", {}, { key: server.keys.beta })).status).toBe(200);
    // Two open on the server: a third tenant-free slot does not exist.
    await server.post("/v1/sessions/close", { session_id: first.body.session_id });
    const reopened = await server.post("/v1/sessions/create", {});
    expect(reopened.status).toBe(200);
  });

  test("UNDERSTUDY_MAX_SESSIONS=0 turns sessions off: create is a 503 saying so, and no browser starts", async () => {
    const server = await start({ UNDERSTUDY_MAX_SESSIONS: "0" });
    const refused = await server.post("/v1/sessions/create", {});
    expect(refused.status).toBe(503);
    expect(refused.body.message).toContain("turned off");
    expect(refused.body.message).toContain("UNDERSTUDY_MAX_SESSIONS=0");
    expect(server.deps.sessions.openSessionIds(server.tenants.alpha)).toEqual([]);
  });

  test("the server's session cap refuses past UNDERSTUDY_MAX_SESSIONS", async () => {
    const server = await start({ UNDERSTUDY_SESSIONS_PER_TENANT: "2", UNDERSTUDY_MAX_SESSIONS: "1" });
    expect((await server.post("/v1/sessions/create", {})).status).toBe(200);
    const refused = await server.post("/v1/sessions/create", {}, { key: server.keys.beta });
    expect(refused.status).toBe(429);
    expect(refused.body.message).toContain("UNDERSTUDY_MAX_SESSIONS");
  });

  test("shutdown ends every session: their browsers are gone", async () => {
    const server = await startTestServer({ env: { UNDERSTUDY_CHROMIUM_PATH: chromiumPath } });
    const ids = [
      (await server.post("/v1/sessions/create", {})).body.session_id,
      (await server.post("/v1/sessions/create", {}, { key: server.keys.beta })).body.session_id,
    ];
    const browsers = ids.map((id) => server.server.deps.sessions.browserOf(id)!);
    const cdpUrl = (await server.post("/v1/sessions/get", { session_id: ids[0] })).body.cdp_url;
    const client = await chromium.connectOverCDP(cdpUrl);
    const disconnected = new Promise<void>((resolve) => client.on("disconnected", () => resolve()));
    await server.close();
    await disconnected;
    for (const browser of browsers) {
      expect(isAlive(browser.pid)).toBe(false);
      expect(chromiumProcessesUsing(browser.userDataDir)).toEqual([]);
    }
  });

  test("with worker isolation, a session's browser runs in the workers' sandbox: the data directory is not in its view", async () => {
    if (!bwrapAssertionsApply("remote sessions' sandbox")) return;
    const server = await start({ UNDERSTUDY_WORKFLOW_ISOLATION: "process", UNDERSTUDY_WORKER_SANDBOX: "bwrap" });
    // A file of the data directory (the SQLite file itself; on PostgreSQL there is none, so one is made).
    const secretFile = server.databaseUrl ? join(dirname(server.dbPath), "data-dir-marker") : server.dbPath;
    if (server.databaseUrl) writeFileSync(secretFile, "kept from session browsers");
    const session = (await server.post("/v1/sessions/create", {})).body;
    const browser = await chromium.connectOverCDP(session.cdp_url);
    try {
      const page = await browser.contexts()[0]!.newPage();
      await page.goto(siteUrl());
      expect(await page.title()).toBe("Remote");
      // file: URLs are refused before they reach the browser; the sandbox is seen from its processes' own root.
      const { userDataDir } = server.server.deps.sessions.browserOf(session.session_id)!;
      const inside = chromiumProcessesUsing(userDataDir).filter((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "bwrap");
      expect(inside.length).toBeGreaterThan(0);
      for (const pid of inside) {
        expect(existsSync(`/proc/${pid}/root/usr/bin`)).toBe(true);
        expect(existsSync(`/proc/${pid}/root${secretFile}`)).toBe(false);
      }
      expect(existsSync(secretFile)).toBe(true);
    } finally {
      await browser.close();
    }
  });

  test("a server killed without shutdown leaves no session browser running: the next start ends it", async () => {
    const gone = Bun.spawn(["true"]);
    await gone.exited;
    const home = join(tmpdir(), `understudy-session-${gone.pid}-stale`);
    const profile = join(home, "profile");
    mkdirSync(profile, { recursive: true });
    const orphan = Bun.spawn([chromiumPath, "--headless", "--no-sandbox", `--user-data-dir=${profile}`, "about:blank"], { stdio: ["ignore", "ignore", "ignore"] });
    try {
      await waitUntil(() => chromiumProcessesUsing(profile).length > 0, 10_000, "the orphan browser runs");
      await start();
      expect(chromiumProcessesUsing(profile)).toEqual([]);
      expect(existsSync(home)).toBe(false);
    } finally {
      orphan.kill("SIGKILL");
    }
  });

  test("the client cannot reach the server's files through the browser: file: URLs and file paths are refused", async () => {
    const server = await start();
    const session = (await server.post("/v1/sessions/create", {})).body;
    const browser = await chromium.connectOverCDP(session.cdp_url);
    try {
      const context = browser.contexts()[0]!;
      const page = await context.newPage();
      const navigation = await page.goto(`file://${server.dbPath}`).then(() => "opened", (e: unknown) => String(e));
      expect(navigation).toContain("Understudy refused Page.navigate");
      const cdp = await context.newCDPSession(page);
      const created = await cdp.send("Target.createTarget", { url: "FILE:///etc/hostname" }).then(() => "opened", (e: unknown) => String(e));
      expect(created).toContain("Understudy refused Target.createTarget");
      await page.goto(siteUrl());
      await page.setContent("<input type=file id=f>");
      const input = await cdp.send("Runtime.evaluate", { expression: "document.getElementById('f')" });
      const upload = await cdp
        .send("DOM.setFileInputFiles", { files: [server.dbPath], objectId: input.result.objectId })
        .then(() => "set", (e: unknown) => String(e));
      expect(upload).toContain("Understudy refused DOM.setFileInputFiles");
      expect(await page.locator("#f").evaluate((input) => (input as unknown as { files: { length: number } }).files.length)).toBe(0);
      // Contents sent by the client are fine.
      await page.locator("#f").setInputFiles({ name: "note.txt", mimeType: "text/plain", buffer: Buffer.from("hello") });
      expect(await page.locator("#f").evaluate((input) => (input as unknown as { files: { name: string }[] }).files[0]?.name)).toBe("note.txt");
    } finally {
      await browser.close();
    }
  });

  test("no session browser listens on a port: another tenant's session cannot open its DevTools listing", async () => {
    const server = await start();
    const alpha = (await server.post("/v1/sessions/create", { start_url: siteUrl() })).body;
    const beta = (await server.post("/v1/sessions/create", { start_url: `${siteUrl()}beta-private-page` }, { key: server.keys.beta })).body;
    const ports = [alpha, beta].flatMap((s) => listeningPorts(chromiumProcessesUsing(server.server.deps.sessions.browserOf(s.session_id)!.userDataDir)));
    const browser = await chromium.connectOverCDP(alpha.cdp_url);
    try {
      const page = await browser.contexts()[0]!.newPage();
      for (const port of ports) {
        const seen = await page.goto(`http://127.0.0.1:${port}/json/list`).then(() => page.content(), () => "");
        // A DevTools port on 127.0.0.1 serves /json/list (beta's page URLs) to any page on this host, alpha's included.
        expect(seen).not.toContain("beta-private-page");
      }
      expect(ports).toEqual([]);
      const cdp = await browser.newBrowserCDPSession();
      const { targetInfos } = await cdp.send("Target.getTargets");
      expect(targetInfos.some((t) => t.url.includes("beta-private-page"))).toBe(false);
    } finally {
      await browser.close();
    }
  });

  test("clients of one session share its browser: two at once, while the server records it; each sees its own protocol", async () => {
    const server = await start({ UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS: "100" });
    const session = (await server.post("/v1/sessions/create", { start_url: siteUrl() })).body;
    const [first, second] = await Promise.all([chromium.connectOverCDP(session.cdp_url), chromium.connectOverCDP(session.cdp_url)]);
    try {
      const pages = await Promise.all([first, second].map((b) => b.contexts()[0]!.newPage()));
      await Promise.all(pages.map((page, i) => page.goto(`${siteUrl()}client-${i}`)));
      for (let round = 0; round < 5; round++) {
        const titles = await Promise.all(pages.map((page) => page.evaluate("document.title + ' ' + location.pathname")));
        expect(titles).toEqual(["Remote /client-0", "Remote /client-1"]);
      }
      // Each client sees the other's page too (one browser), and still drives its own after the other leaves.
      await waitUntil(() => first.contexts()[0]!.pages().some((p) => p.url().endsWith("/client-1")), 10_000, "the first client sees the second's page");
      await second.close();
      expect(await pages[0]!.locator("#greeting").textContent()).toBe("Hello from 127.0.0.1");
      // A client naming a session it did not attach is answered as Chromium answers an unknown one.
      const cdp = await first.newBrowserCDPSession();
      const unknown = await cdp.send("Target.getTargets").then(async () => {
        const raw = new WebSocket(session.cdp_url);
        await new Promise((resolve) => (raw.onopen = resolve));
        const answer = new Promise<string>((resolve) => (raw.onmessage = (event) => resolve(String(event.data))));
        raw.send(JSON.stringify({ id: 7, method: "Runtime.evaluate", params: { expression: "1" }, sessionId: "not-one-of-mine" }));
        const text = await answer;
        raw.close();
        return JSON.parse(text);
      });
      expect(unknown).toMatchObject({ id: 7, error: { message: "Session with given id not found." } });
    } finally {
      await first.close();
    }
    await server.post("/v1/sessions/close", { session_id: session.session_id });
    expect(server.deps.sessions.openSessionIds(server.tenants.alpha)).toEqual([]);
    const frames = await server.deps.recordings!.frames(server.tenants.alpha, session.session_id);
    expect(frames.length).toBeGreaterThan(1);
  });
});

/** TCP ports (v4 or v6) on which any of these processes listens, from /proc. */
function listeningPorts(pids: number[]): number[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
        if (inode) inodes.add(inode);
      } catch {
        // closed meanwhile
      }
    }
  }
  const ports: number[] = [];
  for (const pid of pids.slice(0, 1)) {
    for (const table of ["tcp", "tcp6"]) {
      let text = "";
      try {
        text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n").slice(1)) {
        const fields = line.trim().split(/\s+/);
        // local_address is field 1 (addr:port in hex), st is field 3 (0A: LISTEN), inode is field 9.
        if (fields[3] === "0A" && inodes.has(fields[9]!)) ports.push(Number.parseInt(fields[1]!.split(":")[1]!, 16));
      }
    }
  }
  return ports;
}

