import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { sql } from "kysely";
import type { Clock, IdSource } from "../clock";
import type { Logger } from "../log";
import { CdpCaller, within, type Connect } from "./cdp-caller";
import type { Db } from "../store/database";

/**
 * Session recordings: screenshots of a remote session's pages, taken by the
 * server on a DevTools connection of its own (never through the client's
 * cdp_url), kept per tenant in session_recording_frames and
 * shown at GET /v1/recordings/view/<session_id>/<token>.
 */

/** Frames kept per session at most; the last FINAL_RESERVE are left for the final screenshots. */
export const MAX_FRAMES_PER_SESSION = 100;
/** Pages captured per screenshot round at most (the first ones the browser lists). */
const MAX_PAGES_PER_ROUND = 4;
export const FINAL_RESERVE = MAX_PAGES_PER_ROUND;
/** View tokens kept per recording: recordings/get mints one per call, the oldest beyond this stop working. */
const MAX_TOKENS_PER_SESSION = 20;
const DAY_MS = 24 * 60 * 60 * 1000;
export const RECORDING_VIEW_PREFIX = "/v1/recordings/view/";

/**
 * PNG screenshots of the browser's pages (at most MAX_PAGES_PER_ROUND),
 * through raw CDP on a DevTools connection of the server's own. Settles
 * within timeoutMs, with what it has by then (possibly nothing); never throws.
 */
export async function capturePages(connect: Connect, timeoutMs: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  const cdp = new CdpCaller(connect);
  const work = (async () => {
    const { targetInfos } = await cdp.call<{ targetInfos: { targetId: string; type: string }[] }>("Target.getTargets");
    // In parallel: a page that will not paint (or closes meanwhile) costs the others nothing.
    const pages = targetInfos.filter((t) => t.type === "page").slice(0, MAX_PAGES_PER_ROUND);
    const shots: (Uint8Array | undefined)[] = pages.map(() => undefined);
    await Promise.all(
      pages.map(async (target, i) => {
        try {
          const { sessionId } = await cdp.call<{ sessionId: string }>("Target.attachToTarget", { targetId: target.targetId, flatten: true });
          const { data } = await cdp.call<{ data: string }>("Page.captureScreenshot", { format: "png" }, sessionId);
          shots[i] = Buffer.from(data, "base64");
          frames.length = 0;
          for (const shot of shots) if (shot) frames.push(shot);
          await cdp.call("Target.detachFromTarget", { sessionId }).catch(() => {});
        } catch {
          // A page that closed meanwhile, or the time is up: the others still count.
        }
      }),
    );
  })().catch(() => {});
  await within(timeoutMs, work);
  cdp.close("capture ended");
  return [...frames];
}

export function hashRecordingToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

export interface RecordingFrame {
  bytes: Uint8Array;
  created_at: string;
}

/** The database side of recordings. */
export class SessionRecordings {
  constructor(private readonly deps: { db: Db; clock: Clock; newId: IdSource; log: Logger; retentionDays: () => number }) {}

  async saveFrames(tenantId: string, sessionId: string, frames: readonly Uint8Array[]): Promise<void> {
    const createdAt = this.deps.clock.now().toISOString();
    for (const bytes of frames) {
      await this.deps.db
        .insertInto("session_recording_frames")
        .values({ id: this.deps.newId(), tenant_id: tenantId, session_id: sessionId, size_bytes: bytes.byteLength, bytes, created_at: createdAt })
        .execute();
    }
  }

  /** Frames not past retention, oldest first; another tenant's session has none. */
  async frames(tenantId: string, sessionId: string): Promise<RecordingFrame[]> {
    let query = this.deps.db
      .selectFrom("session_recording_frames")
      .select(["bytes", "created_at"])
      .where("tenant_id", "=", tenantId)
      .where("session_id", "=", sessionId);
    const cutoff = this.cutoff();
    if (cutoff) query = query.where("created_at", ">=", cutoff);
    return query.orderBy("created_at").orderBy("id").execute();
  }

  /** When the newest frame expires (null: kept until deleted by hand, retention 0); undefined when nothing is recorded. */
  async expiry(tenantId: string, sessionId: string): Promise<{ expiresAt: string | null } | undefined> {
    let query = this.deps.db
      .selectFrom("session_recording_frames")
      .select(sql<string | null>`MAX(created_at)`.as("newest"))
      .where("tenant_id", "=", tenantId)
      .where("session_id", "=", sessionId);
    const cutoff = this.cutoff();
    if (cutoff) query = query.where("created_at", ">=", cutoff);
    const row = await query.executeTakeFirst();
    if (!row?.newest) return undefined;
    const days = this.deps.retentionDays();
    return { expiresAt: days > 0 ? new Date(new Date(row.newest).getTime() + days * DAY_MS).toISOString() : null };
  }

  /** A new view token for the recording (only its hash is stored); the oldest beyond MAX_TOKENS_PER_SESSION are dropped. */
  async mintToken(tenantId: string, sessionId: string): Promise<string> {
    const token = randomBytes(32).toString("base64url");
    await this.deps.db
      .insertInto("session_recording_tokens")
      .values({
        id: this.deps.newId(),
        tenant_id: tenantId,
        session_id: sessionId,
        token_hash: hashRecordingToken(token).toString("hex"),
        created_at: this.deps.clock.now().toISOString(),
      })
      .execute();
    const stale = await this.deps.db
      .selectFrom("session_recording_tokens")
      .select("id")
      .where("session_id", "=", sessionId)
      .orderBy("created_at", "desc")
      .orderBy("id", "desc")
      .offset(MAX_TOKENS_PER_SESSION)
      .limit(1000)
      .execute();
    if (stale.length) await this.deps.db.deleteFrom("session_recording_tokens").where("id", "in", stale.map((r) => r.id)).execute();
    return token;
  }

  /** The frames a view URL shows: none unless the token is one of this session's (compared in constant time). */
  async framesForToken(sessionId: string, token: string): Promise<RecordingFrame[]> {
    if (!token || token.length > 256) return [];
    const presented = hashRecordingToken(token);
    const rows = await this.deps.db.selectFrom("session_recording_tokens").select(["tenant_id", "token_hash"]).where("session_id", "=", sessionId).execute();
    let tenantId: string | undefined;
    for (const row of rows) {
      const stored = Buffer.from(row.token_hash, "hex");
      if (stored.length === presented.length && timingSafeEqual(stored, presented)) tenantId = row.tenant_id;
    }
    return tenantId ? this.frames(tenantId, sessionId) : [];
  }

  private cutoff(): string | undefined {
    const days = this.deps.retentionDays();
    return days > 0 ? new Date(this.deps.clock.now().getTime() - days * DAY_MS).toISOString() : undefined;
  }
}

/** Deletes one batch of frames created before `before`; returns how many. */
export async function deleteRecordingFramesBefore(db: Db, before: string, batch: number): Promise<number> {
  const result = await sql`DELETE FROM session_recording_frames WHERE id IN (SELECT id FROM session_recording_frames WHERE created_at < ${before} LIMIT ${batch})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** Deletes the tokens of recordings that have no frame left; returns how many. */
export async function deleteOrphanRecordingTokens(db: Db): Promise<number> {
  const result = await sql`DELETE FROM session_recording_tokens WHERE session_id NOT IN (SELECT session_id FROM session_recording_frames)`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** The HTML page of a recording: frames inline as data: PNGs, no script, nothing fetched. */
export function recordingPage(sessionId: string, frames: readonly RecordingFrame[]): { html: string; csp: string } {
  const style = "body{font-family:system-ui,sans-serif;margin:1rem;background:#f4f4f4}figure{margin:0 0 1.5rem}img{max-width:100%;border:1px solid #ccc;background:#fff}figcaption{color:#555;margin:.25rem 0}";
  const styleHash = createHash("sha256").update(style).digest("base64");
  const figures = frames
    .map(
      (frame, i) =>
        `<figure><figcaption>${i === frames.length - 1 ? "Last screenshot" : `Screenshot ${i + 1}`} &middot; ${escapeHtml(frame.created_at)}</figcaption>` +
        `<img alt="Screenshot ${i + 1}" src="data:image/png;base64,${Buffer.from(frame.bytes).toString("base64")}"></figure>`,
    )
    .join("\n");
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Session ${escapeHtml(sessionId)} recording</title><style>${style}</style></head>
<body><h1>Browser session ${escapeHtml(sessionId)}</h1><p>${frames.length} screenshot${frames.length === 1 ? "" : "s"}, oldest first.</p>
${figures}
</body></html>`;
  const csp = `default-src 'none'; img-src data:; style-src 'sha256-${styleHash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
  return { html, csp };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
