import { describe, expect, test } from "bun:test";
import { format } from "node:util";
import { LogRedactionBuffer, Redactor } from "../../src/runner/redactor";
import { escapeUnicode, leakedForm } from "./value-forms";

type Level = "info" | "warn" | "error";

/** The encodings a secret must never appear in, computed here independently of the redactor. */
function encodingsOf(value: string): Record<string, string> {
  const base64 = Buffer.from(value, "utf8").toString("base64");
  const base64url = base64.replace(/\+/g, "-").replace(/\//g, "_");
  return {
    exact: value,
    base64,
    "base64 without padding": base64.replace(/=+$/, ""),
    "base64url without padding": base64url.replace(/=+$/, ""),
    "base64url with padding": base64url,
    "URL-encoded": encodeURIComponent(value),
    "form-encoded (+ for space)": encodeURIComponent(value).replace(/%20/g, "+"),
    "form-encoded (URLSearchParams)": new URLSearchParams({ v: value }).toString().slice(2),
    "JSON-escaped": JSON.stringify(value).slice(1, -1),
  };
}

function collect(redactor: Redactor) {
  const emitted: { level: Level; message: string }[] = [];
  const buffer = new LogRedactionBuffer(redactor, (level, message) => emitted.push({ level, message }));
  return { buffer, emitted, messages: () => emitted.map((e) => e.message) };
}

describe("Redactor", () => {
  // Chosen so every encoding differs from the value and from each other: a
  // space, +, /, quotes, a backslash, a newline, ! and non-ASCII.
  const value = 'p@ss w/rd+"q"\\é€\n(1)?>!';
  const redactor = new Redactor([{ name: "password", value }]);

  for (const [encoding, form] of Object.entries(encodingsOf(value))) {
    test(`redacts the ${encoding} form`, () => {
      expect(redactor.redact(`before ${form} after`)).toBe("before [REDACTED:password] after");
      expect(redactor.redact(`${form}${form}`)).toBe("[REDACTED:password][REDACTED:password]");
    });
  }

  test("the encodings of the test value are all distinct, so each case above tests its own form", () => {
    const forms = Object.values(encodingsOf(value));
    expect(new Set(forms).size).toBe(forms.length);
  });

  test("redacts every occurrence, in errors and multi-line text alike", () => {
    const text = `a ${value} b ${encodeURIComponent(value)}\nc ${Buffer.from(value).toString("base64")}`;
    expect(redactor.redact(text)).toBe("a [REDACTED:password] b [REDACTED:password]\nc [REDACTED:password]");
  });

  test("values shorter than 4 characters (after trimming) are not redacted", () => {
    const short = new Redactor([
      { name: "a", value: "abc" },
      { name: "b", value: "  ab  " },
      { name: "c", value: "" },
      { name: "d", value: "   \n  " },
    ]);
    expect(short.active).toBe(false);
    const text = "abc ab   \n  the abc of it";
    expect(short.redact(text)).toBe(text);
    expect(new Redactor([]).active).toBe(false);
    const four = new Redactor([{ name: "pin", value: "4711" }]);
    expect(four.active).toBe(true);
    expect(four.redact("pin 4711")).toBe("pin [REDACTED:pin]");
  });

  test("leaves ordinary text alone", () => {
    const secrets = new Redactor([
      { name: "token", value: "sk_live_9f8e7d6c5b4a" },
      { name: "password", value: "correct horse battery staple" },
    ]);
    const ordinary = [
      "Logged in as alice; opening https://example.com/dashboard?x=1&y=2",
      "correct horse, battery and staple are four words",
      "sk_live_ is a prefix; 9f8e7d6c5b4 is one character short",
      '{"ok":true,"items":[1,2,3]} base64: c2tfbGl2ZV85ZjhlN2Q2YzVi',
      "",
    ];
    for (const text of ordinary) expect(secrets.redact(text)).toBe(text);
  });

  test("a secret inside a longer one: the longer wins, the shorter is redacted on its own", () => {
    const r = new Redactor([
      { name: "short", value: "password" },
      { name: "long", value: "password123" },
    ]);
    expect(r.redact("x password123 y password z")).toBe("x [REDACTED:long] y [REDACTED:short] z");
  });

  test("partly overlapping secrets are both covered, leaving no fragment", () => {
    const r = new Redactor([
      { name: "a", value: "abcdefgh" },
      { name: "b", value: "efghijkl" },
    ]);
    expect(r.redact("xx abcdefghijkl yy")).toBe("xx [REDACTED:a][REDACTED:b] yy");
    expect(r.redact("xx efghijkl abcdefgh yy")).toBe("xx [REDACTED:b] [REDACTED:a] yy");
    // A value overlapping itself is one stretch.
    const repeated = new Redactor([{ name: "r", value: "abab" }]);
    expect(repeated.redact("-ababab-")).toBe("-[REDACTED:r]-");
  });

  test("one value under two names is redacted as the first", () => {
    const r = new Redactor([
      { name: "first", value: "same-value" },
      { name: "second", value: "same-value" },
    ]);
    expect(r.redact("same-value")).toBe("[REDACTED:first]");
  });

  test("characters that mean something in a regex are matched literally", () => {
    const r = new Redactor([{ name: "re", value: ".*+?^${}()|[]\\/" }]);
    expect(r.redact("anything at all")).toBe("anything at all");
    expect(r.redact("x .*+?^${}()|[]\\/ y")).toBe("x [REDACTED:re] y");
  });
});

describe("forms of a value written with other text around it", () => {
  const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
  const base64url = (text: string) => Buffer.from(text, "utf8").toString("base64url");

  test("a. base64 behind a prefix of any length (Basic auth): standard and url alphabets, with and without padding", () => {
    const value = "s3cr3t-Pa55!";
    const redactor = new Redactor([{ name: "password", value }]);
    for (const user of ["", "u", "us", "use", "user", "admin", "bob", "x".repeat(17)]) {
      const plain = `${user}:${value}`;
      const padded = base64(plain);
      for (const form of [padded, padded.replace(/=+$/, ""), base64url(plain), base64url(plain) + "=".repeat((4 - (base64url(plain).length % 4)) % 4)]) {
        const redacted = redactor.redact(`Authorization: Basic ${form}`);
        expect({ user, form, leaked: leakedForm(redacted, value) }).toEqual({ user, form, leaked: undefined });
        // The characters that carry none of the value's bits stay: the user name can still be read.
        const untouched = Math.floor((8 * Buffer.byteLength(`${user}:`)) / 6);
        expect(redacted).toBe(`Authorization: Basic ${form.slice(0, untouched)}[REDACTED:password]`);
      }
    }
  });

  test("a. base64 of a longer string that starts inside a word, with the value in its middle", () => {
    const value = "tok_4f9a2c7e1b";
    const redactor = new Redactor([{ name: "token", value }]);
    for (let before = 0; before < 6; before++) {
      const encoded = base64(`${"k".repeat(before)}${value};expires=0`);
      for (const glued of ["", "x", "ab", "abc"]) {
        const redacted = redactor.redact(`cookie=${glued}${encoded}; path=/`);
        expect({ before, glued, leaked: leakedForm(redacted, value) }).toEqual({ before, glued, leaked: undefined });
      }
    }
  });

  test("b. util.inspect's escaped form (ctx.log.info(\"obj\", {password: v}) and console.log of objects)", () => {
    const values = [
      "it's \"quoted\" `thrice`",
      "back\\slash and 'quote' and \"dq\" and `bq`",
      "new\nline 'with' \"all\" `quotes`",
      "tab\there 'and' \"all\" `quotes`",
      "line\u2028sep 'and' \"all\" `quotes`",
      "ctl\x00\x07\b\v\f\x1b\x7f\x85-end",
      "lone \ud800 surrogate 'and' \"all\" `quotes`",
    ];
    for (const value of values) {
      const redactor = new Redactor([{ name: "password", value }]);
      for (const text of [
        format("obj", { password: value }),
        format({ password: value }),
        format("%o", { password: value }),
        format("%O", [value]),
        format("nested", { a: { b: new Map([["k", value]]) } }),
      ]) {
        const redacted = redactor.redact(text);
        expect({ value, text, leaked: leakedForm(redacted, value) }).toEqual({ value, text, leaked: undefined });
        expect(redacted).toContain("[REDACTED:password]");
      }
    }
  });

  test("b. a long value with line breaks, which util.inspect writes as 'line\\n' + 'line' over several lines", () => {
    const value = `-----BEGIN KEY-----\n${"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".repeat(3)}\n${"AoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R".repeat(3)}\n-----END KEY-----`;
    const redactor = new Redactor([{ name: "key", value }]);
    const text = format("loaded", { key: value, other: "x".repeat(40) });
    expect(text).toContain("' +\n"); // the form this test is about
    const redacted = redactor.redact(text);
    expect(leakedForm(redacted, value)).toBeUndefined();
    expect(redacted).toContain("[REDACTED:key]");
    expect(redacted).toContain("other: 'xxxxxxxx");
  });

  test("c. JSON with characters written as \\uXXXX: non-ASCII (p\\u00e4sswort), ASCII, upper- or lower-case hex, surrogate pairs", () => {
    const value = "pässwort-€-😀-123";
    const redactor = new Redactor([{ name: "password", value }]);
    const inJson = (escaped: string) => `{"password":"${escaped}"}`;
    for (const text of [
      escapeUnicode(JSON.stringify({ password: value }), /[^\x20-\x7e]/g, "lower"),
      escapeUnicode(JSON.stringify({ password: value }), /[^\x20-\x7e]/g, "upper"),
      inJson(escapeUnicode(value, /[a-z]/g, "lower")),
      inJson(escapeUnicode(value, /[\s\S]/g, "lower")),
    ]) {
      const redacted = redactor.redact(text);
      expect({ text, redacted }).toEqual({ text, redacted: '{"password":"[REDACTED:password]"}' });
    }
  });

  test("c. JSON inside JSON, and JSON inside util.inspect: escaped twice", () => {
    const value = 'pä"ss\\wort';
    const redactor = new Redactor([{ name: "password", value }]);
    const inner = escapeUnicode(JSON.stringify({ password: value }), /[^\x20-\x7e]/g, "lower");
    for (const text of [JSON.stringify({ body: inner }), format("request", { body: inner }), format("request", { body: JSON.stringify({ password: value }) })]) {
      const redacted = redactor.redact(text);
      expect({ text, leaked: leakedForm(redacted, value) }).toEqual({ text, leaked: undefined });
      expect(redacted).toContain("[REDACTED:password]");
    }
  });

  test("hex, lower- and upper-case, alone or inside the hex of a longer string, at either digit offset", () => {
    const value = "hunter2-hunter2";
    const redactor = new Redactor([{ name: "password", value }]);
    for (const around of ["", "user:", "ab"]) {
      const hex = Buffer.from(`${around}${value}!`).toString("hex");
      for (const form of [hex, hex.toUpperCase()]) {
        for (const glued of ["", "f", "0x"]) {
          const redacted = redactor.redact(`dump ${glued}${form} end`);
          expect({ form, glued, leaked: leakedForm(redacted, value) }).toEqual({ form, glued, leaked: undefined });
          expect(redacted).toContain("[REDACTED:password]");
        }
      }
    }
  });

  test("encoded twice: base64 in a URL, base64 of JSON (a token's claims), JSON in a URL, JSON in JSON", () => {
    const value = 'Pä$$ "w/ord" + 1 ÿ?>';
    const redactor = new Redactor([{ name: "password", value }]);
    const claims = Buffer.from(JSON.stringify({ sub: "ada", pw: value, n: 1 })).toString("base64url");
    const inUrl = encodeURIComponent(Buffer.from(`ada:${value}`).toString("base64"));
    expect(inUrl).toContain("%2F"); // the / of the base64 is percent-encoded: only decoding both finds the value
    for (const text of [
      `GET /cb?auth=${inUrl}&x=1`,
      `token eyJhbGciOiJIUzI1NiJ9.${claims}.c2ln`,
      `POST /login?body=${encodeURIComponent(JSON.stringify({ pw: value }))}`,
      JSON.stringify({ log: JSON.stringify({ pw: value }) }),
    ]) {
      const redacted = redactor.redact(text);
      expect({ text, leaked: leakedForm(redacted, value) }).toEqual({ text, leaked: undefined });
      expect(redacted).toContain("[REDACTED:password]");
    }
  });

  test("percent-encoding mixed into a longer URL, with lower-case hex or + for a space", () => {
    const value = "p@ss wörd/+1";
    const redactor = new Redactor([{ name: "password", value }]);
    const encoded = encodeURIComponent(value);
    for (const form of [encoded, encoded.toLowerCase(), encoded.replace(/%20/g, "+"), new URLSearchParams({ v: value }).toString().slice(2)]) {
      expect(redactor.redact(`GET https://x.test/login?user=ada&pw=${form}&next=%2Fhome`)).toBe(
        "GET https://x.test/login?user=ada&pw=[REDACTED:password]&next=%2Fhome",
      );
    }
  });
});

describe("LogRedactionBuffer", () => {
  const token = "tok_4f9a2c7e1b";
  const redactor = new Redactor([{ name: "token", value: token }]);

  test("holds each write until the later writes of its stream reach past any form (or flush), keeping order and levels across streams", () => {
    const { buffer, emitted } = collect(redactor);
    // Any write could begin a form that a later one completes: held.
    buffer.push("info", "one");
    expect(emitted).toEqual([]);
    buffer.push("error", "two", "stderr");
    // Once the log stream has gone on for longer than any form, "one" can go; "two" of stderr not yet, and so nothing after it.
    const long = "x".repeat(redactor.longestForm);
    buffer.push("warn", long);
    expect(emitted).toEqual([{ level: "info", message: "one" }]);
    buffer.push("error", long, "stderr");
    expect(emitted).toEqual([
      { level: "info", message: "one" },
      { level: "error", message: "two" },
    ]);
    buffer.flush();
    expect(emitted.map((e) => e.level)).toEqual(["info", "error", "warn", "error"]);
    buffer.flush();
    expect(emitted.length).toBe(4);
  });

  test("a held write is emitted after the hold time even when nothing follows", async () => {
    const emitted: string[] = [];
    const buffer = new LogRedactionBuffer(redactor, (_level, message) => emitted.push(message), 20);
    buffer.push("info", `waiting ${token.slice(0, 2)}`);
    expect(emitted).toEqual([]);
    for (let i = 0; i < 100 && emitted.length === 0; i++) await Bun.sleep(10);
    expect(emitted).toEqual([`waiting ${token.slice(0, 2)}`]);
  });

  test("with nothing to redact, writes pass straight through", () => {
    const { buffer, emitted } = collect(new Redactor([{ name: "short", value: "abc" }]));
    buffer.push("info", "abc");
    expect(emitted).toEqual([{ level: "info", message: "abc" }]);
  });

  test("a value split across two writes, at every split point: both sides become the placeholder", () => {
    for (let at = 1; at < token.length; at++) {
      const { buffer, messages } = collect(redactor);
      buffer.push("info", `token is ${token.slice(0, at)}`);
      buffer.push("info", `${token.slice(at)} (end)`);
      buffer.flush();
      expect({ at, messages: messages() }).toEqual({ at, messages: ["token is [REDACTED:token]", "[REDACTED:token] (end)"] });
    }
  });

  test("a base64 form split across two writes, at every split point", () => {
    const base64 = Buffer.from(token).toString("base64");
    for (let at = 1; at < base64.length; at++) {
      const { buffer, messages } = collect(redactor);
      buffer.push("info", `Authorization: Bearer ${base64.slice(0, at)}`);
      buffer.push("info", base64.slice(at));
      buffer.flush();
      expect({ at, messages: messages() }).toEqual({ at, messages: ["Authorization: Bearer [REDACTED:token]", "[REDACTED:token]"] });
    }
  });

  test("a write that continues one secret and starts another is redacted at both ends", () => {
    const { buffer, messages } = collect(redactor);
    buffer.push("info", `a ${token.slice(0, 4)}`);
    buffer.push("info", `${token.slice(4)} b ${token.slice(0, 9)}`);
    buffer.push("info", `${token.slice(9)} c`);
    buffer.flush();
    expect(messages()).toEqual(["a [REDACTED:token]", "[REDACTED:token] b [REDACTED:token]", "[REDACTED:token] c"]);
  });

  test("d. a value split across three writes, at every pair of split points, in its raw, base64 and JSON forms", () => {
    const value = 'tok_4f"9a\\2c7e1b';
    const r = new Redactor([{ name: "token", value }]);
    const forms = [value, Buffer.from(`user:${value}`).toString("base64"), JSON.stringify({ token: value })];
    for (const form of forms) {
      for (let a = 1; a < form.length - 1; a++) {
        for (let b = a + 1; b < form.length; b++) {
          const { buffer, messages } = collect(r);
          for (const piece of [`token is ${form.slice(0, a)}`, form.slice(a, b), `${form.slice(b)} (end)`]) buffer.push("info", piece);
          buffer.flush();
          const joined = messages().join("");
          expect({ form, a, b, leaked: leakedForm(joined, value) }).toEqual({ form, a, b, leaked: undefined });
        }
      }
    }
  });

  test("d. a value written one character per write (console.log of each), and in pieces by ctx.log and console.log alike", () => {
    const value = "correct horse battery staple";
    const r = new Redactor([{ name: "password", value }]);
    const { buffer, messages } = collect(r);
    buffer.push("info", "spelling it out:");
    for (const c of value) buffer.push("info", c);
    buffer.push("info", "done");
    for (const piece of ["again: corr", "ect hor", "se batt", "ery sta", "ple!"]) buffer.push("warn", piece);
    buffer.flush();
    const out = messages();
    expect(out.length).toBe(value.length + 7);
    expect(leakedForm(out.join(""), value)).toBeUndefined();
    expect(out[0]).toBe("spelling it out:");
    expect(out.slice(1, -6).every((m) => m === "[REDACTED:password]" || m === " ")).toBe(true);
    expect(out.at(-6)).toBe("done");
    expect(out.slice(-5)).toEqual(["again: [REDACTED:password]", "[REDACTED:password]", "[REDACTED:password]", "[REDACTED:password]", "[REDACTED:password]!"]);
  });

  test("d. a multi-line value written one line per write (a key printed line by line)", () => {
    const value = `-----BEGIN KEY-----\n${"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".repeat(2)}\n${"AoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R".repeat(2)}\n-----END KEY-----`;
    const r = new Redactor([{ name: "key", value }]);
    const { buffer, messages } = collect(r);
    buffer.push("info", "key:");
    for (const line of value.split("\n")) buffer.push("info", line);
    buffer.flush();
    const out = messages();
    expect(out).toEqual(["key:", "[REDACTED:key]", "[REDACTED:key]", "[REDACTED:key]", "[REDACTED:key]"]);
  });

  test("consecutive ordinary writes are not joined into a false match", () => {
    const { buffer, messages } = collect(redactor);
    const lines = ["tok_", "4f9a", "opening the page", "tok_4f9a2c7e1", "c"];
    for (const line of lines) buffer.push("info", line);
    buffer.flush();
    expect(messages()).toEqual(lines);
  });
});
