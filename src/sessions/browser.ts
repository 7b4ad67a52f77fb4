import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findChromium, killProcessesUsing, LAUNCH_ARGS, LAUNCH_TIMEOUT_MS, unavailableError } from "../browser/browser";
import { staleServerDirs } from "../runtime";

/** Runs a command inside the workers' sandbox (bubblewrap), or as is: see src/runner/sandbox.ts. */
export type WrapCommand = (command: readonly string[], paths: { tmpDir: string; readOnly: readonly string[] }) => string[];

const SESSION_DIR_PREFIX = "understudy-session-";

/**
 * Kills the session browsers of servers that are gone and removes their
 * directories (each is named after its server's pid). A server killed with
 * SIGKILL cannot end them itself, and without bubblewrap (whose
 * --die-with-parent ends a sandboxed one) they would run on.
 */
export function removeStaleSessionBrowsers(): void {
  for (const home of staleServerDirs(SESSION_DIR_PREFIX)) {
    killProcessesUsing(join(home, "profile"));
    rmSync(home, { recursive: true, force: true });
  }
}

export interface SessionBrowserOptions {
  chromiumPath: string | undefined;
  startUrl?: string;
  viewport?: { width: number; height: number };
  wrap: WrapCommand;
}

/** One Chromium, started for one remote session and driven only through its DevTools WebSocket. */
export interface SessionBrowser {
  /** The browser's own DevTools WebSocket (ws://127.0.0.1:<port>/devtools/browser/<id>): never given to a client. */
  readonly devtoolsUrl: string;
  /** The launched process (bwrap's, when sandboxed): the leader of its process group. */
  readonly pid: number;
  /** The profile directory: its name is on every process of this browser. */
  readonly userDataDir: string;
  /** The session's download directory, inside its own directory. */
  readonly downloadsDir: string;
  /** Settles when the process has exited, for whatever reason. */
  readonly exited: Promise<void>;
  /** Kills the browser (its whole process group) and removes its profile; idempotent. */
  kill(): Promise<void>;
}

/**
 * Starts Chromium with a DevTools port on 127.0.0.1 (a free one, chosen by
 * Chromium: --remote-debugging-port=0) and reads the browser's WebSocket URL
 * from DevToolsActivePort in the profile. Not launched through Playwright:
 * the session's client connects with connectOverCDP and must find the start
 * page in the default context, which Playwright's launch does not give a
 * second client.
 */
export async function launchSessionBrowser(options: SessionBrowserOptions): Promise<SessionBrowser> {
  const executable = findChromium(options.chromiumPath);
  if (!executable) throw unavailableError(options.chromiumPath);
  const home = mkdtempSync(join(tmpdir(), `${SESSION_DIR_PREFIX}${process.pid}-`));
  chmodSync(home, 0o700);
  const userDataDir = join(home, "profile");
  const downloadsDir = join(home, "downloads");
  mkdirSync(downloadsDir);
  const args = [
    executable,
    "--headless",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    `--user-data-dir=${userDataDir}`,
    ...LAUNCH_ARGS,
    "--no-default-browser-check",
    "--password-store=basic",
    "--use-mock-keychain",
    ...(options.viewport ? [`--window-size=${options.viewport.width},${options.viewport.height}`] : []),
    options.startUrl ?? "about:blank",
  ];
  const argv = options.wrap(args, { tmpDir: home, readOnly: [] });
  const child = spawn(argv[0]!, argv.slice(1), {
    // Its own process group: a kill reaches every Chromium process, and a
    // Ctrl-C in the server's terminal does not reach the browser first.
    detached: true,
    stdio: "ignore",
    env: { PATH: "/usr/bin:/bin", HOME: home, TMPDIR: home },
  });
  let exitedNow = false;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  }).then(() => void (exitedNow = true));

  let killing: Promise<void> | undefined;
  const kill = () =>
    (killing ??= (async () => {
      if (!exitedNow && child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
      // A process that left the group (a zygote re-parented) is found by its profile.
      killProcessesUsing(userDataDir);
      await Promise.race([exited, sleep(5_000, undefined, { ref: false })]);
      await rm(home, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
    })());

  const deadline = Date.now() + LAUNCH_TIMEOUT_MS;
  for (;;) {
    const devtoolsUrl = readDevtoolsUrl(userDataDir);
    if (devtoolsUrl && child.pid !== undefined) {
      return { devtoolsUrl, pid: child.pid, userDataDir, downloadsDir, exited, kill };
    }
    if (exitedNow || Date.now() > deadline) {
      await kill();
      throw new Error(exitedNow ? "Chromium exited while starting." : `Chromium did not start within ${LAUNCH_TIMEOUT_MS / 1000} s.`);
    }
    await sleep(25);
  }
}

/** DevToolsActivePort holds the port, then the browser's WebSocket path. */
function readDevtoolsUrl(userDataDir: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(userDataDir, "DevToolsActivePort"), "utf8");
  } catch {
    return undefined;
  }
  const [port, path] = text.split("\n");
  if (!port || !/^\d+$/.test(port.trim()) || !path?.startsWith("/devtools/browser/")) return undefined;
  return `ws://127.0.0.1:${port.trim()}${path.trim()}`;
}
