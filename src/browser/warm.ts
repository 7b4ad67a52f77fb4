import { tmpdir } from "node:os";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { captureArtifacts, startTrace, type CaptureConfig, type CapturedArtifact } from "./capture";
import type { StorageState } from "../profiles/state";
import { CLOSE_TIMEOUT_MS, DEFAULT_VIEWPORT, KILL_WAIT_MS, killProcessesUsing, LAUNCH_ARGS, LAUNCH_TIMEOUT_MS, settlesWithin, unavailableError } from "./browser";

export interface PageRequest {
  headless: boolean;
  startUrl?: string;
  viewport?: { width: number; height: number };
  chromiumPath?: string;
  configuredChromiumPath?: string;
  capture?: CaptureConfig;
  /** A browser profile's state, loaded into the job's fresh context before the start URL. */
  storageState?: StorageState;
}

interface Slot {
  context: BrowserContext;
  page: Page;
}

/**
 * One Chromium kept running across jobs (a worker's, so one tenant's), with
 * a fresh browser context for each job: no cookie, storage or cache carries
 * from one job to the next. When a job ends, a context with a page is made
 * for the next job, so its first page call finds it ready (measured on this
 * machine with playwright-core 1.65: launch
 * ~330 ms, newContext 20-60 ms, newPage 160-390 ms, goto of a data: URL
 * ~70 ms, context close 30-120 ms; DESIGN.md "Browsers").
 *
 * A browser that dies (crash, kill) is noticed through its disconnect and
 * launched again on the next use.
 */
export class WarmBrowser {
  #browser: Promise<Browser> | undefined;
  #headless: boolean | undefined;
  #executablePath: string | undefined;
  /**
   * A context with a page made ahead for the next job. One: each costs a
   * renderer process (~20-40 MB), and a second, still being made when the
   * next job came, slowed that job more than it saved (measured with jobs
   * 50 ms apart: p50 create -> completed ~260 ms with one, ~450 ms with two).
   */
  #prepared: Promise<Slot> | undefined;
  #current: Slot | undefined;
  /** The job's page while openPage() is under way. */
  #opening: Promise<Page> | undefined;
  #closed = false;

  /** Whether a browser is running (or launching). */
  get running(): boolean {
    return this.#browser !== undefined;
  }

  /**
   * The page of a new job: a prepared one when it fits, else a new context.
   * The context is the job's until releaseJob().
   */
  async openPage(request: PageRequest): Promise<Page> {
    if (this.#closed) throw new Error("The browser was closed because the worker is stopping.");
    if (this.#current || this.#opening) throw new Error("A job's page is already open in this worker.");
    const opening = this.#open(request);
    this.#opening = opening;
    try {
      return await opening;
    } finally {
      if (this.#opening === opening) this.#opening = undefined;
    }
  }

  async #open(request: PageRequest): Promise<Page> {
    const executablePath = request.chromiumPath;
    if (!executablePath) throw unavailableError(request.configuredChromiumPath);
    if (this.#browser && (this.#headless !== request.headless || this.#executablePath !== executablePath)) await this.#shutBrowser();
    let slot = await this.#takePrepared(request);
    if (!slot) slot = await this.#newSlot(this.#launch(request.headless, executablePath), request.viewport);
    this.#current = slot;
    if (request.storageState) await slot.context.setStorageState(request.storageState);
    await startTrace(slot.context, request.capture);
    const wanted = request.viewport ?? DEFAULT_VIEWPORT;
    const size = slot.page.viewportSize();
    if (!size || size.width !== wanted.width || size.height !== wanted.height) await slot.page.setViewportSize(wanted);
    if (request.startUrl) await slot.page.goto(request.startUrl);
    return slot.page;
  }

  /** The job's context's storageState now (a refreshing profile's), or undefined when the job opened no page. */
  async storageState(): Promise<unknown> {
    const opening = this.#opening;
    if (opening) await opening.catch(() => {});
    return this.#current?.context.storageState();
  }

  /** Whether a job's page is open or opening (releaseJob has something to close). */
  get holdsJob(): boolean {
    return this.#opening !== undefined || this.#current !== undefined;
  }

  /**
   * Ends the job's context (its cookies and storage go with it), then
   * prepares the next one in the background. A context that does not close
   * in time means a wedged browser: it is killed, and the next job launches
   * a new one.
   */
  async releaseJob(): Promise<void> {
    // A page still opening is the job's too. A handler that returns right
    // after its first page use (`return { url: page.url() }` starts the
    // opening) used to end before its page existed: the page was then kept
    // as the open one, and the worker's next job failed with "A job's page
    // is already open in this worker". Wait for it, and close it with the job.
    const opening = this.#opening;
    if (opening && !(await settlesWithin(opening, LAUNCH_TIMEOUT_MS + CLOSE_TIMEOUT_MS))) {
      await this.#shutBrowser();
      return;
    }
    const slot = this.#current;
    this.#current = undefined;
    if (!slot) return;
    const closed = slot.context.close();
    closed.catch(() => {});
    if (!(await settlesWithin(closed, CLOSE_TIMEOUT_MS))) {
      await this.#shutBrowser();
      return;
    }
    if (this.#browser && !this.#closed) this.#prepare();
  }

  /**
   * The artifacts of the job's page (before releaseJob closes it): nothing
   * when the job never opened one, or its page did not open in time.
   */
  async captureJob(config: CaptureConfig | undefined, outcome: "completed" | "failed"): Promise<CapturedArtifact[]> {
    if (!config) return [];
    const opening = this.#opening;
    if (opening && !(await settlesWithin(opening, CLOSE_TIMEOUT_MS))) return [];
    const slot = this.#current;
    if (!slot) return [];
    return captureArtifacts(slot.context, slot.page, config, outcome).catch(() => []);
  }

  /** Closes the browser (the worker is stopping). Returns within about 7 s. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#shutBrowser();
  }

  #launch(headless: boolean, executablePath: string): Promise<Browser> {
    if (this.#browser) return this.#browser;
    this.#headless = headless;
    this.#executablePath = executablePath;
    const launching = import("playwright-core").then(({ chromium }) =>
      chromium.launch({
        executablePath,
        headless,
        // The worker's owner (the server) decides when a job stops; Playwright
        // must not close the browser on a signal itself.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        args: LAUNCH_ARGS,
        timeout: LAUNCH_TIMEOUT_MS,
      }),
    );
    this.#browser = launching;
    launching.then(
      (browser) =>
        browser.on("disconnected", () => {
          // A crash or a kill: forget it, so the next job launches a new one.
          if (this.#browser === launching) this.#forget();
        }),
      () => {
        if (this.#browser === launching) this.#forget();
      },
    );
    return launching;
  }

  async #newSlot(browser: Promise<Browser>, viewport: { width: number; height: number } | undefined): Promise<Slot> {
    const context = await (await browser).newContext({ viewport: viewport ?? DEFAULT_VIEWPORT });
    try {
      return { context, page: await context.newPage() };
    } catch (error) {
      await context.close().catch(() => {});
      throw error;
    }
  }

  /**
   * Makes the next job's context and page. Called when a job ends, not while
   * one runs: a renderer starting beside a running job slowed that job's own
   * page calls (measured: a title() went from ~10 ms to 40-165 ms).
   */
  #prepare(): void {
    const browser = this.#browser;
    if (!browser || this.#prepared) return;
    const prepared = this.#newSlot(browser, undefined);
    prepared.catch(() => {
      if (this.#prepared === prepared) this.#prepared = undefined;
    });
    this.#prepared = prepared;
  }

  async #takePrepared(request: PageRequest): Promise<Slot | undefined> {
    const prepared = this.#prepared;
    this.#prepared = undefined;
    if (!prepared || !this.#browser || this.#headless !== request.headless) return undefined;
    try {
      const slot = await prepared;
      return slot.page.isClosed() ? undefined : slot;
    } catch {
      return undefined;
    }
  }

  #forget(): void {
    this.#browser = undefined;
    this.#prepared = undefined;
  }

  async #shutBrowser(): Promise<void> {
    const browser = this.#browser;
    this.#forget();
    this.#current = undefined;
    if (!browser) return;
    const graceful = browser.then((b) => b.close());
    graceful.catch(() => {});
    if (!(await settlesWithin(graceful, CLOSE_TIMEOUT_MS))) {
      // Playwright's profile directories live in this process's TMPDIR (the
      // worker's own): every Chromium process of this worker names one.
      killProcessesUsing(tmpdir(), { prefix: true });
      await settlesWithin(graceful, KILL_WAIT_MS);
    }
  }
}
