import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { BrowserUnavailableError, createLazyBrowser, type LazyBrowser } from "../../src/browser/browser";
import { chromiumProcessesUsing, describeWithChromium, launchedBrowsers, waitUntil } from "../chromium";

// Each browser test launches Chromium (about 1-3 s here); bounded well above that.
const TEST_TIMEOUT_MS = 30_000;

/** A real HTTP server on 127.0.0.1 with a small form; records every request it gets. */
function startSite() {
  const requests: { method: string; path: string; body: string }[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const url = new URL(request.url);
      requests.push({ method: request.method, path: url.pathname, body: await request.text() });
      if (url.pathname === "/form") {
        return html(`<title>Form</title>
          <form method="post" action="/submitted">
            <label>Name <input id="name" name="name"></label>
            <button type="submit">Send</button>
          </form>`);
      }
      if (url.pathname === "/submitted") return html("<title>Submitted</title><p>Thanks</p>");
      return html("<title>Home</title><p>home</p>");
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, requests, stop: () => server.stop(true) };
}

function html(body: string): Response {
  return new Response(`<!doctype html><html><body>${body}</body></html>`, { headers: { "content-type": "text/html; charset=utf-8" } });
}

/** Resolves to the error a deferred page call rejects with (or fails if it resolves). */
async function rejection(call: PromiseLike<unknown>): Promise<Error> {
  return call.then(
    () => {
      throw new Error("expected the call to reject");
    },
    (error: Error) => error,
  );
}

test("a missing Chromium rejects the first page use with BrowserUnavailableError saying how to install", async () => {
  const browser = createLazyBrowser({ headless: true, chromiumPath: "/nonexistent/chromium" });
  try {
    const error = await rejection(browser.page.goto("http://127.0.0.1:9/"));
    expect(error).toBeInstanceOf(BrowserUnavailableError);
    expect(error.message).toContain("/nonexistent/chromium");
    expect(error.message).toContain("apt-get install chromium");
    expect(error.message).toContain("UNDERSTUDY_CHROMIUM_PATH");
    expect(browser.started).toBe(false);
  } finally {
    await browser.close();
  }
}, TEST_TIMEOUT_MS);

describeWithChromium("lazy browser (real Chromium)", (chromiumPath) => {
  let site: ReturnType<typeof startSite>;
  const opened: LazyBrowser[] = [];
  const open = (options: { startUrl?: string; viewport?: { width: number; height: number } } = {}, signal?: AbortSignal) => {
    const browser = createLazyBrowser({ headless: true, chromiumPath, ...options }, signal);
    opened.push(browser);
    return browser;
  };

  beforeAll(() => {
    site = startSite();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((browser) => browser.close()));
  }, TEST_TIMEOUT_MS);
  afterAll(() => site.stop());

  test("a browser whose page is never touched launches nothing", async () => {
    site.requests.length = 0;
    const browser = open({ startUrl: `${site.url}/form` });
    expect(browser.started).toBe(false);
    expect(launchedBrowsers()).toEqual([]);
    await browser.close();
    expect(browser.started).toBe(false);
    expect(site.requests).toEqual([]);
  }, TEST_TIMEOUT_MS);

  test("the first use launches once, opens startUrl, honours the viewport, then forwards synchronously", async () => {
    const browser = open({ startUrl: `${site.url}/form`, viewport: { width: 640, height: 480 } });
    const { page } = browser;
    site.requests.length = 0;

    // Two first calls at once share one launch.
    const [size, title] = await Promise.all([page.evaluate("[window.innerWidth, window.innerHeight]"), page.title()]);

    expect(size).toEqual([640, 480]);
    expect(title).toBe("Form");
    expect(browser.started).toBe(true);
    expect(launchedBrowsers()).toHaveLength(1);
    expect(site.requests.filter((r) => r.path === "/form")).toHaveLength(1);
    // Now a real page: sync methods return values, not promises.
    expect(page.url()).toBe(`${site.url}/form`);
    await page.goto(`${site.url}/other`);
    expect(page.url()).toBe(`${site.url}/other`);
  }, TEST_TIMEOUT_MS);

  test("chained calls made before the page exists replay on the real page", async () => {
    const browser = open({ startUrl: `${site.url}/form` });
    const { page } = browser;
    site.requests.length = 0;

    await page.locator("#name").fill("Ada Lovelace");
    expect(await page.inputValue("#name")).toBe("Ada Lovelace");
    await Promise.all([page.waitForURL("**/submitted"), page.getByRole("button", { name: "Send" }).click()]);

    const submitted = site.requests.find((r) => r.method === "POST" && r.path === "/submitted");
    expect(new URLSearchParams(submitted?.body).get("name")).toBe("Ada Lovelace");
    expect(await page.textContent("p")).toBe("Thanks");
  }, TEST_TIMEOUT_MS);

  test("close() ends every Chromium process of the browser", async () => {
    const browser = open();
    await browser.page.goto(`${site.url}/`);
    const profile = launchedBrowsers()[0]?.userDataDir;
    expect(profile).toBeDefined();
    // Browser, zygotes, GPU, network service and renderers all carry the profile.
    expect(chromiumProcessesUsing(profile!).length).toBeGreaterThan(1);

    await browser.close();

    expect(chromiumProcessesUsing(profile!)).toEqual([]);
    expect(launchedBrowsers()).toEqual([]);
    expect(existsSync(profile!)).toBe(false);
    await browser.close(); // idempotent
  }, TEST_TIMEOUT_MS);

  test("close() kills a browser that does not respond within its grace period", async () => {
    const browser = open();
    await browser.page.goto(`${site.url}/`);
    const [launched] = launchedBrowsers();
    expect(launched).toBeDefined();
    // A stopped process cannot answer playwright's close request.
    process.kill(launched!.pid, "SIGSTOP");

    await browser.close();

    // SIGKILLed helpers (zygotes, renderers) exit a moment after the browser does.
    await waitUntil(() => chromiumProcessesUsing(launched!.userDataDir).length === 0, 5_000, "the killed Chromium has exited");
    expect(launchedBrowsers()).toEqual([]);
    expect(existsSync(launched!.userDataDir)).toBe(false);
  }, TEST_TIMEOUT_MS);

  test("aborting the signal closes the browser and rejects a pending page call", async () => {
    const abort = new AbortController();
    const browser = open({ startUrl: `${site.url}/` }, abort.signal);
    await browser.page.title();
    const profile = launchedBrowsers()[0]?.userDataDir;
    expect(profile).toBeDefined();

    const pending = browser.page.waitForSelector("#never-appears", { timeout: 20_000 });
    abort.abort("cancelled");

    const error = await rejection(pending);
    expect(error.message).toMatch(/closed/i);
    await waitUntil(() => chromiumProcessesUsing(profile!).length === 0, 10_000, "the aborted job's Chromium has exited");
  }, TEST_TIMEOUT_MS);

  test("a signal that aborts during the launch leaves no browser behind", async () => {
    const abort = new AbortController();
    const browser = open({ startUrl: `${site.url}/` }, abort.signal);
    const first = browser.page.title();
    abort.abort("cancelled");

    const error = await rejection(first);
    expect(error.message).toMatch(/closed/i);
    expect(browser.started).toBe(true);
    await waitUntil(() => launchedBrowsers().length === 0, 10_000, "the cancelled launch's Chromium has exited");
    expect(await rejection(browser.page.title())).toBeInstanceOf(Error);
  }, TEST_TIMEOUT_MS);
});
