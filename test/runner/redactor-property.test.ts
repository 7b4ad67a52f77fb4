/**
 * Properties of redaction, over random values, surroundings, encodings and
 * chunkings (fast-check, seeded: a failure prints its seed and a shrunk
 * counterexample). Writes go through the path a job's log takes: a handler's
 * ctx.log.* and console.* calls inside executeWorkflow (what the in-process
 * runner uses), and, for what a worker's code writes to stdout, the same line
 * splitting and buffer the worker executor uses. What is checked is the text
 * that would be stored: no form of the value (test/runner/value-forms.ts,
 * computed independently of the redactor) is left in it, in one line or
 * across lines.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { format } from "node:util";
import { executeWorkflow } from "../../src/runner/execute";
import { LogRedactionBuffer, MIN_SECRET_LENGTH, Redactor, type Secret } from "../../src/runner/redactor";
import { LineSplitter } from "../../src/worker/protocol";
import { workflow } from "../../src/workflows/define";
import { escapeUnicode, formsOf, leakedForm, unredactedParts } from "./value-forms";

const SEED = 20261130;
/** Sized so that each property runs in a second or so. */
const RUNS = 400;

// Characters that encoders escape or that mean something to a decoder, next
// to ordinary ones, and now and then any code point at all (a lone
// surrogate included). No [ or ]: they delimit placeholders in the check.
const SPECIAL = ['"', "'", "`", "\\", "\n", "\t", "\r", "\u2028", "\u2029", "\x00", "\x07", "\x1b", "\x7f", "\x85", "é", "ä", "€", "😀", "\ud800", " ", "+", "/", "=", "%", "&", "?", "#", ":", "~", "!", "(", "*"];
const valueChar = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIAL) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
);
// Now and then a long one: util.inspect cuts a long string at its line breaks.
const valueArb = fc
  .oneof({ weight: 5, arbitrary: fc.array(valueChar, { minLength: MIN_SECRET_LENGTH, maxLength: 24 }) }, { weight: 1, arbitrary: fc.array(valueChar, { minLength: 60, maxLength: 120 }) })
  .map((chars) => chars.join(""))
  .filter((v) => v.trim().length >= MIN_SECRET_LENGTH && !/[[\]]/.test(v));
/** Ordinary words around the form, with a space between: what is outside a form must come out as it went in. */
const fillerArb = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789 .,:;!?()"), maxLength: 16 });
const bytesArb = fc.uint8Array({ maxLength: 7 }).map((b) => Buffer.from(b));

const base64 = (bytes: Buffer, url: boolean, padded: boolean) => {
  const text = bytes.toString(url ? "base64url" : "base64");
  const bare = text.replace(/=+$/, "");
  return padded ? bare + "=".repeat((4 - (bare.length % 4)) % 4) : bare;
};
const uriComponent = (v: string) => {
  try {
    return encodeURIComponent(v);
  } catch {
    return undefined; // a lone surrogate
  }
};

/** Ways a handler writes a value: `around` are bytes encoded along with it (base64 and hex of a longer string), `flag` a variant. */
const ENCODINGS: Record<string, (v: string, around: { before: Buffer; after: Buffer; flag: boolean }) => string | undefined> = {
  "as is": (v) => v,
  'ctx.log.info("obj", {password})': (v) => format("obj", { password: v }),
  "console.log({user, password})": (v) => format({ user: "ada", password: v }),
  'format("%o", [v])': (v) => format("%o", [v]),
  "JSON.stringify": (v) => JSON.stringify({ password: v }),
  "JSON, non-ASCII as \\u": (v, { flag }) => escapeUnicode(JSON.stringify({ password: v }), /[^\x20-\x7e]/g, flag ? "upper" : "lower"),
  "JSON, every character as \\u": (v, { flag }) => `{"password":"${escapeUnicode(v, /[\s\S]/g, flag ? "upper" : "lower")}"}`,
  "JSON inside util.inspect": (v) => format("request", { body: JSON.stringify({ password: v }) }),
  "encodeURIComponent in a URL": (v, { flag }) => {
    const encoded = uriComponent(v);
    return encoded && `https://x.test/login?user=ada&pw=${flag ? encoded.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()) : encoded}&next=%2F`;
  },
  "form body (URLSearchParams)": (v) => (uriComponent(v) === undefined ? undefined : new URLSearchParams({ user: "ada", pw: v }).toString()),
  "hex of a longer string": (v, { before, after, flag }) => {
    const hex = Buffer.concat([before, Buffer.from(v), after]).toString("hex");
    return flag ? hex.toUpperCase() : hex;
  },
  "base64 of a longer string": (v, { before, after, flag }) => base64(Buffer.concat([before, Buffer.from(v), after]), false, flag),
  "base64url of a longer string": (v, { before, after, flag }) => base64(Buffer.concat([before, Buffer.from(v), after]), true, flag),
  "Basic auth header": (v, { before }) => `Authorization: Basic ${base64(Buffer.concat([Buffer.from(`u${before.length}:`), Buffer.from(v)]), false, true)}`,
};

const caseArb = fc.record({
  value: valueArb,
  encoding: fc.constantFrom(...Object.keys(ENCODINGS)),
  before: bytesArb,
  after: bytesArb,
  flag: fc.boolean(),
  fillerBefore: fillerArb,
  fillerAfter: fillerArb,
  /** Where the line is cut into writes (1 to 8 of them). */
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 7 }),
  /** Which of ctx.log.* and console.* writes each piece. */
  writers: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 8, maxLength: 8 }),
});

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

/** The line a handler writes: the encoded value with words around it. */
function lineOf(c: Case): string {
  const encoded = ENCODINGS[c.encoding]!(c.value, c) ?? c.value;
  return `${c.fillerBefore} ${encoded} ${c.fillerAfter}`;
}

function piecesOf(line: string, cuts: readonly number[]): string[] {
  const at = [...new Set(cuts.map((f) => Math.floor(f * line.length)))].filter((i) => i > 0 && i < line.length).sort((a, b) => a - b);
  const pieces: string[] = [];
  let from = 0;
  for (const i of [...at, line.length]) {
    pieces.push(line.slice(from, i));
    from = i;
  }
  return pieces;
}

/** Runs a handler that writes `pieces` with ctx.log.* and console.*, as a job does, and returns the log lines it would store. */
async function jobLogOf(value: string, pieces: readonly string[], writers: readonly number[]): Promise<string[]> {
  const lines: string[] = [];
  const definition = workflow("writes-pieces", {
    credentials: ["password"],
    handler(ctx) {
      pieces.forEach((piece, i) => {
        const write = [ctx.log.info, ctx.log.warn, ctx.log.error, console.log, console.error][writers[i % writers.length]!]!;
        write(piece);
      });
      return null;
    },
  });
  const outcome = await executeWorkflow({
    definition,
    params: {},
    credentials: { password: value },
    secrets: [{ name: "password", value }],
    session: "property",
    timeoutMs: 5_000,
    graceMs: 100,
    maxResultBytes: 1_000_000,
    browser: { headless: true },
    log: (_level, message) => lines.push(message),
  });
  expect(outcome.status).toBe("completed");
  return lines;
}

describe("property: no form of a value survives in the job log", () => {
  test("any value, in any encoding, with words around it, cut into 1 to 8 writes by ctx.log.* and console.*", async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const line = lineOf(c);
        const pieces = piecesOf(line, c.cuts);
        const stored = await jobLogOf(c.value, pieces, c.writers);
        // One stored line per write, and together they hold no form of the value.
        expect(stored.length).toBe(pieces.length);
        const joined = stored.join("");
        const leaked = leakedForm(joined, c.value);
        if (leaked) throw new Error(`the ${leaked} form of the value survived ${c.encoding}`);
        expect(joined).toContain("[REDACTED:password]");
        // Redaction stays within the form: the words around it come out as they went in.
        expect(joined.startsWith(`${c.fillerBefore} `)).toBe(true);
        expect(joined.endsWith(` ${c.fillerAfter}`)).toBe(true);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test("written to stdout in a worker: cut into lines where the text has line breaks, and into writes anywhere", () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const line = lineOf(c);
        const redactor = new Redactor([{ name: "password", value: c.value }]);
        const stored: string[] = [];
        const buffer = new LogRedactionBuffer(redactor, (_level, message) => stored.push(message));
        // As a worker's output reaches the job log (src/runner/worker-process.ts, worker-executor.ts).
        const lines = new LineSplitter(64 * 1024, (l) => buffer.push("info", l, "stdout"), () => {});
        for (const piece of piecesOf(`${line}\n`, c.cuts)) lines.push(piece);
        lines.end();
        buffer.flush();
        const joined = stored.join("\n");
        const leaked = leakedForm(joined, c.value);
        if (leaked) throw new Error(`the ${leaked} form of the value survived ${c.encoding}`);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test("several values, overlapping or one inside another, each in any encoding, in one text, whole or cut into writes", () => {
    const secretsArb = fc
      .tuple(valueArb, valueArb, valueArb, fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 4 }))
      .map(([a, b, c, count, share]) => {
        const values = [a];
        // Sometimes the next value starts with the end of the previous one, or holds it whole.
        if (count >= 1) values.push(share % 2 === 0 ? a.slice(-share) + b : b + a);
        if (count >= 2) values.push(c);
        return values.map((value, i): Secret => ({ name: `s${i}`, value }));
      });
    fc.assert(
      fc.property(secretsArb, fc.array(fc.tuple(fc.nat(), fc.constantFrom(...Object.keys(ENCODINGS)), bytesArb, bytesArb, fc.boolean(), fillerArb), { minLength: 1, maxLength: 4 }), caseArb.map((c) => c.cuts), (secrets, parts, cuts) => {
        const redactor = new Redactor(secrets);
        const text = parts
          .map(([which, encoding, before, after, flag, filler]) => {
            const value = secrets[which % secrets.length]!.value;
            return `${filler} ${ENCODINGS[encoding]!(value, { before, after, flag }) ?? value}`;
          })
          .join(" ");
        const written: string[] = [];
        const buffer = new LogRedactionBuffer(redactor, (_level, message) => written.push(message));
        for (const piece of piecesOf(text, cuts)) buffer.push("info", piece);
        buffer.flush();
        for (const [how, redacted] of [["whole", redactor.redact(text)], ["in writes", written.join("")]]) {
          for (const secret of secrets) {
            const leaked = leakedForm(redacted!, secret.value);
            if (leaked) throw new Error(`${secret.name} survived ${how} in its ${leaked} form`);
          }
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test("ordinary text that holds no form of the value is left as it is", () => {
    const ordinaryArb = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?()\"'{}=&%+/\\-_\n"), maxLength: 200 });
    fc.assert(
      fc.property(valueArb, ordinaryArb, (value, text) => {
        fc.pre(formsOf(value).every((form) => unredactedParts(text).every((part) => !part.includes(form.text))));
        expect(new Redactor([{ name: "password", value }]).redact(text)).toBe(text);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
});
