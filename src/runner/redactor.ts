import { indexOfBytes, textRange, textView, viewsOf, type SearchLimits } from "./decoded-views";

/** A value to keep out of logs, errors and results, and the name that replaces it. */
export interface Secret {
  name: string;
  value: string;
}

/** A stretch of text to replace with `[REDACTED:<name>]`. */
export interface RedactedSpan {
  start: number;
  end: number;
  name: string;
}

/**
 * Values shorter than this (after trimming) are not redacted: a 2- or
 * 3-character value would blank ordinary words all over a log.
 */
export const MIN_SECRET_LENGTH = 4;

/**
 * How far a form of a value reaches, in characters per byte of the value:
 * JSON with every character written as \u0041 takes 6, the most of any one
 * encoding. (A form encoded twice, JSON inside util.inspect, can take more:
 * whole in one write it is found all the same; split across writes, only
 * while it fits.) Each write is searched with this much of the writes
 * before it, so it is kept no larger.
 */
const LONGEST_FORM_PER_BYTE = 6;

/**
 * Replaces every occurrence of a secret, in any form the decoded views of the
 * text show it in (see decoded-views.ts), with `[REDACTED:<name>]`: a value
 * is found by its own bytes in each view, so its forms need no list.
 *
 * Occurrences may overlap (two secrets sharing characters, one inside
 * another): every character of every occurrence is covered, so no fragment of
 * a secret is left next to a placeholder.
 */
export class Redactor {
  /** True when at least one secret is long enough to be redacted. */
  readonly active: boolean;
  /**
   * The most characters a form of a value can take: a value split across
   * writes lies within this many characters either side of a boundary.
   */
  readonly longestForm: number;
  /** The values' UTF-8 bytes with their names, the first name for a value given twice. */
  readonly #values: { bytes: Buffer; name: string }[];
  readonly #limits: SearchLimits;

  constructor(secrets: readonly Secret[]) {
    const byValue = new Map<string, string>();
    for (const secret of secrets) {
      if (typeof secret.value !== "string" || secret.value.trim().length < MIN_SECRET_LENGTH) continue;
      if (!byValue.has(secret.value)) byValue.set(secret.value, secret.name);
    }
    this.#values = [...byValue].map(([value, name]) => ({ bytes: Buffer.from(value, "utf8"), name }));
    this.active = this.#values.length > 0;
    const lengths = this.#values.map((v) => v.bytes.length);
    this.longestForm = this.active ? LONGEST_FORM_PER_BYTE * Math.max(...lengths) : 0;
    this.#limits = {
      shortestValue: this.active ? Math.min(...lengths) : 0,
      longestValue: this.active ? Math.max(...lengths) : 0,
      spaceInValues: this.#values.some((v) => v.bytes.includes(0x20)),
    };
  }

  /**
   * Every occurrence of every secret in text, in any view of it (overlapping
   * ones included), in text positions; with `asWritten`, only where the text
   * holds the value itself.
   */
  spans(text: string, asWritten = false): RedactedSpan[] {
    if (!this.active || text.length === 0) return [];
    const found: RedactedSpan[] = [];
    for (const view of asWritten ? [textView(text)] : viewsOf(text, this.#limits)) {
      for (const value of this.#values) {
        const length = value.bytes.length;
        for (let at = indexOfBytes(view.bytes, value.bytes, 0); at >= 0; at = indexOfBytes(view.bytes, value.bytes, at + 1)) {
          const range = textRange(view, at, at + length);
          if (range) found.push({ ...range, name: value.name });
        }
      }
    }
    return found;
  }

  /** The text with every secret form replaced; `extra` are spans to replace as well (see LogRedactionBuffer). */
  redact(text: string, extra: readonly RedactedSpan[] = []): string {
    const found = this.spans(text);
    if (found.length === 0 && extra.length === 0) return text;
    return replaceSpans(text, extra.length === 0 ? found : [...found, ...extra]);
  }
}

/**
 * Replaces spans with placeholders. Overlapping spans are merged into one
 * stretch, written as the placeholders of the secrets it covers, in order:
 * a span wholly inside an earlier one adds nothing.
 */
function replaceSpans(text: string, spans: readonly RedactedSpan[]): string {
  const ordered = [...spans].filter((s) => s.end > s.start).sort((a, b) => a.start - b.start || b.end - a.end);
  let out = "";
  let cursor = 0;
  let end = -1;
  for (const span of ordered) {
    if (span.start >= end) {
      out += text.slice(cursor, span.start);
      out += placeholder(span.name);
      end = span.end;
    } else if (span.end > end) {
      if (!out.endsWith(placeholder(span.name))) out += placeholder(span.name);
      end = span.end;
    }
    cursor = end;
  }
  return out + text.slice(cursor);
}

function placeholder(name: string): string {
  return `[REDACTED:${name}]`;
}

type Level = "info" | "warn" | "error";

/**
 * Characters searched before the part of a write that a form could start
 * in, so that an escape sequence or a run of base64 cut there still reads as
 * it was written.
 */
const CONTEXT = 16;

interface HeldWrite {
  level: Level;
  text: string;
  stream: string;
  /** Spans of this write found together with the writes after it. */
  carried: RedactedSpan[];
  /** Characters of its stream up to its end, and its number in the stream. */
  endsAt: number;
  index: number;
  /** performance.now() when it was written: a held line keeps the time it was written at. */
  writtenAt: number;
}

interface StreamState {
  /** Its writes not yet emitted, oldest first. */
  held: HeldWrite[];
  length: number;
  count: number;
}

/**
 * Redacts a job's log writes, including a value split across several
 * consecutive writes of one stream: `log(token.slice(0, 8));
 * log(token.slice(8, 16)); log(token.slice(16))`, or a key printed line by
 * line.
 *
 * Each write is searched together with the end of the writes held before it
 * in its stream, twice: joined as they were written (the pieces of a value)
 * and joined by line breaks (the lines of a value). A form found across a
 * boundary becomes `[REDACTED:<name>]` in each write it touches, so each line
 * shows that something was removed.
 *
 * So every write is held back, until the writes after it in its stream are
 * longer than any form (Redactor.longestForm), or for at most `holdMs`, or
 * until flush(). Not only a write whose end could begin a form: a value's
 * base64 inside a longer base64 string can begin at any character (the first
 * ones carry bits of what precedes it), so nearly every write could. A
 * running job's log is at most `holdMs` behind. Writes are emitted in the
 * order they came, across streams, each redacted on its own as well.
 *
 * Not covered: pieces of one value written more than `holdMs` apart, or with
 * more than longestForm other writes between them.
 */
export class LogRedactionBuffer {
  readonly #queue: HeldWrite[] = [];
  readonly #streams = new Map<string, StreamState>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly redactor: Redactor,
    /** heldMs: how long the line was held, so that its timestamp can be the time it was written. */
    private readonly emit: (level: Level, message: string, heldMs: number) => void,
    private readonly holdMs = 250,
  ) {}

  /** A write of `stream` (what the job wrote with console.* and ctx.log, or to stdout or stderr). */
  push(level: Level, message: string, stream = "log"): void {
    if (!this.redactor.active) {
      this.emit(level, message, 0);
      return;
    }
    let state = this.#streams.get(stream);
    if (!state) this.#streams.set(stream, (state = { held: [], length: 0, count: 0 }));
    state.length += message.length;
    state.count++;
    const write: HeldWrite = { level, text: message, stream, carried: [], endsAt: state.length, index: state.count, writtenAt: performance.now() };
    this.#redactWith(state.held, write);
    state.held.push(write);
    this.#queue.push(write);
    this.#release();
    if (this.#queue.length > 0 && this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.holdMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** Emits every held write. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const write of this.#queue.splice(0)) this.#emitWrite(write);
    for (const state of this.#streams.values()) state.held = [];
  }

  /** Emits the oldest writes that no later write can complete a form with, up to the first that one still could. */
  #release(): void {
    const reach = this.redactor.longestForm;
    while (this.#queue.length > 0) {
      const first = this.#queue[0]!;
      const state = this.#streams.get(first.stream)!;
      if (state.length - first.endsAt < reach && state.count - first.index < reach) break;
      this.#queue.shift();
      state.held.shift();
      this.#emitWrite(first);
    }
    if (this.#queue.length === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #emitWrite(write: HeldWrite): void {
    const heldMs = Math.max(0, performance.now() - write.writtenAt);
    this.emit(write.level, write.carried.length === 0 ? write.text : replaceSpans(write.text, write.carried), heldMs);
  }

  /** Finds the forms in `write`, and those across its boundary with the held writes before it. */
  #redactWith(held: readonly HeldWrite[], write: HeldWrite): void {
    const reach = this.redactor.longestForm + CONTEXT;
    // The end of the held writes: a form ending in this write starts there, if at all.
    const before: { write: HeldWrite; skip: number }[] = [];
    for (let i = held.length - 1, budget = reach; i >= 0 && budget > 0 && before.length < reach; i--) {
      const earlier = held[i]!;
      const take = Math.min(earlier.text.length, budget);
      before.unshift({ write: earlier, skip: earlier.text.length - take });
      budget -= take;
    }
    this.#search(before, write, "", write.text.length);
    // Joined by line breaks, only a value as written can hold the break (an
    // encoding escapes it), and only the boundaries are new.
    if (before.length > 0) this.#search(before, write, "\n", Math.min(write.text.length, reach));
  }

  /**
   * Searches the held writes' ends and the first `head` characters of `write`
   * joined by `joiner`. A span inside one earlier write was found when that
   * write came; every other span is carried by each write it touches.
   */
  #search(before: readonly { write: HeldWrite; skip: number }[], write: HeldWrite, joiner: string, head: number): void {
    const segments: { write: HeldWrite; start: number; end: number; offset: number }[] = [];
    let window = "";
    for (const { write: earlier, skip } of before) {
      const start = window.length;
      window += earlier.text.slice(skip);
      segments.push({ write: earlier, start, end: window.length, offset: start - skip });
      window += joiner;
    }
    const start = window.length;
    window += write.text.slice(0, head);
    segments.push({ write, start, end: window.length, offset: start });
    for (const span of this.redactor.spans(window, joiner !== "")) {
      const within = segments.find((s) => span.start >= s.start && span.end <= s.end);
      if (within && (within.write !== write || joiner !== "")) continue;
      for (const segment of within ? [within] : segments) {
        const from = Math.max(span.start, segment.start);
        const to = Math.min(span.end, segment.end);
        if (from < to) segment.write.carried.push({ start: from - segment.offset, end: to - segment.offset, name: span.name });
      }
    }
  }
}
