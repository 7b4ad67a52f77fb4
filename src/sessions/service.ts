import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { BrowserUnavailableError } from "../browser/browser";
import type { Clock, IdSource } from "../clock";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { Logger } from "../log";
import type { CdpConnection, CdpConnectionHandlers } from "./cdp-pipe";
import { launchSessionBrowser, type SessionBrowser, type WrapCommand } from "./browser";
import type { SessionProfile, SessionProfiles } from "./profiles";
import { applyStorageState, openFirstPage, readStorageState } from "./storage-state";
import { capturePages, FINAL_RESERVE, MAX_FRAMES_PER_SESSION, type SessionRecordings } from "./recording";

/**
 * Remote browser sessions (`libretto open <url> --provider libretto-cloud`):
 * each is a Chromium of its own, reached only through a WebSocket on this
 * server whose path carries the session's token. Held in memory: a session
 * is a live process, and none outlives the server (closeAll at shutdown).
 */

export type SessionStatus = "starting" | "running" | "closed";
export type ClosedReason = "closed" | "idle_timeout" | "timeout" | "browser_exited" | "shutdown";

/** What the API shows of a session (the cdp_url only while it runs). */
export interface SessionView {
  session_id: string;
  status: SessionStatus;
  cdp_url: string | null;
  live_view_url: null;
  created_at: string;
  expires_at: string;
  closed_at: string | null;
  closed_reason: ClosedReason | null;
}

/** A CDP client's connection, as the proxy holds it. */
export interface SessionSocket {
  close(code?: number, reason?: string): void;
}

/** What the CDP proxy may do with a session it admitted. */
export interface AdmittedSession {
  readonly id: string;
  /** A DevTools connection of its own to the session's browser. */
  connect(handlers: CdpConnectionHandlers): CdpConnection;
  /** Where the session's downloads go (in its own directory). */
  readonly downloadsDir: string;
  /** CDP traffic in either direction: the session is not idle. */
  touch(): void;
  attach(socket: SessionSocket): void;
  detach(socket: SessionSocket): void;
}

interface Session {
  id: string;
  tenantId: string;
  status: SessionStatus;
  createdAt: Date;
  expiresAt: Date;
  expiresAtMs: number;
  lastActivityMs: number;
  /** SHA-256 of the token: compared in constant time. */
  tokenHash: Buffer;
  /** Kept in memory only, to answer sessions/get to the session's tenant. */
  cdpUrl: string;
  browser: SessionBrowser | undefined;
  /** The launch under way (settles undefined when it fails). */
  launching: Promise<SessionBrowser | undefined> | undefined;
  sockets: Set<SessionSocket>;
  closedAt: Date | undefined;
  closedReason: ClosedReason | undefined;
  closing: Promise<void> | undefined;
  /** Periodic screenshots (UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS). */
  recordTimer: ReturnType<typeof setInterval> | undefined;
  framesSaved: number;
  capturing: boolean;
  /** The browser profile it was opened with (profile_name), if any. */
  profile: SessionProfile | undefined;
  /** Set once it ran: only then is its browser's state the session's own, to save into the profile. */
  ran: boolean;
}

export interface CreateSessionInput {
  timeoutSeconds: number;
  startUrl?: string;
  viewport?: { width: number; height: number };
  /** profile_name and profile_persist. */
  profile?: { name: string; persist: boolean };
}

export interface BrowserSessionsOptions {
  limits: Config["sessions"];
  chromiumPath: string | undefined;
  /** The workers' sandbox: a session's browser is tenant-driven, so it gets the same confinement. */
  wrap: WrapCommand;
  /** False under Node: the CDP WebSocket is served under Bun only. */
  websockets: boolean;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  /** Monotonic-enough milliseconds for idle and lifetime checks; injected by tests. */
  nowMs?: () => number;
  /** Where screenshots of the sessions' pages go; none: nothing is recorded. */
  recordings?: SessionRecordings;
  /** Periodic screenshots every this many ms; 0: only the final one. */
  recordingIntervalMs?: number;
  /** The tenants' browser profiles; none: profile_name is refused. */
  profiles?: SessionProfiles;
}

/** The final screenshot's time bound when a session is closed or times out, and at shutdown. */
const FINAL_CAPTURE_MS = 3_000;
const SHUTDOWN_CAPTURE_MS = 1_000;
/** Loading a profile's state into a new session's browser, and reading it back at the end (at shutdown: less). */
const PROFILE_LOAD_MS = 15_000;
const PROFILE_SAVE_MS = 5_000;
const SHUTDOWN_PROFILE_SAVE_MS = 2_000;

/** The path of a session's CDP WebSocket, before the session id and token. */
export const CDP_PATH_PREFIX = "/v1/sessions/cdp/";
/** Ended sessions stay readable (status closed) this long. */
const ENDED_KEPT_MS = 60 * 60 * 1000;
const ENDED_KEPT_MAX = 1000;

export class BrowserSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly nowMs: () => number;
  private shuttingDown = false;

  constructor(private readonly options: BrowserSessionsOptions) {
    this.nowMs = options.nowMs ?? Date.now;
    const every = Math.max(50, Math.min(options.limits.idleMs / 4, 5_000));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref?.();
  }

  async create(tenantId: string, input: CreateSessionInput, origin: string): Promise<SessionView> {
    if (!this.options.websockets) {
      throw new AppError(
        "SERVICE_UNAVAILABLE",
        "Remote browser sessions need Understudy running on Bun (the understudy binary or `bun src/main.ts`): this server runs on Node, which does not serve the session's WebSocket.",
      );
    }
    if (this.shuttingDown) throw new AppError("SERVICE_UNAVAILABLE", "The server is shutting down; create the session again once it is back.");
    if (this.options.limits.max === 0) {
      throw new AppError("SERVICE_UNAVAILABLE", "Remote browser sessions are turned off on this server (UNDERSTUDY_MAX_SESSIONS=0); ask its operator.", {
        data: { reason: "sessions_off" },
      });
    }
    const open = [...this.sessions.values()].filter((s) => s.status !== "closed");
    const { perTenant, max } = this.options.limits;
    if (open.filter((s) => s.tenantId === tenantId).length >= perTenant) {
      throw new AppError(
        "TOO_MANY_REQUESTS",
        `This tenant already has ${perTenant} open browser session${perTenant === 1 ? "" : "s"}, the most it may have (UNDERSTUDY_SESSIONS_PER_TENANT); close one with /v1/sessions/close first.`,
        { data: { reason: "tenant_session_limit", limit: perTenant } },
      );
    }
    if (open.length >= max) {
      throw new AppError(
        "TOO_MANY_REQUESTS",
        `This server already runs ${max} browser session${max === 1 ? "" : "s"}, the most it may (UNDERSTUDY_MAX_SESSIONS); try again when one has closed.`,
        { data: { reason: "server_session_limit", limit: max } },
      );
    }
    const id = this.options.newId();
    const token = randomBytes(32).toString("base64url");
    const now = this.nowMs();
    const createdAt = this.options.clock.now();
    const session: Session = {
      id,
      tenantId,
      status: "starting",
      createdAt,
      expiresAt: new Date(createdAt.getTime() + input.timeoutSeconds * 1000),
      expiresAtMs: now + input.timeoutSeconds * 1000,
      lastActivityMs: now,
      tokenHash: hashToken(token),
      cdpUrl: `${origin.replace(/^http/, "ws")}${CDP_PATH_PREFIX}${id}/${token}`,
      browser: undefined,
      launching: undefined,
      sockets: new Set(),
      closedAt: undefined,
      closedReason: undefined,
      closing: undefined,
      recordTimer: undefined,
      framesSaved: 0,
      capturing: false,
      profile: undefined,
      ran: false,
    };
    // Counted against the limits from here, while its browser starts.
    this.sessions.set(id, session);
    if (input.profile) {
      if (!this.options.profiles) throw new AppError("SERVICE_UNAVAILABLE", "Browser profiles are not available to remote sessions on this server.");
      try {
        session.profile = await this.options.profiles.open(tenantId, id, input.profile.name, input.profile.persist);
      } catch (error) {
        this.sessions.delete(id);
        throw error;
      }
    }
    const state = session.profile?.state;
    const loadState = state !== undefined && (state.cookies.length > 0 || state.origins.length > 0);
    let browser: SessionBrowser;
    const launching = launchSessionBrowser({
      chromiumPath: this.options.chromiumPath,
      // With a state to load first, the start page opens after it (its request then carries the profile's cookies).
      startUrl: loadState ? undefined : input.startUrl,
      viewport: input.viewport,
      wrap: this.options.wrap,
    });
    session.launching = launching.catch(() => undefined);
    try {
      browser = await launching;
    } catch (error) {
      this.sessions.delete(id);
      if (error instanceof BrowserUnavailableError) throw new AppError("SERVICE_UNAVAILABLE", error.message);
      this.options.log.log("error", "browser session could not start", { session_id: id, tenant_id: tenantId, error: String(error) });
      throw new AppError("SERVICE_UNAVAILABLE", "The session's browser could not be started; the server log has the detail.");
    }
    session.browser = browser;
    if (loadState && session.status !== "closed") {
      try {
        await applyStorageState(browser.connect, state, PROFILE_LOAD_MS);
        if (input.startUrl) await openFirstPage(browser.connect, input.startUrl, PROFILE_LOAD_MS);
      } catch (error) {
        this.sessions.delete(id);
        await browser.kill();
        this.options.log.log("error", "browser session could not load its profile", { session_id: id, tenant_id: tenantId, error: error instanceof Error ? error.message : "error" });
        throw new AppError("SERVICE_UNAVAILABLE", `The session's browser could not load browser profile "${session.profile!.name}"; the server log has the detail.`);
      }
    }
    if (session.status === "closed") {
      // Closed (or the server began shutting down) while it started.
      await browser.kill();
    } else {
      session.status = "running";
      session.ran = true;
      session.lastActivityMs = this.nowMs();
      void browser.exited.then(() => this.end(session, "browser_exited"));
      const every = this.options.recordingIntervalMs ?? 0;
      if (this.options.recordings && every > 0) {
        session.recordTimer = setInterval(() => void this.record(session, every, false), every);
        session.recordTimer.unref?.();
      }
      this.options.log.log("info", "browser session opened", { session_id: id, tenant_id: tenantId });
    }
    return this.view(session);
  }

  /** The session as its tenant sees it; another tenant's is absent (404), exactly like one that never was. */
  get(tenantId: string, id: string): SessionView {
    return this.view(this.owned(tenantId, id));
  }

  /** Closes the session; true when it was open. */
  async close(tenantId: string, id: string): Promise<boolean> {
    const session = this.owned(tenantId, id);
    const wasOpen = session.status !== "closed";
    await this.end(session, "closed");
    return wasOpen;
  }

  /** Ends every session (shutdown): their browsers are gone when this settles. */
  async closeAll(): Promise<void> {
    this.shuttingDown = true;
    clearInterval(this.sweeper);
    await Promise.all([...this.sessions.values()].map((s) => this.end(s, "shutdown")));
  }

  /** The tenant's sessions that are not closed. */
  openSessionIds(tenantId: string): string[] {
    return [...this.sessions.values()].filter((s) => s.tenantId === tenantId && s.status !== "closed").map((s) => s.id);
  }

  /** The tenant's open sessions that will save their state into this profile (profile_persist). */
  persistingInto(tenantId: string, profileName: string): string[] {
    return [...this.sessions.values()]
      .filter((s) => s.tenantId === tenantId && s.status !== "closed" && s.profile?.persist && s.profile.name === profileName)
      .map((s) => s.id);
  }

  /** Test seam: the browser process of an open session. */
  browserOf(id: string): { pid: number; userDataDir: string } | undefined {
    const browser = this.sessions.get(id)?.browser;
    return browser && { pid: browser.pid, userDataDir: browser.userDataDir };
  }

  /**
   * The CDP proxy's check of a session id and token from its path: the
   * session, when the token is its own and it runs; else an error that tells
   * only the token's holder more than "no such session".
   */
  admit(id: string, token: string): AdmittedSession | AppError {
    const session = this.sessions.get(id);
    if (!session || !token || !timingSafeEqual(hashToken(token), session.tokenHash)) {
      return new AppError("NOT_FOUND", "No browser session has this CDP URL: the URL is wrong, or its token is not this session's.");
    }
    if (session.status !== "running" || !session.browser) {
      const why = session.closedReason === "idle_timeout" ? " after its idle timeout (UNDERSTUDY_SESSION_IDLE_MS)" : session.closedReason === "timeout" ? " at the end of its timeout_seconds" : "";
      return new AppError("NOT_FOUND", `This browser session was closed${why}; create a new one with /v1/sessions/create.`, {
        data: { status: session.status, closed_reason: session.closedReason ?? null },
      });
    }
    const browser = session.browser;
    return {
      id: session.id,
      connect: (handlers) => browser.connect(handlers),
      downloadsDir: browser.downloadsDir,
      touch: () => void (session.lastActivityMs = this.nowMs()),
      attach: (socket) => {
        if (session.status === "closed") socket.close(1000, "The browser session was closed.");
        else session.sockets.add(socket);
      },
      detach: (socket) => {
        // Idle time counts from the last client's leaving.
        if (session.sockets.delete(socket)) session.lastActivityMs = this.nowMs();
      },
    };
  }

  private owned(tenantId: string, id: string): Session {
    const session = this.sessions.get(id);
    if (!session || session.tenantId !== tenantId) throw new AppError("NOT_FOUND", `No browser session ${id}.`);
    return session;
  }

  private end(session: Session, reason: ClosedReason): Promise<void> {
    if (session.status !== "closed") {
      session.status = "closed";
      session.closedReason = reason;
      session.closedAt = this.options.clock.now();
      clearInterval(session.recordTimer);
      for (const socket of session.sockets) socket.close(1000, closeMessage(reason));
      session.sockets.clear();
      this.options.log.log("info", "browser session closed", { session_id: session.id, tenant_id: session.tenantId, reason });
    }
    // A browser still starting is killed once it is up (and closeAll waits for that).
    // A running one first gives its final screenshot (bounded in time; none when it exited by itself).
    const browser = session.browser;
    return (session.closing ??= browser
      ? (reason === "browser_exited"
          ? Promise.resolve()
          : this.record(session, reason === "shutdown" ? SHUTDOWN_CAPTURE_MS : FINAL_CAPTURE_MS, true).then(() =>
              this.persist(session, reason === "shutdown" ? SHUTDOWN_PROFILE_SAVE_MS : PROFILE_SAVE_MS),
            )
        ).then(() => browser.kill())
      : (session.launching ?? Promise.resolve(undefined)).then((started) => started?.kill()));
  }

  /** Screenshots of the session's pages into its recording; a failure is logged, never thrown. */
  private async record(session: Session, timeoutMs: number, final: boolean): Promise<void> {
    const recordings = this.options.recordings;
    if (!recordings || !session.browser || (!final && (session.status !== "running" || session.capturing))) return;
    const room = MAX_FRAMES_PER_SESSION - session.framesSaved - (final ? 0 : FINAL_RESERVE);
    if (room <= 0) return;
    session.capturing = true;
    try {
      const frames = (await capturePages(session.browser.connect, timeoutMs)).slice(0, room);
      if (!frames.length) return;
      session.framesSaved += frames.length;
      await recordings.saveFrames(session.tenantId, session.id, frames);
    } catch (error) {
      this.options.log.log("warn", "browser session screenshot not saved", { session_id: session.id, tenant_id: session.tenantId, error: error instanceof Error ? error.message : "error" });
    } finally {
      session.capturing = false;
    }
  }

  /** With profile_persist, the browser's state (cookies, localStorage) into the profile; a failure is logged, never thrown. */
  private async persist(session: Session, timeoutMs: number): Promise<void> {
    const profile = session.profile;
    if (!profile?.persist || !session.ran || !session.browser || !this.options.profiles) return;
    const fields = { session_id: session.id, tenant_id: session.tenantId, profile: profile.name };
    try {
      const state = await readStorageState(session.browser.connect, profile.state?.origins.map((o) => o.origin) ?? [], timeoutMs);
      if (state) await this.options.profiles.save(session.tenantId, session.id, profile, state);
      else this.options.log.log("warn", "browser session profile not saved", { ...fields, reason: `its state was not read within ${timeoutMs} ms` });
    } catch (error) {
      this.options.log.log("warn", "browser session profile not saved", { ...fields, reason: error instanceof Error ? error.message : "error" });
    }
  }

  /** Whether the tenant has (or had, within ENDED_KEPT_MS) this session. */
  knows(tenantId: string, id: string): boolean {
    return this.sessions.get(id)?.tenantId === tenantId;
  }

  private sweep(): void {
    const now = this.nowMs();
    for (const session of this.sessions.values()) {
      if (session.status === "running") {
        if (now >= session.expiresAtMs) void this.end(session, "timeout");
        // A connected client is not idle, even when silent (the libretto CLI's daemon holds its connection
        // between commands); timeout_seconds bounds it.
        else if (session.sockets.size === 0 && now - session.lastActivityMs >= this.options.limits.idleMs) void this.end(session, "idle_timeout");
      } else if (session.status === "closed" && session.closedAt && this.options.clock.now().getTime() - session.closedAt.getTime() > ENDED_KEPT_MS) {
        this.sessions.delete(session.id);
      }
    }
    const ended = [...this.sessions.values()].filter((s) => s.status === "closed");
    for (const old of ended.slice(0, Math.max(0, ended.length - ENDED_KEPT_MAX))) this.sessions.delete(old.id);
  }

  private view(session: Session): SessionView {
    return {
      session_id: session.id,
      status: session.status,
      cdp_url: session.status === "running" ? session.cdpUrl : null,
      live_view_url: null,
      created_at: session.createdAt.toISOString(),
      expires_at: session.expiresAt.toISOString(),
      closed_at: session.closedAt?.toISOString() ?? null,
      closed_reason: session.closedReason ?? null,
    };
  }
}

function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

function closeMessage(reason: ClosedReason): string {
  switch (reason) {
    case "closed":
      return "The browser session was closed.";
    case "idle_timeout":
      return "The browser session was closed after its idle timeout.";
    case "timeout":
      return "The browser session reached its timeout_seconds.";
    case "browser_exited":
      return "The session's browser exited.";
    case "shutdown":
      return "The server is shutting down.";
  }
}
