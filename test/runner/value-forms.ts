import { inspect } from "node:util";

/**
 * What a redacted text must never hold of a value: the value itself, and
 * each encoding of it that the redactor promises to catch, computed here
 * independently of the redactor. For an encoding of a longer string (base64
 * or hex of "user:" + value) this is the part that depends on the value
 * alone: for base64, the characters all of whose bits are the value's, at
 * each of the three offsets a value can start at (its byte offset modulo 3).
 */
export function formsOf(value: string): { encoding: string; text: string }[] {
  const bytes = Buffer.from(value, "utf8");
  const forms: Record<string, string> = {
    raw: value,
    "JSON-escaped": JSON.stringify(value).slice(1, -1),
    "JSON, non-ASCII as \\u": escapeUnicode(JSON.stringify(value).slice(1, -1), /[^\x20-\x7e]/g, "lower"),
    "JSON, non-ASCII as \\u (upper-case hex)": escapeUnicode(JSON.stringify(value).slice(1, -1), /[^\x20-\x7e]/g, "upper"),
    "every character as \\u": escapeUnicode(value, /[\s\S]/g, "lower"),
    "util.inspect": inspect(value).slice(1, -1),
    "URL-encoded": uriComponent(value) ?? value,
    "URL-encoded, lower-case hex": (uriComponent(value) ?? value).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    "form-encoded": new URLSearchParams({ v: value }).toString().slice(2),
    "form-encoded (+ for space)": (uriComponent(value) ?? value).replace(/%20/g, "+"),
    hex: bytes.toString("hex"),
    "hex, upper-case": bytes.toString("hex").toUpperCase(),
  };
  for (const offset of [0, 1, 2]) {
    const core = base64Core(bytes, offset);
    forms[`base64 at byte offset ${offset}`] = core;
    forms[`base64url at byte offset ${offset}`] = core.replace(/\+/g, "-").replace(/\//g, "_");
  }
  const seen = new Set<string>();
  return Object.entries(forms)
    .filter(([, text]) => text.length > 0 && !seen.has(text) && seen.add(text))
    .map(([encoding, text]) => ({ encoding, text }));
}

/** The base64 characters of `offset` bytes, then the value, then more bytes, whose six bits all come from the value. */
export function base64Core(bytes: Buffer, offset: number): string {
  const encoded = Buffer.concat([Buffer.alloc(offset), bytes, Buffer.alloc(3)]).toString("base64");
  const first = Math.ceil((8 * offset) / 6);
  const last = Math.floor((8 * (offset + bytes.length)) / 6); // exclusive
  return encoded.slice(first, last);
}

/** Replaces each match of `which` with \uXXXX escapes (two for a character outside the BMP). */
export function escapeUnicode(text: string, which: RegExp, hexCase: "lower" | "upper"): string {
  return text.replace(which, (c) =>
    [...c]
      .flatMap((ch) => (ch.length === 2 ? [ch.charCodeAt(0), ch.charCodeAt(1)] : [ch.charCodeAt(0)]))
      .map((unit) => {
        const hex = unit.toString(16).padStart(4, "0");
        return `\\u${hexCase === "upper" ? hex.toUpperCase() : hex}`;
      })
      .join(""),
  );
}

function uriComponent(value: string): string | undefined {
  try {
    return encodeURIComponent(value);
  } catch {
    return undefined; // a lone surrogate
  }
}

/** Parts of text outside the placeholders: no form may appear in any of them. */
export function unredactedParts(text: string): string[] {
  return text.split(/\[REDACTED:[^\]]*\]/);
}

/** The first form of `value` that `text` still holds outside its placeholders, if any. */
export function leakedForm(text: string, value: string): string | undefined {
  const parts = unredactedParts(text);
  return formsOf(value).find((form) => parts.some((part) => part.includes(form.text)))?.encoding;
}

/** A value with every kind of character an encoder escapes: quotes, a backslash, a line break, a tab, U+2028, non-ASCII, an emoji. */
export function awkwardValue(id: string): string {
  return `tok-${id}-'q'"dq"\\bs\nnl\ttab\u2028ls-pässwort-€-😀`;
}

/**
 * What a job that ran test/fixtures/worker-workflows/log-forms.ts stored, as
 * a person would check it: which forms of the value leaked, if any, in a line
 * or across lines (joined as written and by line breaks), and which of the
 * forms it wrote are missing their placeholder. Both empty when redaction
 * worked; neither holds the value, so a failure does not print it.
 */
export function logFormsFindings(messages: readonly string[], value: string, name: string): { leaked: string[]; unredacted: string[] } {
  const leaked = [...messages, messages.join(""), messages.join("\n")].map((text) => leakedForm(text, value)).filter((form): form is string => !!form);
  const unredacted: string[] = [];
  for (const label of ["a: Authorization: Basic ", "a: cookie=", "b: obj", "b: {", "b: request", "c: {", "d: ", "hex: "]) {
    const lines = messages.filter((m) => m.startsWith(label));
    if (lines.length === 0 || !lines.every((m) => m.includes(`[REDACTED:${name}]`))) unredacted.push(label);
  }
  // One character per write: each of those lines is the placeholder.
  const spelled = messages.indexOf("one character per line (d):");
  const characters = messages.slice(spelled + 1, spelled + 1 + [...value].length);
  if (spelled < 0 || characters.length !== [...value].length || !characters.every((m) => m === `[REDACTED:${name}]`)) unredacted.push("one character per line");
  return { leaked, unredacted };
}
