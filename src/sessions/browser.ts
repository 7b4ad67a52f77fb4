import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { findChromium, killProcessesUsing, LAUNCH_ARGS, LAUNCH_TIMEOUT_MS, unavailableError } from "../browser/browser";
import { staleServerDirs } from "../runtime";
import { CdpPipe, type CdpConnection, type CdpConnectionHandlers } from "./cdp-pipe";

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

/** One Chromium, started for one remote session and driven only through its DevTools pipe. */
export interface SessionBrowser {
  /** A DevTools connection of its own on the browser's pipe (see CdpPipe). */
  connect(handlers: CdpConnectionHandlers): CdpConnection;
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
 * Starts Chromium with its DevTools on a pipe (--remote-debugging-pipe), not
 * a port: a port on 127.0.0.1 would let any page on this host, another
 * tenant's session's included, open its /json/list and read this session's
 * pages. Ready when it answers Browser.getVersion. Not launched through Playwright:
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
    "--remote-debugging-pipe",
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
    // fd 3: commands to Chromium; fd 4: its answers and events.
    stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"],
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

  const pipe = new CdpPipe(child.stdio[3] as Writable, child.stdio[4] as Readable);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = await Promise.race([
    pipe.call("Browser.getVersion").then(
      () => "ok" as const,
      () => "exited" as const,
    ),
    exited.then(() => "exited" as const),
    new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), LAUNCH_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (started !== "ok" || child.pid === undefined) {
    await kill();
    throw new Error(started === "timeout" ? `Chromium did not start within ${LAUNCH_TIMEOUT_MS / 1000} s.` : "Chromium exited while starting.");
  }
  return { connect: (handlers) => pipe.connect(handlers), pid: child.pid, userDataDir, downloadsDir, exited, kill };
}
