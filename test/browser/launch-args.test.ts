import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createLazyBrowser, PLAYWRIGHT_DISABLED_FEATURES } from "../../src/browser/browser";
import { describeWithChromium, launchedBrowsers } from "../chromium";

// The switches a job's browser really runs with, read from the browser
// process's own command line (/proc/PID/cmdline) after a real launch.
// Chromium keeps only the last --disable-features it is given: Playwright
// passes its list first and ours comes after it, so ours must carry
// Playwright's too. It did not (issue 9, item 16): HttpsUpgrades,
// DestroyProfileOnBrowserClose, PaintHolding and the rest were silently
// turned back on.

const TEST_TIMEOUT_MS = 30_000;

describeWithChromium("the switches a job's browser runs with", (chromium) => {
  const site = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("<title>by name</title>", { headers: { "content-type": "text/html" } }) });
  afterAll(() => site.stop(true));

  test("every feature Playwright disables stays disabled, with ours added, and a page loads by host name", async () => {
    const browser = createLazyBrowser({ headless: true, chromiumPath: chromium });
    try {
      // A name, not an address: resolved by the system resolver (AsyncDns is off).
      await browser.page.goto(`http://localhost:${site.port}/`);
      expect(await browser.page.title()).toBe("by name");

      const [launched] = launchedBrowsers();
      expect(launched).toBeDefined();
      const args = readFileSync(`/proc/${launched!.pid}/cmdline`, "utf8").split("\0");
      const lists = args.filter((a) => a.startsWith("--disable-features=")).map((a) => a.slice("--disable-features=".length).split(","));
      expect(lists.length).toBeGreaterThanOrEqual(1);
      const playwrights = lists[0]!;
      const effective = lists.at(-1)!;
      // Playwright's own list is what src/browser/browser.ts copies: an upgrade of playwright-core that changes it shows here.
      expect([...playwrights].sort()).toEqual([...PLAYWRIGHT_DISABLED_FEATURES].sort());
      expect(effective).toEqual(expect.arrayContaining(playwrights));
      expect(effective).toEqual(expect.arrayContaining(["DnsOverHttpsUpgrade", "AsyncDns"]));
      expect(args).toContain("--component-updater=url-source=http://127.0.0.1:9/");
    } finally {
      await browser.close();
    }
  }, TEST_TIMEOUT_MS);
});
