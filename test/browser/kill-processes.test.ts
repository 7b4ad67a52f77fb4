import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killProcessesUsing } from "../../src/browser/browser";
import { chromiumProcessesUsing, describeWithChromium, waitUntil } from "../chromium";

/** Processes (not zombies) whose command line, as ps shows it, names this profile. */
function runningWith(profile: string): string[] {
  const seen: string[] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.includes(`--user-data-dir=${profile}`)) seen.push(`${pid}: ${cmdline.replaceAll("\0", " ").slice(0, 80)}`);
    } catch {
      // ended meanwhile
    }
  }
  return seen;
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describeWithChromium("killProcessesUsing", (chromiumPath) => {
  test("ends the browser and every child at once, including children that show their arguments as one space-joined title", async () => {
    const dir = mkdtempSync(join(tmpdir(), "understudy-kill-"));
    dirs.push(dir);
    const profile = join(dir, "profile");
    const browser = Bun.spawn([chromiumPath, "--headless", "--no-sandbox", `--user-data-dir=${profile}`, "about:blank"], { stdio: ["ignore", "ignore", "ignore"] });
    try {
      // The zygotes, GPU, network and renderer processes are up: Chromium
      // rewrites their titles, so their /proc cmdline is one string with spaces.
      await waitUntil(() => chromiumProcessesUsing(profile).length >= 5, 15_000, "the browser's child processes run");
      killProcessesUsing(profile);
      // Checked at once: a child left behind would go on writing to the
      // profile until it noticed its parent's death.
      expect(runningWith(profile)).toEqual([]);
    } finally {
      browser.kill("SIGKILL");
    }
  });
});
