/**
 * The dashboard in a real Chromium (playwright-core), as a person uses it:
 * the walk-through of issue 12, tenant isolation, where the key is (not)
 * kept, a cross-site POST, an accessibility check of every page (axe-core),
 * the phone width, and a screenshot of each page at 1280x800 written to
 * test-output/dashboard/ (UNDERSTUDY_SCREENSHOT_DIR to change).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { z } from "zod";
import { workflow } from "../../src/workflows/define";
import { describeWithChromium } from "../chromium";
import { startTestServer, type TestServer } from "../helpers";
import { createJob, FAST_ENV, gate, waitForEnd, waitForRunning } from "../jobs/support";
import { createSchedule } from "../schedules/support";
import { createEndpoint, startReceiver, type Receiver } from "../webhooks/support";

const SCREENSHOTS = resolve(process.env.UNDERSTUDY_SCREENSHOT_DIR || join(import.meta.dir, "..", "..", "test-output", "dashboard"));
const SECRET = "hunter2-correct-horse-battery";
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

// The walk-through's workflow logs a line, waits for the test, logs another, waits again, then ends.
let steps = [gate(), gate()];
const bounded = (p: Promise<void>) => Promise.race([p, Bun.sleep(20_000)]);
const greet = workflow("greet", {
  credentials: ["site_password"],
  input: z.object({ name: z.string().min(1), count: z.number().int().min(1).max(10) }),
  async handler(ctx, input: { name: string; count: number; credentials: { site_password: string } }) {
    ctx.log.info(`step 1 of ${input.count}: hello ${input.name}`);
    ctx.log.info(`logging in with ${input.credentials.site_password}`);
    await bounded(steps[0]!.promise);
    ctx.log.warn(`step 2 of ${input.count}: still going`);
    await bounded(steps[1]!.promise);
    return { greeting: `Hello, ${input.name}!`, count: input.count };
  },
});
/** Holds its credential until cancelled (at most 30 s). */
const slow = workflow("slow", {
  credentials: ["site_password"],
  async handler(ctx) {
    ctx.log.info("waiting");
    await Promise.race([new Promise((resolve) => ctx.signal.addEventListener("abort", resolve)), Bun.sleep(30_000)]);
    return null;
  },
});

describeWithChromium("the dashboard in a real browser", (executablePath) => {
  let server: TestServer;
  let browser: Browser;
  let receiver: Receiver;
  beforeAll(async () => {
    server = await startTestServer({
      env: { ...FAST_ENV, UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1", UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0", UNDERSTUDY_WEBHOOK_TIMEOUT_MS: "2000" },
      workflows: [greet, slow],
    });
    // Something on every page: a schedule, and a webhook endpoint on 127.0.0.1 that refuses every delivery.
    receiver = await startReceiver(() => ({ status: 503, body: "receiver is down for maintenance" }));
    await createEndpoint(server, server.keys.alpha, { url: `${receiver.url}/hooks/understudy`, description: "ops alerts" });
    await createSchedule(server, { workflow: "greet", cron_expr: "0 9 * * 1-5", timezone: "Europe/Paris", params: { name: "Paris", count: 1 } });
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await receiver?.close();
  });

  /** A fresh browser context at 1280x800 that records CSP refusals and page errors. */
  async function newPage(width = 1280, height = 800): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport: { width, height } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on("console", (m) => {
      // A 4xx the test provokes (the refused delete's 409) is not a problem; a CSP refusal or a script error is.
      if (m.type() === "error" && !/^Failed to load resource: the server responded with a status of 409/.test(m.text())) problems.push(m.text());
    });
    page.on("pageerror", (e) => problems.push(e.message));
    return { context, page, problems };
  }

  async function signInAs(page: Page, key: string) {
    await page.goto(`${server.url}/ui/`);
    expect(new URL(page.url()).pathname).toBe("/ui/sign-in");
    await page.getByLabel("API key").fill(key);
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/ui\/jobs$/);
  }

  /** axe-core's serious and critical violations on the current page. */
  async function axeViolations(page: Page): Promise<string[]> {
    await page.evaluate(AXE);
    const results = await page.evaluate(() => (globalThis as any).axe.run((globalThis as any).document, { resultTypes: ["violations"] }));
    return results.violations
      .filter((v: { impact: string }) => v.impact === "serious" || v.impact === "critical")
      .map((v: { id: string; help: string; nodes: { target: string[] }[] }) => `${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  }

  const shots: { name: string; path: string; bytes: number }[] = [];
  async function screenshot(page: Page, name: string) {
    const path = join(SCREENSHOTS, `${name}.png`);
    await page.screenshot({ path, fullPage: false });
    shots.push({ name, path, bytes: statSync(path).size });
  }

  /** Waits (at most 10 s) until the locator's text is `want` (a string: exactly, trimmed) or matches it. */
  async function hasText(locator: Locator, want: string | RegExp): Promise<void> {
    let seen: string | null = null;
    for (let i = 0; i < 100; i++) {
      seen = (await locator.first().textContent({ timeout: 10_000 }).catch(() => null))?.trim() ?? null;
      if (seen !== null && (typeof want === "string" ? seen === want : want.test(seen))) return;
      await Bun.sleep(100);
    }
    throw new Error(`expected text ${want} but saw ${JSON.stringify(seen)}`);
  }

  async function storageOf(page: Page): Promise<string> {
    return page.evaluate(() => {
      const w = globalThis as any;
      return JSON.stringify({ local: { ...w.localStorage }, session: { ...w.sessionStorage }, cookie: w.document.cookie });
    });
  }

  test("walk-through: sign in, add a credential, start a job from its form, watch its log live, see it complete; a held credential's delete is explained; sign-out ends the session", async () => {
    steps = [gate(), gate()];
    const { context, page, problems } = await newPage();
    await signInAs(page, server.keys.alpha);
    expect(await storageOf(page)).not.toContain(server.keys.alpha);

    // Add a credential.
    await page.getByRole("link", { name: "Credentials", exact: true }).click();
    await page.waitForURL(/\/ui\/credentials$/);
    await page.getByLabel("Name", { exact: false }).first().fill("site_password");
    await page.getByLabel("Value", { exact: true }).fill(SECRET);
    await page.getByRole("button", { name: "Save credential" }).click();
    await hasText(page.getByRole("status"), 'Credential "site_password" created.');
    expect(await page.content()).not.toContain(SECRET);

    // Start a job of "greet" from its form.
    await page.getByRole("link", { name: "Workflows", exact: true }).click();
    await page.getByRole("link", { name: "greet", exact: true }).click();
    await page.getByLabel("name", { exact: false }).first().fill("Ada");
    await page.getByLabel("count", { exact: false }).first().fill("2");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/ui\/jobs\/[0-9a-f-]{36}$/);
    const jobId = page.url().split("/").pop()!;

    // The log arrives while the page stays put: no reload between the lines.
    let navigations = 0;
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) navigations++;
    });
    const lines = page.locator("[data-log-stream] li");
    await hasText(lines.first(), /step 1 of 2: hello Ada/);
    await hasText(page.locator("[data-job-status]"), /running/);
    steps[0]!.open();
    await lines.filter({ hasText: "step 2 of 2" }).waitFor({ timeout: 10_000 });
    expect(navigations).toBe(0);
    // The injected value was redacted before it was stored, and never reaches the page.
    expect(await page.content()).not.toContain(SECRET);
    await screenshot(page, "job-running");

    // The job ends: the page shows the result.
    steps[1]!.open();
    await hasText(page.locator("[data-job-status]"), /completed/);
    await page.getByText("Hello, Ada!").first().waitFor({ timeout: 10_000 });
    expect((await waitForEnd(server, jobId)).result).toEqual({ greeting: "Hello, Ada!", count: 2 });
    await screenshot(page, "job-completed");

    // A slow job holds the credential: deleting it is refused, with the reason.
    const slowId = await createJob(server, { workflow: "slow" });
    await waitForRunning(server, slowId);
    await page.getByRole("link", { name: "Credentials", exact: true }).click();
    const row = page.locator("tr", { has: page.locator("code", { hasText: "site_password" }) });
    await row.getByRole("link", { name: "slow" }).waitFor({ timeout: 10_000 });
    await row.locator("summary", { hasText: "Delete" }).click();
    await row.getByRole("button", { name: "Delete site_password" }).click();
    await hasText(page.getByRole("alert"), new RegExp(`Credential "site_password" is still used by 1 queued or running job: slow \\(running, job …${slowId.slice(-12)}\\)`));
    await page.locator("code", { hasText: "site_password" }).waitFor({ timeout: 10_000 });
    await screenshot(page, "credentials-delete-refused");
    await server.post("/v1/jobs/cancel", { id: slowId });
    await waitForEnd(server, slowId);

    // Sign out: the old cookie is worth nothing.
    const before = await context.cookies();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/ui\/sign-in$/);
    await context.addCookies(before);
    await page.goto(`${server.url}/ui/credentials`);
    expect(new URL(page.url()).pathname).toBe("/ui/sign-in");
    expect(problems).toEqual([]);
    await context.close();
  }, 60_000);

  test("tenant beta's session never shows tenant alpha's data", async () => {
    const alphaJob = await createJob(server, { workflow: "greet", params: { name: "Alpha-only", count: 1 } }, server.keys.alpha).catch(() => undefined);
    const { context, page } = await newPage();
    await signInAs(page, server.keys.beta);
    await hasText(page.locator("[data-tenant]"), "beta");
    for (const path of ["/ui/jobs", "/ui/credentials", "/ui/workflows", "/ui/schedules", "/ui/webhooks", "/ui/audit"]) {
      await page.goto(`${server.url}${path}`);
      const html = await page.content();
      expect(html).not.toContain("site_password");
      expect(html).not.toContain("Alpha-only");
      if (alphaJob) expect(html).not.toContain(alphaJob);
    }
    if (alphaJob) {
      const r = await page.goto(`${server.url}/ui/jobs/${alphaJob}`);
      expect(r!.status()).toBe(404);
      await server.post("/v1/jobs/cancel", { id: alphaJob });
    }
    await context.close();
  }, 30_000);

  test("a cross-site page cannot make changes: its POST (without the CSRF token) is refused and changes nothing", async () => {
    // Another origin on 127.0.0.1 (same site, other port): the Strict cookie is sent, so the CSRF checks must refuse.
    const evil = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () =>
        new Response(
          `<!DOCTYPE html><form method="post" action="${server.url}/ui/credentials/upsert"><input name="name" value="planted"><input name="value" value="x"></form><script>document.forms[0].submit()</script>`,
          { headers: { "content-type": "text/html" } },
        ),
    });
    try {
      const { context, page } = await newPage();
      await signInAs(page, server.keys.alpha);
      const answer = page.waitForResponse((r) => r.url().endsWith("/ui/credentials/upsert"));
      await page.goto(`http://127.0.0.1:${evil.port}/`);
      expect((await answer).status()).toBe(403);
      const names = (await server.post("/v1/credentials/list", {})).body.credentials.map((c: { name: string }) => c.name);
      expect(names).not.toContain("planted");
      await context.close();
    } finally {
      evil.stop(true);
    }
  }, 30_000);

  test("every page: 0 serious or critical axe-core violations, no CSP refusal, readable at 1280x800 and at a phone's width; screenshots written", async () => {
    const jobId = (await server.post("/v1/jobs/list", {})).body.jobs[0]?.job_id as string | undefined;
    const pages: [string, string][] = [
      ["sign-in", "/ui/sign-in"],
      ["jobs", "/ui/jobs"],
      ...(jobId ? ([["job", `/ui/jobs/${jobId}`]] as [string, string][]) : []),
      ["workflows", "/ui/workflows"],
      ["workflow", "/ui/workflows/greet"],
      ["credentials", "/ui/credentials"],
      ["schedules", "/ui/schedules"],
      ["webhooks", "/ui/webhooks"],
      ["audit", "/ui/audit"],
    ];
    const wide = await newPage(1280, 800);
    const narrow = await newPage(390, 844);
    await wide.page.goto(`${server.url}/ui/sign-in`);
    expect(await axeViolations(wide.page)).toEqual([]);
    await screenshot(wide.page, "sign-in");
    await signInAs(wide.page, server.keys.alpha);
    await signInAs(narrow.page, server.keys.alpha);
    for (const [name, path] of pages.slice(1)) {
      const r = await wide.page.goto(`${server.url}${path}`);
      expect(r!.status()).toBe(200);
      expect({ page: name, violations: await axeViolations(wide.page) }).toEqual({ page: name, violations: [] });
      await screenshot(wide.page, name);
      await narrow.page.goto(`${server.url}${path}`);
      const overflow = await narrow.page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth - (globalThis as any).innerWidth);
      expect({ page: name, overflow: overflow <= 1 }).toEqual({ page: name, overflow: true });
      expect({ page: name, violations: await axeViolations(narrow.page) }).toEqual({ page: name, violations: [] });
      await screenshot(narrow.page, `phone-${name}`);
    }
    expect(wide.problems.filter((p) => /Content Security Policy|Refused to/.test(p))).toEqual([]);
    expect(narrow.problems.filter((p) => /Content Security Policy|Refused to/.test(p))).toEqual([]);
    expect(await storageOf(wide.page)).not.toContain(server.keys.alpha);
    await wide.context.close();
    await narrow.context.close();
    console.log(`dashboard screenshots:\n${shots.map((s) => `  ${s.path} ${s.bytes} bytes`).join("\n")}`);
  }, 90_000);

  test("keyboard: the skip link comes first and lands on the content; a form submits with Enter", async () => {
    const { context, page } = await newPage();
    await signInAs(page, server.keys.alpha);
    await page.goto(`${server.url}/ui/credentials`);
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => (globalThis as any).document.activeElement?.textContent?.trim())).toBe("Skip to content");
    await page.keyboard.press("Enter");
    // Following the link to #main is a navigation within the page: wait (bounded) for it.
    await page.waitForURL(/#main$/, { timeout: 10_000 });
    expect(new URL(page.url()).hash).toBe("#main");
    await page.getByLabel("Name", { exact: false }).first().focus();
    await page.keyboard.type("keyboard_made");
    await page.keyboard.press("Tab");
    await page.keyboard.type("v");
    await page.keyboard.press("Enter");
    await hasText(page.getByRole("status"), 'Credential "keyboard_made" created.');
    await context.close();
  }, 30_000);
});
