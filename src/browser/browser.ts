import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
// Types only: playwright-core costs ~0.45 s and ~70 MB to load (measured), so
// it is imported when a job first launches a browser, not at start-up.
import type { BrowserContext, Page } from "playwright-core";
import { captureArtifacts, startTrace, type CaptureConfig, type CapturedArtifact } from "./capture";
import type { StorageState } from "../profiles/state";

export interface BrowserOptions {
  headless: boolean;
  /** Opened before the handler's first page call runs. */
  startUrl?: string;
  viewport?: { width: number; height: number };
  /** UNDERSTUDY_CHROMIUM_PATH; when unset, PATH is searched for chromium, chromium-browser, google-chrome. */
  chromiumPath?: string;
  /** What to keep when the job ends (screenshots, trace); undefined: nothing. */
  capture?: CaptureConfig;
  /** A browser profile's state (cookies, localStorage), loaded into the fresh context before the start URL. */
  storageState?: StorageState;
}

export interface LazyBrowser {
  /** Launches the browser on first use; see createLazyBrowser. */
  readonly page: Page;
  /** Whether a browser launch was begun. */
  readonly started: boolean;
  /**
   * Closes the browser if one was started; idempotent, and returns within
   * about 5 s (plus the capture's time). With an outcome, the artifacts of
   * options.capture are taken first; a stop (the signal) counts as "failed".
   * The first close decides: later calls get the same artifacts.
   */
  close(outcome?: "completed" | "failed"): Promise<CapturedArtifact[]>;
  /** The context's storageState now (a refreshing profile's), or undefined when no browser was opened. */
  storageState(): Promise<unknown>;
}

export class BrowserUnavailableError extends Error {
  override name = "BrowserUnavailableError";
}

/**
 * The --disable-features list Playwright passes (playwright-core 1.65.1,
 * chromiumSwitches.ts). Chromium keeps only the last --disable-features it
 * is given, so ours, which comes after Playwright's, must repeat these or
 * they are silently lost (HttpsUpgrades among them: http:// navigations
 * would be upgraded to https). test/browser/launch-args.test.ts checks, on a
 * real launch, that every feature Playwright disables stays disabled.
 */
export const PLAYWRIGHT_DISABLED_FEATURES = [
  "AvoidUnnecessaryBeforeUnloadCheckSync",
  "DestroyProfileOnBrowserClose",
  "HttpsUpgrades",
  "HttpsFirstBalancedModeAutoEnable",
  "LensOverlay",
  "MediaRouter",
  "PaintHolding",
  "ThirdPartyStoragePartitioning",
  "AvoidCorsURLLoaderRestartOnRedirect",
  "TcpPortRandomizationWin",
  "OptimizationHints",
  "NetworkTimeServiceQuerying",
  "AimEnabled",
  "PreconnectToSearch",
  "msForceBrowserSignIn",
  "msEdgeUpdateLaunchServicesPreferredVersion",
];

/**
 * What a job's browser must not do on its own: phone home, update itself, or
 * look names up that no workflow asked for. Measured with the network cut
 * (test/airgap/offline.sh, Chromium 156, a data: page held open 5 s): with
 * Playwright's switches alone it tried 19 non-loopback connects, with these
 * 1, the IPv6 probe, which sends nothing (README "Air-gapped"). None of them
 * changes how a page loads: workflows reach the web, through a proxy too.
 */
export const LAUNCH_ARGS = [
  // Measured here as root in a container: the sandbox needs --no-sandbox.
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--dns-prefetch-disable",
  // --disable-component-update stops only the scheduled updates: on-demand
  // ones still ran (the optimization guide's on-device model manifest,
  // update.googleapis.com, 4 DNS lookups offline). Pointed at a closed
  // loopback port, the component updater reaches nothing.
  "--component-updater=url-source=http://127.0.0.1:9/",
  // Names are resolved by the system resolver (getaddrinfo: /etc/hosts, the
  // configured DNS server), never by Chromium's own DNS client (AsyncDns:
  // HTTPS-record lookups too) or upgraded to DNS-over-HTTPS.
  `--disable-features=${[...PLAYWRIGHT_DISABLED_FEATURES, "DnsOverHttpsUpgrade", "AsyncDns"].join(",")}`,
];
export const LAUNCH_TIMEOUT_MS = 30_000;
export const CLOSE_TIMEOUT_MS = 5_000;
export const KILL_WAIT_MS = 2_000;
const CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome"];

/**
 * The Chromium executable to drive: the configured path if it is an
 * executable file (a configured path never falls back to PATH, so a typo is
 * reported instead of silently using another browser), else the first of
 * CHROMIUM_NAMES on PATH.
 */
export function findChromium(configured?: string): string | undefined {
  // Asked at every job's start: a browser found is kept for a few seconds
  // (a removal is seen soon after), not searched for on PATH each time. None
  // found is never kept, so an install is seen at once.
  const now = Date.now();
  const key = `${configured ?? ""}\n${process.env.PATH ?? ""}`;
  const kept = foundChromium.get(key);
  if (kept && now - kept.at < FIND_CHROMIUM_KEEP_MS) return kept.path;
  const path = searchChromium(configured);
  if (path) foundChromium.set(key, { path, at: now });
  else foundChromium.delete(key);
  return path;
}

const FIND_CHROMIUM_KEEP_MS = 5_000;
const foundChromium = new Map<string, { path: string; at: number }>();

function searchChromium(configured?: string): string | undefined {
  if (configured) return isExecutableFile(configured) ? configured : undefined;
  // PATH is the operating system's search path, not Understudy configuration.
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "");
  for (const name of CHROMIUM_NAMES) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function unavailableError(configured: string | undefined): BrowserUnavailableError {
  const problem = configured
    ? `UNDERSTUDY_CHROMIUM_PATH is ${configured}, which is not an executable file.`
    : `No Chromium found on PATH (looked for ${CHROMIUM_NAMES.join(", ")}).`;
  return new BrowserUnavailableError(
    `${problem} This workflow uses ctx.page and needs a Chromium browser: install it with \`apt-get install chromium\` (Debian/Ubuntu), or set UNDERSTUDY_CHROMIUM_PATH to a Chromium or Chrome executable.`,
  );
}

/** Playwright's viewport when none is given (what `page.viewportSize()` answers then). */
export const DEFAULT_VIEWPORT = Object.freeze({ width: 1280, height: 720 });

export interface LazyPage {
  /** The page; see createLazyPage. */
  readonly page: Page;
  /** Whether the page was asked for (a launch or a prepared page was taken). */
  readonly opened: boolean;
}

/**
 * A page that exists only once the handler uses it, so a workflow that never
 * touches it never pays for (or risks) a browser.
 *
 * `page` is sync but opening is async, so until the real page exists `page`
 * is a proxy that records property reads and calls and replays them on the
 * real page once it exists: `await page.goto(url)` and
 * `await page.locator("#x").fill("y")` both work before the launch. Every
 * call starts its replay at once (as a real page call would), and the chain
 * is awaitable. After the launch, `page` forwards straight to the real page.
 *
 * The sync methods that answer a plain value on a real page answer it here
 * too, before the launch, with what the page will have once opened:
 * `url()` (the start URL, else about:blank), `viewportSize()` and
 * `isClosed()`; they count as a use and start the opening. Without this,
 * `return { viewport: page.viewportSize() }` would return a function that
 * JSON silently drops.
 */
export function createLazyPage(open: () => Promise<Page>, before: { startUrl?: string; viewport?: { width: number; height: number } }): LazyPage {
  let opening: Promise<Page> | undefined;
  let realPage: Page | undefined;
  const openOnce = () => {
    if (!opening) {
      opening = open().then((page) => (realPage = page));
      // Marked handled here; whoever awaits the page still sees the failure.
      opening.catch(() => {});
    }
    return opening;
  };
  const syncAnswers: Record<string, () => unknown> = {
    url: () => before.startUrl ?? "about:blank",
    viewportSize: () => ({ ...(before.viewport ?? DEFAULT_VIEWPORT) }),
    isClosed: () => false,
  };

  const page = new Proxy({} as Page, {
    get(_, key) {
      if (realPage) return bindIfFunction(Reflect.get(realPage, key), realPage);
      // `then` must stay undefined: awaiting or returning the page itself is not a use of it.
      if (typeof key === "symbol" || key === "then") return undefined;
      const answer = syncAnswers[key];
      if (answer) {
        return (...args: unknown[]) => {
          if (realPage) return (realPage[key as keyof Page] as (...a: unknown[]) => unknown).apply(realPage, args);
          void openOnce();
          return answer();
        };
      }
      return deferred(`page.${key}`, async () => {
        const opened = await openOnce();
        return bindIfFunction(opened[key as keyof Page], opened);
      }, false);
    },
  });
  return {
    page,
    get opened() {
      return opening !== undefined;
    },
  };
}

/**
 * A browser launched for one run (the in-process mode and `understudy run`):
 * it starts on the handler's first use of `page` (see createLazyPage) and is
 * closed when the run ends.
 *
 * The signal aborting (cancel, timeout, shutdown) closes the browser, so a
 * pending page call rejects and no browser outlives its job.
 */
export function createLazyBrowser(options: BrowserOptions, signal?: AbortSignal): LazyBrowser {
  let started = false;
  let closing: Promise<CapturedArtifact[]> | undefined;
  let launching: Promise<BrowserContext> | undefined;
  let openedPage: Page | undefined;
  // Our own profile directory: it names every process of this browser, which
  // is how a browser that ignores close() is found and killed.
  let userDataDir: string | undefined;

  const closedError = () => new Error("The browser was closed because the job was stopped.");

  async function openPage(): Promise<Page> {
    if (closing) throw closedError();
    const executablePath = findChromium(options.chromiumPath);
    if (!executablePath) throw unavailableError(options.chromiumPath);
    // Everything up to the launch call is synchronous, so a close() that
    // comes meanwhile always sees `launching` and waits for it.
    started = true;
    userDataDir = mkdtempSync(join(tmpdir(), "understudy-browser-"));
    const profile = userDataDir;
    launching = import("playwright-core").then(({ chromium }) =>
      chromium.launchPersistentContext(profile, {
        executablePath,
        headless: options.headless,
        // The server owns shutdown: on SIGTERM running jobs get their grace, so
        // Playwright must not close the browser on the signal itself.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        viewport: options.viewport,
        args: LAUNCH_ARGS,
        timeout: LAUNCH_TIMEOUT_MS,
      }),
    );
    try {
      const context = await launching;
      if (closing) throw closedError();
      if (options.storageState) await context.setStorageState(options.storageState);
      if (closing) throw closedError();
      await startTrace(context, options.capture);
      const page = context.pages()[0] ?? (await context.newPage());
      openedPage = page;
      if (options.startUrl) await page.goto(options.startUrl);
      if (closing) throw closedError();
      return page;
    } catch (error) {
      throw closing ? closedError() : error;
    }
  }

  const lazy = createLazyPage(openPage, options);

  async function shutdown(outcome: "completed" | "failed" | undefined): Promise<CapturedArtifact[]> {
    signal?.removeEventListener("abort", onAbort);
    if (!launching) return [];
    let artifacts: CapturedArtifact[] = [];
    if (outcome && options.capture) {
      // Only a browser that finished launching in time has anything to show.
      const context = await Promise.race([launching.catch(() => undefined), new Promise<undefined>((r) => setTimeout(r, CLOSE_TIMEOUT_MS, undefined))]);
      if (context) artifacts = await captureArtifacts(context, openedPage, options.capture, outcome).catch(() => []);
    }
    // A launch still under way gets the same grace as a close: its browser is
    // then closed (or killed), never orphaned.
    const graceful = launching.then((context) => context.close());
    graceful.catch(() => {});
    if (!(await settlesWithin(graceful, CLOSE_TIMEOUT_MS)) && userDataDir) {
      killProcessesUsing(userDataDir);
      // Playwright settles the close once it sees the killed process exit.
      await settlesWithin(graceful, KILL_WAIT_MS);
    }
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
    return artifacts;
  }

  const close = (outcome?: "completed" | "failed") => (closing ??= shutdown(outcome));
  // A stop (timeout, cancel) is a failure: what the page showed then is kept.
  // Not at a shutdown ("interrupted"), whose time is counted.
  const onAbort = () => void close(signal?.reason === "finished" || signal?.reason === "interrupted" ? undefined : "failed");
  if (signal?.aborted) void close();
  else signal?.addEventListener("abort", onAbort, { once: true });

  return {
    page: lazy.page,
    get started() {
      return started;
    },
    close,
    async storageState() {
      if (!launching || closing) return undefined;
      const context = await launching;
      return context.storageState();
    },
  };
}

export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    promise.then(() => true, () => true),
    new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false))),
  ]);
  clearTimeout(timer);
  return settled;
}

function bindIfFunction(value: unknown, receiver: unknown): unknown {
  return typeof value === "function" ? value.bind(receiver) : value;
}

// Proxy -> its value, so a deferred value passed as an argument
// (`a.or(page.locator("b"))`) is replaced by the real object.
const deferredValues = new WeakMap<object, () => Promise<unknown>>();

/**
 * A stand-in for a value that exists once the browser does: reading a
 * property gives another stand-in, calling it runs the call (right away when
 * `eager`) and gives a stand-in for its result, and awaiting it gives the
 * real value. `label` names the chain in errors.
 */
function deferred(label: string, resolve: () => Promise<unknown>, eager: boolean): any {
  let memo: Promise<unknown> | undefined;
  const value = () => (memo ??= resolve());
  // Marked handled: a call whose result nobody awaits must not become an
  // unhandled rejection that takes the server down. Awaiters still see it.
  if (eager) value().catch(() => {});

  const proxy: object = new Proxy(() => {}, {
    get(_, key) {
      if (key === "then" || key === "catch" || key === "finally") {
        const promise = value();
        return promise[key].bind(promise);
      }
      if (typeof key === "symbol") return undefined;
      return deferred(`${label}.${key}`, async () => {
        const base = (await value()) as Record<string, unknown>;
        return bindIfFunction(base[key], base);
      }, false);
    },
    apply(_, __, args: unknown[]) {
      return deferred(`${label}(...)`, async () => {
        const fn = await value();
        if (typeof fn !== "function") throw new TypeError(`${label} is not a function`);
        const realArgs = await Promise.all(args.map((arg) => (isObject(arg) ? (deferredValues.get(arg)?.() ?? arg) : arg)));
        return await fn(...realArgs);
      }, true);
    },
  });
  deferredValues.set(proxy, value);
  return proxy;
}

function isObject(value: unknown): value is object {
  return (typeof value === "object" && value !== null) || typeof value === "function";
}

/**
 * SIGKILLs every process whose command line names this profile directory, or
 * (`prefix`) any profile directory under it (Linux /proc).
 */
export function killProcessesUsing(userDataDir: string, options: { prefix?: boolean } = {}): void {
  // A browser caught while it starts may fork a child after a pass has read
  // /proc, and a killed process keeps its command line until it has exited,
  // which a busy machine can take a while to finish: look again until a pass
  // finds none, for at most KILL_SETTLE_MS.
  const deadline = Date.now() + KILL_SETTLE_MS;
  while (killPass(userDataDir, options) > 0 && Date.now() < deadline) Atomics.wait(PAUSE, 0, 0, 20);
}

const KILL_SETTLE_MS = 5_000;

const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** One pass over /proc: SIGKILLs the processes with this profile; returns how many it found. */
function killPass(userDataDir: string, options: { prefix?: boolean }): number {
  const names = namesProfile(`--user-data-dir=${userDataDir}`, options.prefix ?? false);
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((entry) => /^\d+$/.test(entry));
  } catch {
    return 0;
  }
  let found = 0;
  for (const pid of entries) {
    try {
      if (!names(readFileSync(`/proc/${pid}/cmdline`, "utf8"))) continue;
      found++;
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // The process ended meanwhile, or is not ours to read.
    }
  }
  return found;
}

/**
 * Whether a /proc cmdline names the profile. Chromium's child processes
 * rewrite their title as one space-joined string, so an argument ends at a
 * NUL, a space or the end, not only at a NUL.
 */
function namesProfile(marker: string, prefix: boolean): (cmdline: string) => boolean {
  const boundary = (c: string | undefined) => c === undefined || c === "\0" || c === " ";
  return (cmdline) => {
    for (let at = cmdline.indexOf(marker); at >= 0; at = cmdline.indexOf(marker, at + 1)) {
      if (boundary(cmdline[at - 1]) && (prefix || boundary(cmdline[at + marker.length]))) return true;
    }
    return false;
  };
}
