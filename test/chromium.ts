import { describe, test } from "bun:test";
import { readFileSync } from "node:fs";
import { findChromium } from "../src/browser/browser";

/** The Chromium the browser tests drive: UNDERSTUDY_CHROMIUM_PATH, else the first on PATH. */
export function chromiumPath(): string | undefined {
  return findChromium(process.env.UNDERSTUDY_CHROMIUM_PATH || undefined);
}

let skipNoticeShown = false;

/**
 * A describe block that needs a real Chromium. Without one it is skipped with
 * one visible notice line, so a machine without a browser still runs the rest
 * of the suite; with UNDERSTUDY_TEST_REQUIRE_CHROMIUM=1 (CI) it fails instead,
 * so a broken CI image cannot silently skip every browser test.
 */
export function describeWithChromium(name: string, fn: (chromium: string) => void): void {
  const chromium = chromiumPath();
  if (chromium) {
    describe(name, () => fn(chromium));
    return;
  }
  if (process.env.UNDERSTUDY_TEST_REQUIRE_CHROMIUM === "1") {
    describe(name, () => {
      test("Chromium is installed (UNDERSTUDY_TEST_REQUIRE_CHROMIUM=1)", () => {
        throw new Error("No Chromium found, and UNDERSTUDY_TEST_REQUIRE_CHROMIUM=1 requires one: apt-get install chromium, or set UNDERSTUDY_CHROMIUM_PATH.");
      });
    });
    return;
  }
  if (!skipNoticeShown) {
    skipNoticeShown = true;
    console.warn("SKIPPED browser tests: no Chromium found (apt-get install chromium, or set UNDERSTUDY_CHROMIUM_PATH)");
  }
  describe.skip(name, () => fn(""));
}

/** Pids of Chromium processes (browser, zygotes, renderers...) started with this profile directory. */
export function chromiumProcessesUsing(userDataDir: string): number[] {
  return pgrep(["-f", "--", `--user-data-dir=${userDataDir}`]);
}

/**
 * The Chromium browsers this test process launched, with their profile
 * directories: playwright spawns the browser as a direct child of the test process.
 */
export function launchedBrowsers(): { pid: number; userDataDir: string }[] {
  const browsers: { pid: number; userDataDir: string }[] = [];
  for (const pid of pgrep(["-P", String(process.pid), "-f", "user-data-dir"])) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // ended since pgrep saw it
    }
    const profile = args.find((arg) => arg.startsWith("--user-data-dir="));
    if (profile) browsers.push({ pid, userDataDir: profile.slice("--user-data-dir=".length) });
  }
  return browsers;
}

function pgrep(args: string[]): number[] {
  const result = Bun.spawnSync(["pgrep", ...args]);
  return result.stdout
    .toString()
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map(Number);
}

/** Polls `condition` until it holds or `timeoutMs` passes (for process state, which no clock controls). */
export async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting until ${what}`);
    await Bun.sleep(50);
  }
}
