import { Cron } from "croner";

/**
 * Our one door to the cron library (croner). Croner parses the expression and
 * steps through matching wall-clock times; turning a wall-clock time into an
 * instant in the schedule's time zone is done here, so the daylight-saving
 * rules are ours and the same for every expression:
 *
 * - A wall-clock time that does not exist (the spring-forward gap) fires once,
 *   at the first valid instant after it: the instant the clocks jump. Several
 *   matching times inside one gap (`*\/15 * * * *`) become that one fire.
 * - A wall-clock time that occurs twice (the repeated fall-back hour) fires
 *   once, at its first occurrence; the second pass through that hour fires
 *   nothing.
 *
 * Croner itself applies these rules only to "fixed-time" expressions and fires
 * interval expressions (`*\/5 * * * *`) on both passes of a repeated hour, as
 * Vixie cron does. Stepping croner through a time zone without DST (UTC) and
 * resolving each wall-clock time here makes the rule one rule.
 */

/** A cron expression that cannot be used; the message says what is wrong, for the API client. */
export class CronError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CronError";
  }
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const FIELDS = "minute hour day-of-month month day-of-week";

// Parsed patterns are reused: the scheduler asks about the same few
// expressions thousands of times per tick. Bounded, so it cannot grow forever.
const patterns = new Map<string, Cron>();

function pattern(expr: string): Cron {
  let cron = patterns.get(expr);
  if (!cron) {
    cron = parsePattern(expr);
    if (patterns.size >= 1000) patterns.clear();
    patterns.set(expr, cron);
  }
  return cron;
}

function parsePattern(expr: string): Cron {
  const fields = expr.trim().split(/\s+/).filter(Boolean);
  if (fields.length !== 5) {
    throw new CronError(`must have 5 fields (${FIELDS}), e.g. "*/15 * * * *"; "${expr}" has ${fields.length}`);
  }
  try {
    // Wall-clock times are stepped in UTC, which has no DST; see the header.
    return new Cron(fields.join(" "), { mode: "5-part", utcOffset: 0, paused: true });
  } catch (error) {
    const detail = error instanceof Error ? error.message.replace(/^CronPattern:\s*/, "") : String(error);
    throw new CronError(`is not a valid cron expression (${FIELDS}): ${detail}`);
  }
}

/**
 * Checks an expression and returns it normalised (single spaces). Throws a
 * CronError that says what is wrong, including for an expression that can
 * never fire (`0 0 31 2 *`).
 */
export function parseCron(expr: string): string {
  const normalised = expr.trim().split(/\s+/).join(" ");
  const cron = pattern(normalised);
  // Leap days recur within 8 years; an expression with no match in that span never fires.
  if (cron.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) {
    throw new CronError(`never fires: "${normalised}" matches no date`);
  }
  return normalised;
}

/** A time zone that cannot be used; the message says why. */
export class TimeZoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TimeZoneError";
  }
}

/**
 * Checks an IANA time zone name and returns its canonical spelling
 * ("america/new_york" -> "America/New_York"). UTC offsets ("+05:00"), which
 * Intl also accepts, are refused: they have no DST rules and are not names.
 */
export function parseTimeZone(name: string): string {
  const trimmed = name.trim();
  if (/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(trimmed)) {
    try {
      return new Intl.DateTimeFormat("en-US", { timeZone: trimmed }).resolvedOptions().timeZone;
    } catch {
      // fall through
    }
  }
  throw new TimeZoneError(`must be an IANA time zone name such as "UTC", "Europe/Berlin" or "America/New_York"; "${name}" is not one`);
}

/**
 * The first fire time strictly after `after`, for an expression accepted by
 * parseCron and a zone accepted by parseTimeZone; null if there is none.
 */
export function nextFireAfter(expr: string, timeZone: string, after: Date): Date | null {
  const cron = pattern(expr);
  const afterMs = after.getTime();
  // Instants of successive matching wall-clock times never decrease (a gap
  // maps to its end, a repeated time to its first occurrence), and none at or
  // before the wall-clock time of `after` can be later than `after`; so the
  // first match after that wall-clock time whose instant is later is the answer.
  let wall: Date | null = new Date(afterMs + offsetMs(timeZone, afterMs));
  // A repeated hour (up to 60 per-minute matches) or a gap is skipped over in
  // a bounded number of steps; the bound only guards against a bug.
  for (let i = 0; i < 10_000; i++) {
    wall = cron.nextRun(wall);
    if (!wall) return null;
    const instant = wallToInstant(timeZone, wall.getTime());
    if (instant > afterMs) return new Date(instant);
  }
  throw new Error(`nextFireAfter did not converge for "${expr}" in ${timeZone}`);
}

// ---------------------------------------------------------------------------
// Wall-clock time <-> instant in an IANA zone, through Intl.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

const isUtc = (timeZone: string) => timeZone === "UTC" || timeZone === "Etc/UTC" || timeZone === "GMT" || timeZone === "Etc/GMT";

/** The zone's offset from UTC at an instant, in ms (wall-clock = instant + offset). */
export function offsetMs(timeZone: string, instantMs: number): number {
  if (isUtc(timeZone)) return 0;
  const seconds = Math.floor(instantMs / 1000) * 1000;
  const parts: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(seconds))) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const wall = Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
  return wall - seconds;
}

/**
 * The instant of a wall-clock time (given as the UTC fields of `wallMs`) in a
 * zone, by the rules in the header: a time that exists once is that instant,
 * a repeated time its first occurrence, a time in a gap the end of the gap.
 * Assumes at most one offset change within a day of the time, as in every
 * real zone.
 */
export function wallToInstant(timeZone: string, wallMs: number): number {
  if (isUtc(timeZone)) return wallMs;
  const before = offsetMs(timeZone, wallMs - DAY);
  const after = offsetMs(timeZone, wallMs + DAY);
  const candidates = [wallMs - before, wallMs - after].filter((t) => offsetMs(timeZone, t) === wallMs - t);
  if (candidates.length > 0) return Math.min(...candidates);
  // A gap: the clocks jumped over this time. It fires when they jump, the
  // first instant whose offset is the new one; offsets change on whole minutes.
  let lo = Math.floor((wallMs - after) / MINUTE); // still the old offset
  let hi = Math.ceil((wallMs - before) / MINUTE); // already the new one
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetMs(timeZone, mid * MINUTE) === after) hi = mid;
    else lo = mid;
  }
  return hi * MINUTE;
}
