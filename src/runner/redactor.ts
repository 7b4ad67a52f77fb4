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
 * Replaces every occurrence of a secret, in each form it is likely to be
 * written in, with `[REDACTED:<name>]`.
 *
 * Occurrences may overlap (two secrets sharing characters, one inside
 * another): every character of every occurrence is covered, so no fragment of
 * a secret is left next to a placeholder.
 */
export class Redactor {
  /** True when at least one secret is long enough to be redacted. */
  readonly active: boolean;
  /**
   * Length of the longest form: an occurrence split across two writes lies
   * within this many characters either side of the boundary.
   */
  readonly longestForm: number;
  readonly #names: Map<string, string>;
  /**
   * One regex for every form: a lookahead, so that each position yields the
   * longest form starting there (alternatives are sorted longest first) and
   * overlapping occurrences are all found.
   */
  readonly #pattern: RegExp | undefined;

  constructor(secrets: readonly Secret[]) {
    this.#names = new Map();
    for (const secret of secrets) {
      if (typeof secret.value !== "string" || secret.value.trim().length < MIN_SECRET_LENGTH) continue;
      // The first secret with a form names it: two names for one value redact as the first.
      for (const form of formsOf(secret.value)) if (!this.#names.has(form)) this.#names.set(form, secret.name);
    }
    const forms = [...this.#names.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
    this.active = forms.length > 0;
    this.longestForm = forms[0]?.length ?? 0;
    this.#pattern = this.active ? new RegExp(`(?=(${forms.map(escapeRegExp).join("|")}))`, "g") : undefined;
  }

  /** True when the end of `text` could be the start of a form: a write that follows might complete it. */
  endsWithFormStart(text: string): boolean {
    for (const form of this.#names.keys()) {
      for (let k = Math.min(form.length - 1, text.length); k >= 1; k--) {
        if (text.endsWith(form.slice(0, k))) return true;
      }
    }
    return false;
  }

  /** Every occurrence of every form in text, by start (overlapping ones included). */
  spans(text: string): RedactedSpan[] {
    const pattern = this.#pattern;
    if (!pattern || text.length === 0) return [];
    const found: RedactedSpan[] = [];
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
      const form = match[1]!;
      found.push({ start: match.index, end: match.index + form.length, name: this.#names.get(form)! });
      // The match is empty (a lookahead): step on by one so a form starting
      // inside this one is found too.
      pattern.lastIndex = match.index + 1;
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
 * The forms a value is redacted in. All are encodings of the whole value.
 * Not covered: the value's base64 inside the base64 of a longer string (say,
 * `user:password` in a Basic auth header). Those characters depend on the
 * value's offset modulo 3 in the longer string and on its neighbours, so no
 * fixed string matches them.
 */
export function formsOf(value: string): string[] {
  const forms = new Set<string>([value]);
  const bytes = Buffer.from(value, "utf8");
  const base64 = bytes.toString("base64");
  const base64url = bytes.toString("base64url");
  const padding = "=".repeat((4 - (base64url.length % 4)) % 4);
  forms.add(base64).add(base64.replace(/=+$/, "")).add(base64url).add(base64url + padding);
  // JSON.stringify never throws on a string; a lone surrogate comes out as \udxxx.
  forms.add(JSON.stringify(value).slice(1, -1));
  let uriComponent: string | undefined;
  try {
    uriComponent = encodeURIComponent(value);
  } catch {
    // A lone surrogate cannot be URL-encoded; nothing could have written that form.
  }
  if (uriComponent !== undefined) {
    // application/x-www-form-urlencoded: URLSearchParams also escapes !'()~ and writes a space as +.
    const formEncoded = new URLSearchParams([["", value]]).toString().slice(1);
    for (const encoded of [uriComponent, uriComponent.replace(/%20/g, "+"), formEncoded]) {
      // Some encoders write the hex digits in lower case.
      forms.add(encoded).add(encoded.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()));
    }
  }
  return [...forms];
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

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

type Level = "info" | "warn" | "error";

/**
 * Redacts a stream of log writes, including a secret split across two
 * consecutive writes (`log(token.slice(0, 8)); log(token.slice(8))`).
 *
 * The most recent write is held back until the next write or flush(). When a
 * write arrives, the end of the held one and the start of the new one are
 * searched together for a form that spans the boundary. For each found:
 * - in the held write, the part from where the form starts to the end becomes
 *   `[REDACTED:<name>]`;
 * - in the new write, the part up to where the form ends becomes
 *   `[REDACTED:<name>]` too, so each line shows that something was removed.
 * Then the held write is emitted and the new one is held in its place. Every
 * write is also redacted on its own, as Redactor.redact does.
 *
 * So that a running job's log stays live, a write is held only when its end
 * could begin a form, and then at most `holdMs`: a form whose second part is
 * written later than that is not caught.
 *
 * Not covered: a form split across three or more writes (a middle write that
 * holds only part of it is not a whole form anywhere). When no secret is long
 * enough to redact, writes pass straight through with no delay.
 */
export class LogRedactionBuffer {
  #held: { level: Level; text: string; carried: RedactedSpan[] } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly redactor: Redactor,
    private readonly emit: (level: Level, message: string) => void,
    private readonly holdMs = 250,
  ) {}

  push(level: Level, message: string): void {
    if (!this.redactor.active) {
      this.emit(level, message);
      return;
    }
    const next = { level, text: message, carried: [] as RedactedSpan[] };
    const held = this.#held;
    if (held) {
      for (const span of this.#spansAcross(held.text, message)) {
        held.carried.push({ start: span.start, end: held.text.length, name: span.name });
        next.carried.push({ start: 0, end: span.end - held.text.length, name: span.name });
      }
      this.flush();
    }
    if (!this.redactor.endsWithFormStart(message)) {
      this.emit(level, this.redactor.redact(message, next.carried));
      return;
    }
    this.#held = next;
    this.#timer = setTimeout(() => this.flush(), this.holdMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Emits the held write, if any. */
  flush(): void {
    clearTimeout(this.#timer);
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    this.emit(held.level, this.redactor.redact(held.text, held.carried));
  }

  /** Spans of `before + after` that start in `before` and end in `after`, in that joined text's positions. */
  #spansAcross(before: string, after: string): RedactedSpan[] {
    const reach = this.redactor.longestForm - 1;
    const offset = Math.max(0, before.length - reach);
    const window = before.slice(offset) + after.slice(0, reach);
    const boundary = before.length - offset;
    return this.redactor
      .spans(window)
      .filter((s) => s.start < boundary && s.end > boundary)
      .map((s) => ({ start: s.start + offset, end: s.end + offset, name: s.name }));
  }
}
