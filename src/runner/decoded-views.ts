/**
 * Decoded views of a text, for the redactor: the bytes the text stands for
 * when read through each encoding a value is commonly written in, each byte
 * mapped back to the stretch of the text it came from.
 *
 * The redactor looks for a value's own UTF-8 bytes in every view. So it
 * finds the value however it was encoded, mixed with other text and at any
 * offset inside a longer encoded string, without a list of the forms a value
 * can take: base64 of "user:" + value (the value's characters there depend on
 * the prefix), JSON with some characters written as \uXXXX, util.inspect's
 * escapes, a URL with the value percent-encoded among other parameters.
 *
 * The decoders are applied to the text and once more to each view (JSON
 * inside util.inspect, base64 inside a URL), no deeper. Each is linear in the
 * view's length and reads only what could hold a value it alone would find:
 * escape sequences and percent-encoding the stretches near a sequence,
 * base64 and hex the runs long enough for the shortest value (and, in a view
 * an escaping decoder made, only runs it changed).
 */

/** Where each byte of a view came from: bytes [from[i], to[i]) of its parent view, or of the text (UTF-16 units). */
export interface Mapping {
  readonly from: Int32Array;
  readonly to: Int32Array;
}

/**
 * Bytes decoded from a text, from the text itself (no parent) or from
 * another view. Where the bytes came from is worked out only for what is
 * found (few views hold anything): mapping() decodes the parent once more,
 * this time noting positions. Undefined means byte i is character i.
 */
export interface View {
  readonly bytes: Uint8Array;
  /**
   * Where an escaping decoder (escape sequences, percent-encoding) decoded
   * a sequence, in order; elsewhere its bytes are the parent's, copied.
   * Undefined: every byte may differ from the parent's.
   */
  readonly decoded?: readonly number[];
  readonly parent?: View;
  mapping(): Mapping | undefined;
}

/** What the views of a text are searched for: the decoders skip runs too short to hold one. */
export interface SearchLimits {
  /** The fewest bytes a searched value has: shorter runs of hex or base64 are not decoded. */
  shortestValue: number;
  /** The most: how far from an escape sequence a value holding it reaches. */
  longestValue: number;
  /** Whether a value has a space, which form-encoding writes as +. */
  spaceInValues: boolean;
}

/** How many decoders deep the views go: the text decoded once, and each result decoded again. */
const DEPTH = 2;

/** Every view of `text`: its own UTF-8 bytes first, then everything decoded from them. */
export function viewsOf(text: string, limits: SearchLimits): View[] {
  const views: View[] = [textView(text)];
  let level = views;
  for (let depth = 0; depth < DEPTH; depth++) {
    const next: View[] = [];
    for (const view of level) for (const decoder of DECODERS) next.push(...decodeView(view, decoder, limits));
    views.push(...next);
    level = next;
  }
  return views;
}

/**
 * Where bytes [start, end) of the view came from in the text, when they come
 * from one unbroken stretch of it, in order; else undefined: two separate
 * base64 words (or hex numbers) next to each other in a view are not one value.
 */
export function textRange(view: View, start: number, end: number): { start: number; end: number } | undefined {
  const mapping = view.mapping();
  let range = { start, end };
  if (mapping) {
    const { from, to } = mapping;
    for (let i = start; i < end - 1; i++) {
      if (from[i + 1]! < from[i]! || from[i + 1]! > to[i]!) return undefined;
    }
    range = { start: from[start]!, end: to[end - 1]! };
  }
  return view.parent ? textRange(view.parent, range.start, range.end) : range;
}

/** The first occurrence of `needle` in `haystack` at or after `from`, or -1 (Buffer's native search, on any Uint8Array). */
export function indexOfBytes(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  return Buffer.prototype.indexOf.call(haystack, needle, from);
}

/** The text's own view: its UTF-8 bytes (a lone surrogate is EF BF BD, as Buffer.from writes it for a value too). */
export function textView(text: string): View {
  return new TextView(text);
}

class TextView implements View {
  readonly bytes: Uint8Array;
  #mapping: Mapping | undefined;

  constructor(private readonly text: string) {
    this.bytes = Buffer.from(text, "utf8");
  }

  mapping(): Mapping | undefined {
    const { text, bytes } = this;
    if (bytes.length === text.length || this.#mapping) return this.#mapping;
    const from = new Int32Array(bytes.length);
    const to = new Int32Array(bytes.length);
    let b = 0;
    for (let i = 0; i < text.length; ) {
      const unit = text.charCodeAt(i);
      const pair = unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length && isLowSurrogate(text.charCodeAt(i + 1));
      const units = pair ? 2 : 1;
      const length = unit < 0x80 ? 1 : unit < 0x800 ? 2 : pair ? 4 : 3;
      for (let k = 0; k < length; k++, b++) {
        from[b] = i;
        to[b] = i + units;
      }
      i += units;
    }
    return (this.#mapping = { from, to });
  }
}

/**
 * Decodes `input` into one view per reading of it (one, or the two digit
 * offsets of hex, or the four character offsets of base64), each written
 * into a builder from `open()`; none when the input holds nothing it decodes.
 */
type Decoder = (input: View, limits: SearchLimits, open: () => ViewBuilder) => void;

function decodeView(parent: View, decoder: Decoder, limits: SearchLimits): View[] {
  const builders: ViewBuilder[] = [];
  decoder(parent, limits, () => {
    const builder = new ViewBuilder(parent.bytes.length, false);
    builders.push(builder);
    return builder;
  });
  return builders.map((builder, index) => new DecodedView(builder.bytes(), builder.decoded(), parent, decoder, index, limits));
}

class DecodedView implements View {
  #mapping: Mapping | undefined;

  constructor(
    readonly bytes: Uint8Array,
    readonly decoded: readonly number[] | undefined,
    readonly parent: View,
    private readonly decoder: Decoder,
    private readonly index: number,
    private readonly limits: SearchLimits,
  ) {}

  mapping(): Mapping {
    if (!this.#mapping) {
      const builders: ViewBuilder[] = [];
      this.decoder(this.parent, this.limits, () => {
        const builder = new ViewBuilder(this.parent.bytes.length, true);
        builders.push(builder);
        return builder;
      });
      this.#mapping = builders[this.index]!.mapping();
    }
    return this.#mapping;
  }
}

/** Collects a decoded view's bytes, and, when `mapped`, the stretch of the parent's bytes each came from. */
class ViewBuilder {
  readonly #bytes: Uint8Array;
  readonly #from: Int32Array | undefined;
  readonly #to: Int32Array | undefined;
  #length = 0;
  #decoded: number[] | undefined;

  /** No decoder writes more bytes than it reads: the parent's length is room enough. */
  constructor(capacity: number, mapped: boolean) {
    this.#bytes = new Uint8Array(capacity);
    if (mapped) {
      this.#from = new Int32Array(capacity);
      this.#to = new Int32Array(capacity);
    }
  }

  get length(): number {
    return this.#length;
  }

  /** A byte decoded from the parent's bytes [start, end). */
  push(byte: number, start: number, end: number): void {
    this.#bytes[this.#length] = byte;
    if (this.#from && this.#to) {
      this.#from[this.#length] = start;
      this.#to[this.#length] = end;
    }
    this.#length++;
  }

  /** Notes that the bytes pushed next are decoded from a sequence, not copied (see View.decoded). */
  markDecoded(): void {
    (this.#decoded ??= []).push(this.#length);
  }

  /** A code point decoded from the parent's bytes [start, end), as UTF-8. */
  pushCodePoint(codePoint: number, start: number, end: number): void {
    if (codePoint < 0x80) {
      this.push(codePoint, start, end);
    } else if (codePoint < 0x800) {
      this.push(0xc0 | (codePoint >> 6), start, end);
      this.push(0x80 | (codePoint & 0x3f), start, end);
    } else if (codePoint < 0x10000) {
      this.push(0xe0 | (codePoint >> 12), start, end);
      this.push(0x80 | ((codePoint >> 6) & 0x3f), start, end);
      this.push(0x80 | (codePoint & 0x3f), start, end);
    } else {
      this.push(0xf0 | (codePoint >> 18), start, end);
      this.push(0x80 | ((codePoint >> 12) & 0x3f), start, end);
      this.push(0x80 | ((codePoint >> 6) & 0x3f), start, end);
      this.push(0x80 | (codePoint & 0x3f), start, end);
    }
  }

  /**
   * Parent bytes up to `end` that decode to nothing (base64 padding, the
   * `' +\n  '` between two string pieces) belong to the byte before them:
   * a value around them is still one stretch, and redacting it takes them too.
   */
  absorb(end: number): void {
    if (this.#length > 0 && this.#to) this.#to[this.#length - 1] = Math.max(this.#to[this.#length - 1]!, end);
  }

  /** A copy (faster than a subarray in JavaScriptCore, measured). */
  bytes(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }

  decoded(): readonly number[] | undefined {
    return this.#decoded;
  }

  /** The maps are only read below the length: no copy. */
  mapping(): Mapping {
    return { from: this.#from!, to: this.#to! };
  }
}

const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const PLUS = 0x2b;
const EQUALS = 0x3d;

/**
 * Escape sequences of JSON, JavaScript and util.inspect: \n \t \r \b \f \v
 * \0, \xHH, \uHHHH (a surrogate pair of them is one character; a lone
 * surrogate is U+FFFD, as Buffer.from writes it), \u{H...}, and a backslash
 * before any quote, a slash or a backslash. Also the `' +\n  '` with which
 * util.inspect cuts a long string with line breaks into pieces. A backslash
 * before anything else stays as it is.
 */
const jsEscapes: Decoder = (input, limits, open) => {
  const { bytes } = input;
  const stretches = stretchesAround(input, [BACKSLASH], (i) => readEscape(bytes, i) !== undefined, limits);
  if (stretches.length === 0) return;
  const out = open();
  for (const [start, end] of stretches) {
    for (let i = start; i < end; ) {
      const c = bytes[i]!;
      if (c === BACKSLASH) {
        const escape = readEscape(bytes, i);
        if (escape) {
          out.markDecoded();
          out.pushCodePoint(escape.codePoint, i, escape.end);
          i = escape.end;
          continue;
        }
      } else if (isQuote(c)) {
        const joined = pieceJoinEnd(bytes, i);
        if (joined > i) {
          out.absorb(joined);
          i = joined;
          continue;
        }
      }
      out.push(c, i, i + 1);
      i++;
    }
  }
};

const SIMPLE_ESCAPES: Record<number, number> = {
  0x6e: 0x0a, // n
  0x74: 0x09, // t
  0x72: 0x0d, // r
  0x62: 0x08, // b
  0x66: 0x0c, // f
  0x76: 0x0b, // v
  0x30: 0x00, // 0
  0x22: 0x22, // "
  0x27: 0x27, // '
  0x60: 0x60, // `
  0x2f: 0x2f, // /
  0x5c: 0x5c, // backslash
};

/** The escape sequence at `i` (a backslash), if it is one. */
function readEscape(bytes: Uint8Array, i: number): { codePoint: number; end: number } | undefined {
  const kind = bytes[i + 1];
  if (kind === undefined) return undefined;
  const simple = SIMPLE_ESCAPES[kind];
  if (simple !== undefined) return { codePoint: simple, end: i + 2 };
  if (kind === 0x78) {
    // \xHH
    const value = hexNumber(bytes, i + 2, 2);
    return value === undefined ? undefined : { codePoint: value, end: i + 4 };
  }
  if (kind !== 0x75) return undefined;
  if (bytes[i + 2] === 0x7b) {
    // \u{H...}
    let end = i + 3;
    while (end < bytes.length && end < i + 10 && hexDigit(bytes[end]!) >= 0) end++;
    const value = end > i + 3 && bytes[end] === 0x7d ? hexNumber(bytes, i + 3, end - i - 3) : undefined;
    return value === undefined || value > 0x10ffff ? undefined : { codePoint: isSurrogate(value) ? 0xfffd : value, end: end + 1 };
  }
  const unit = hexNumber(bytes, i + 2, 4);
  if (unit === undefined) return undefined;
  if (unit >= 0xd800 && unit <= 0xdbff && bytes[i + 6] === BACKSLASH && bytes[i + 7] === 0x75) {
    const low = hexNumber(bytes, i + 8, 4);
    if (low !== undefined && isLowSurrogate(low)) return { codePoint: 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00), end: i + 12 };
  }
  return { codePoint: isSurrogate(unit) ? 0xfffd : unit, end: i + 6 };
}

/**
 * Where the next piece begins, when the quote at `i` ends a piece of a
 * string that util.inspect cut after a line break and another piece follows
 * (`'line\n' +\n    'line'`); else `i`. The shape is matched exactly, so
 * that quotes and pluses of a value are never taken for it.
 */
function pieceJoinEnd(bytes: Uint8Array, i: number): number {
  if (i < 2 || bytes[i - 2] !== BACKSLASH || bytes[i - 1] !== 0x6e) return i; // \n before the quote
  if (bytes[i + 1] !== 0x20 || bytes[i + 2] !== PLUS || bytes[i + 3] !== 0x0a) return i; // " +" and a line break
  let j = i + 4;
  while (bytes[j] === 0x20) j++;
  return j < bytes.length && isQuote(bytes[j]!) ? j + 1 : i;
}

/** Percent-encoding, as in a URL path or encodeURIComponent: %HH in either case; a + stays a +. */
const percentEncoding: Decoder = (input, limits, open) => {
  const { bytes } = input;
  const stretches = stretchesAround(input, [PERCENT], (i) => hexNumber(bytes, i + 1, 2) !== undefined, limits);
  if (stretches.length > 0) decodePercent(bytes, stretches, false, open());
};

/** application/x-www-form-urlencoded: percent-encoding, and a + is a space (so only for a value with a space). */
const formEncoding: Decoder = (input, limits, open) => {
  if (!limits.spaceInValues) return;
  const { bytes } = input;
  const stretches = stretchesAround(input, [PLUS, PERCENT], (i) => bytes[i] === PLUS || hexNumber(bytes, i + 1, 2) !== undefined, limits);
  if (stretches.length > 0) decodePercent(bytes, stretches, true, open());
};

function decodePercent(bytes: Uint8Array, stretches: readonly [number, number][], plusIsSpace: boolean, out: ViewBuilder): void {
  for (const [start, end] of stretches) {
    for (let i = start; i < end; ) {
      const c = bytes[i]!;
      const value = c === PERCENT ? hexNumber(bytes, i + 1, 2) : undefined;
      if (value !== undefined) {
        out.markDecoded();
        out.push(value, i, i + 3);
        i += 3;
      } else if (plusIsSpace && c === PLUS) {
        out.markDecoded();
        out.push(0x20, i, i + 1);
        i++;
      } else {
        out.push(c, i, i + 1);
        i++;
      }
    }
  }
}

/**
 * The stretches of `input` that a value read through an escaping decoder
 * could lie in: a value found there holds at least one decoded sequence
 * (without one, the undecoded view shows it already), so it lies within
 * `reach` of a sequence. Each sequence (a `marker` byte where `isSequence`)
 * with that much on either side, overlapping ones merged, in order. A
 * decoder reads only these: little of a long line is escaped, as a rule.
 *
 * In a view that an escaping decoder made, a value that needs decoding once
 * more holds one of its decoded bytes as well (else the first decoding
 * found it): so only sequences within reach of one count.
 */
function stretchesAround(input: View, markers: readonly number[], isSequence: (i: number) => boolean, limits: SearchLimits): [number, number][] {
  const { bytes, decoded } = input;
  // Either side of a sequence: the value's other bytes as they are, or a
  // base64 run of them (4 characters for 3 bytes) to decode next, and a
  // sequence's own length.
  const reach = 2 * limits.longestValue + 12;
  const found: number[] = [];
  for (const marker of markers) {
    for (let i = bytes.indexOf(marker); i >= 0; i = bytes.indexOf(marker, i + 1)) if (isSequence(i)) found.push(i);
  }
  if (markers.length > 1) found.sort((a, b) => a - b);
  const stretches: [number, number][] = [];
  let near = 0; // the first of `decoded` not more than `reach` before the sequence
  for (const at of found) {
    if (decoded) {
      while (near < decoded.length && decoded[near]! < at - reach) near++;
      if (near >= decoded.length || decoded[near]! > at + reach) continue;
    }
    const start = Math.max(0, at - reach);
    const end = Math.min(bytes.length, at + reach);
    const last = stretches[stretches.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else stretches.push([start, end]);
  }
  return stretches;
}

/** Runs of hex digits, in either case, read from their first digit and from their second. */
const hexDigits: Decoder = ({ bytes, decoded }, limits, open) => {
  const runs = runsOf(bytes, HEX_VALUES, 2 * limits.shortestValue, decoded);
  if (runs.length === 0) return;
  for (const phase of [0, 1]) {
    const out = open();
    for (const [start, end] of runs) {
      for (let i = start + phase; i + 1 < end; i += 2) out.push((hexDigit(bytes[i]!) << 4) | hexDigit(bytes[i + 1]!), i, i + 2);
    }
  }
};

/**
 * Runs of base64 characters (standard and url alphabets alike), read from
 * each of their first four characters: one of the four readings is aligned
 * with wherever the encoded string really starts (a run may begin with a
 * word glued to it). A value inside it may start at any byte, so at any of
 * the three offsets modulo 3: the value's own bytes come out whole anyway.
 */
const base64Digits: Decoder = ({ bytes, decoded }, limits, open) => {
  const runs = runsOf(bytes, BASE64_VALUES, Math.ceil((4 * limits.shortestValue) / 3), decoded);
  if (runs.length === 0) return;
  for (const phase of [0, 1, 2, 3]) {
    const out = open();
    for (const [start, end] of runs) {
      const before = out.length;
      for (let i = start + phase; i + 1 < end; i += 4) {
        const a = BASE64_VALUES[bytes[i]!]!;
        const b = BASE64_VALUES[bytes[i + 1]!]!;
        out.push(((a << 2) | (b >> 4)) & 0xff, i, i + 2);
        if (i + 2 >= end) break;
        const c = BASE64_VALUES[bytes[i + 2]!]!;
        out.push(((b << 4) | (c >> 2)) & 0xff, i + 1, i + 3);
        if (i + 3 >= end) break;
        out.push(((c << 6) | BASE64_VALUES[bytes[i + 3]!]!) & 0xff, i + 2, i + 4);
      }
      // Padding belongs to the last bytes: a redacted value at the end takes it along.
      let padding = end;
      while (padding < bytes.length && padding < end + 2 && bytes[padding] === EQUALS) padding++;
      if (padding > end && out.length > before) out.absorb(padding);
    }
  }
};

const DECODERS: readonly Decoder[] = [jsEscapes, percentEncoding, formEncoding, hexDigits, base64Digits];

const BASE64_VALUES = (() => {
  const values = new Int8Array(256).fill(-1);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i;
  values[0x2b] = values[0x2d] = 62; // + and -
  values[0x2f] = values[0x5f] = 63; // / and _
  return values;
})();

/**
 * Maximal runs of bytes that have a value in `values`, at least `shortest`
 * long, as [start, end). Given `decoded` (see View.decoded), only runs that
 * hold a decoded byte: any other is a run of the parent view as well, and
 * was read there.
 */
function runsOf(bytes: Uint8Array, values: Int8Array, shortest: number, decoded?: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  let next = 0; // the first of `decoded` not before the run
  for (let i = 0; i < bytes.length; ) {
    if (values[bytes[i]!]! < 0) {
      i++;
      continue;
    }
    const start = i;
    while (i < bytes.length && values[bytes[i]!]! >= 0) i++;
    if (i - start < shortest) continue;
    if (decoded) {
      while (next < decoded.length && decoded[next]! < start) next++;
      if (next >= decoded.length || decoded[next]! >= i) continue;
    }
    runs.push([start, i]);
  }
  return runs;
}

const HEX_VALUES = (() => {
  const values = new Int8Array(256).fill(-1);
  for (let i = 0; i < 16; i++) values["0123456789abcdef".charCodeAt(i)] = values["0123456789ABCDEF".charCodeAt(i)] = i;
  return values;
})();

function hexDigit(c: number): number {
  return HEX_VALUES[c]!;
}

/** The number written by `count` hex digits at `start`, if they all are. */
function hexNumber(bytes: Uint8Array, start: number, count: number): number | undefined {
  if (start + count > bytes.length) return undefined;
  let value = 0;
  for (let i = start; i < start + count; i++) {
    const digit = hexDigit(bytes[i]!);
    if (digit < 0) return undefined;
    value = value * 16 + digit;
  }
  return value;
}

function isQuote(c: number): boolean {
  return c === 0x27 || c === 0x22 || c === 0x60;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

function isSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdfff;
}
