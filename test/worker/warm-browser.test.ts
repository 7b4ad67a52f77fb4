import { afterAll, beforeAll, expect, test } from "bun:test";
import { call, waitForJob } from "../e2e/serve-child";
import { createLazyPage } from "../../src/browser/browser";
import { WarmBrowser } from "../../src/browser/warm";
import { describeWithChromium } from "../chromium";
import type { ServerProcess } from "../process-helpers";
import { workerScope } from "./process-tree";

// The warm browser of a tenant's worker (src/browser/warm.ts), through a real
// `serve` child and real Chromium: reused across jobs, with nothing of one
// job's cookies or storage in the next, replaced when it dies; and the lazy
// page's sync answers before any browser exists (src/browser/browser.ts).

const scope = workerScope();
/** Cookie headers the site received, by path, in order. */
const received: { path: string; cookie: string | null }[] = [];
let site: ReturnType<typeof Bun.serve>;
let base: string;

beforeAll(() => {
  site = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      received.push({ path, cookie: request.headers.get("cookie") });
      const headers: Record<string, string> = { "content-type": "text/html" };
      if (path === "/set-cookie") headers["set-cookie"] = "server-cookie=job; Max-Age=3600; Path=/";
      return new Response("<!doctype html><title>state</title><p>state</p>", { headers });
    },
  });
  base = `http://127.0.0.1:${site.port}/`;
});
afterAll(async () => {
  site.stop(true);
  await scope.cleanup();
});

async function run(server: ServerProcess, key: string, workflow: string, params: object, options: object = {}) {
  const created = await call(server, key, "/v1/jobs/create", { workflow, params, ...options });
  expect(created.status).toBe(200);
  const job = await waitForJob(server, key, created.body.job_id, { timeoutMs: 20_000 });
  expect(job.error).toBeNull();
  expect(job.status).toBe("completed");
  return job.result;
}

describeWithChromium("a tenant's warm browser", (chromiumPath) => {
  test("serves the tenant's next job (same worker, same browser) with none of the last job's cookies or localStorage; a killed browser is replaced", async () => {
    const deployment = scope.deployment();
    const key = await deployment.addTenant("acme");
    const server = await scope.start(deployment);

    const first = await run(server, key, "browser-state", { url: base, set: true });
    expect(first.found).toEqual({ cookie: "", storage: null, contextCookies: [] });
    // The state really was there at the end of job 1.
    expect(first.afterSet.cookie.split("; ").sort()).toEqual(["script-cookie=job", "server-cookie=job"]);
    expect(first.afterSet.storage).toBe("job");
    expect(first.afterSet.contextCookies.sort()).toEqual(["script-cookie", "server-cookie"]);
    expect(first.browserPid).toEqual(expect.any(Number));

    const sentBefore = received.length;
    const second = await run(server, key, "browser-state", { url: base });
    expect(second.found).toEqual({ cookie: "", storage: null, contextCookies: [] });
    expect(received.slice(sentBefore).filter((r) => r.path === "/")).toEqual([{ path: "/", cookie: null }]);
    // Warm: the same worker process and the same Chromium served both.
    expect({ worker: second.worker, workerPid: second.workerPid, browserPid: second.browserPid }).toEqual({
      worker: first.worker,
      workerPid: first.workerPid,
      browserPid: first.browserPid,
    });

    // A job kills its own browser; the worker stays, and the next job gets a new browser.
    const killer = await run(server, key, "browser-state", { url: base, killBrowser: true });
    expect(killer.worker).toBe(first.worker);
    expect(killer.browserPid).toBe(first.browserPid);
    const afterKill = await run(server, key, "browser-state", { url: base });
    expect(afterKill.title).toBe("state");
    expect(afterKill.found).toEqual({ cookie: "", storage: null, contextCookies: [] });
    expect(afterKill.worker).toBe(first.worker);
    expect(afterKill.browserPid).toEqual(expect.any(Number));
    expect(afterKill.browserPid).not.toBe(first.browserPid);
  }, 45_000);

  test("the lazy page answers url(), viewportSize() and isClosed() with real values as the handler's first use, and the next job's page works", async () => {
    const deployment = scope.deployment();
    const key = await deployment.addTenant("acme");
    const server = await scope.start(deployment);

    expect(await run(server, key, "lazy-page", {})).toEqual({ url: "about:blank", viewport: { width: 1280, height: 720 }, closed: false });
    expect(await run(server, key, "lazy-page", {}, { start_url: base, viewport: { width: 800, height: 600 } })).toEqual({
      url: base,
      viewport: { width: 800, height: 600 },
      closed: false,
    });
    // Those jobs ended while their page was still opening: the next job of the worker still gets a page of its own.
    const next = await run(server, key, "browser-state", { url: base });
    expect(next.title).toBe("state");
    expect(next.found).toEqual({ cookie: "", storage: null, contextCookies: [] });
  }, 45_000);

  test("a job that ends while its page is still opening has that page closed with it, and the worker's next job opens its own (WarmBrowser, in this process)", async () => {
    // The worker's sequence (src/worker/main.ts), made deterministic: the
    // handler's first page use is a sync answer, the job ends and is
    // released, and its page finishes opening only afterwards.
    const browser = new WarmBrowser();
    try {
      const request: { headless: boolean; chromiumPath: string; startUrl?: string } = { headless: true, chromiumPath };
      let opening: Promise<unknown> | undefined;
      const lazy = createLazyPage(() => (opening = browser.openPage(request)), request);
      expect(lazy.page.url()).toBe("about:blank");
      await browser.releaseJob();
      const firstPage = (await opening) as { isClosed(): boolean };
      expect(firstPage.isClosed()).toBe(true);

      const next = await browser.openPage(request);
      await next.goto(base);
      expect(await next.title()).toBe("state");
      await browser.releaseJob();
    } finally {
      await browser.close();
    }
  }, 45_000);
});
