/**
 * Our cron module: next fire times across the daylight-saving transitions of
 * America/New_York, Europe/Berlin and Australia/Lord_Howe (a 30-minute
 * shift), by the rules in src/schedules/cron.ts: a wall-clock time in the
 * spring-forward gap fires once, at the first valid instant after it; a time
 * in the repeated fall-back hour fires once, at its first occurrence. And the
 * messages for bad expressions and zones.
 */
import { describe, expect, test } from "bun:test";
import { CronError, nextFireAfter, parseCron, parseTimeZone, TimeZoneError } from "../../src/schedules/cron";

/** The next `n` fire times after `from`, as ISO strings. */
function fires(expr: string, timeZone: string, from: string, n: number): string[] {
  const out: string[] = [];
  let after = new Date(from);
  for (let i = 0; i < n; i++) {
    const next = nextFireAfter(parseCron(expr), parseTimeZone(timeZone), after);
    if (!next) break;
    out.push(next.toISOString());
    after = next;
  }
  return out;
}

describe("America/New_York (2026: spring forward Mar 8 02:00 EST -> 03:00 EDT, fall back Nov 1 02:00 EDT -> 01:00 EST)", () => {
  test("a daily time in the gap fires once, at 03:00 EDT, then at its own time again", () => {
    expect(fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 3)).toEqual([
      "2026-03-08T07:00:00.000Z", // 02:30 does not exist: 03:00 EDT
      "2026-03-09T06:30:00.000Z", // 02:30 EDT
      "2026-03-10T06:30:00.000Z",
    ]);
  });

  test("several times inside the gap become one fire", () => {
    expect(fires("*/15 * * * *", "America/New_York", "2026-03-08T06:40:00Z", 3)).toEqual([
      "2026-03-08T06:45:00.000Z", // 01:45 EST
      "2026-03-08T07:00:00.000Z", // 02:00..02:45 do not exist; 03:00 EDT, once
      "2026-03-08T07:15:00.000Z", // 03:15 EDT
    ]);
    expect(fires("0,30 2 * * *", "America/New_York", "2026-03-08T00:00:00Z", 2)).toEqual([
      "2026-03-08T07:00:00.000Z",
      "2026-03-09T06:00:00.000Z", // 02:00 EDT the next day
    ]);
  });

  test("a daily time in the repeated hour fires once, at its first occurrence", () => {
    expect(fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2)).toEqual([
      "2026-11-01T05:30:00.000Z", // 01:30 EDT; 01:30 EST (06:30Z) does not fire
      "2026-11-02T06:30:00.000Z", // 01:30 EST the next day
    ]);
  });

  test("an interval expression does not fire again on the second pass through the repeated hour", () => {
    expect(fires("*/20 * * * *", "America/New_York", "2026-11-01T04:50:00Z", 5)).toEqual([
      "2026-11-01T05:00:00.000Z", // 01:00 EDT
      "2026-11-01T05:20:00.000Z",
      "2026-11-01T05:40:00.000Z", // 01:40 EDT
      "2026-11-01T07:00:00.000Z", // 02:00 EST; 01:00..01:40 EST (06:00..06:40Z) skipped
      "2026-11-01T07:20:00.000Z",
    ]);
    // Asked from inside the second pass, the answer is after it.
    expect(nextFireAfter("*/20 * * * *", "America/New_York", new Date("2026-11-01T06:10:00Z"))?.toISOString()).toBe("2026-11-01T07:00:00.000Z");
  });
});

describe("Europe/Berlin (2026: spring forward Mar 29 02:00 CET -> 03:00 CEST, fall back Oct 25 03:00 CEST -> 02:00 CET)", () => {
  test("a daily time in the gap fires once, at 03:00 CEST", () => {
    expect(fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2)).toEqual([
      "2026-03-29T01:00:00.000Z", // 02:30 does not exist: 03:00 CEST
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
    ]);
    expect(fires("0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", 2)).toEqual([
      "2026-03-29T01:00:00.000Z", // 02:00 (gap) and 03:00 CEST are the same instant: one fire
      "2026-03-29T02:00:00.000Z", // 04:00 CEST
    ]);
  });

  test("a time in the repeated hour fires once", () => {
    expect(fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2)).toEqual([
      "2026-10-25T00:30:00.000Z", // 02:30 CEST; 02:30 CET (01:30Z) does not fire
      "2026-10-26T01:30:00.000Z", // 02:30 CET the next day
    ]);
    expect(fires("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", 3)).toEqual([
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T02:00:00.000Z", // 03:00 CET; 02:00 and 02:30 CET skipped
      "2026-10-25T02:30:00.000Z",
    ]);
  });
});

describe("Australia/Lord_Howe (a 30-minute shift; 2026: back Apr 5 02:00 -> 01:30, forward Oct 4 02:00 -> 02:30)", () => {
  test("a time in the 30-minute gap fires once, at 02:30 LHDT; a time after the gap is not moved", () => {
    expect(fires("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", 2)).toEqual([
      "2026-10-03T15:30:00.000Z", // 02:15 does not exist: 02:30 LHDT (+11)
      "2026-10-04T15:15:00.000Z", // 02:15 LHDT
    ]);
    expect(fires("45 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", 1)).toEqual(["2026-10-03T15:45:00.000Z"]);
    expect(fires("*/10 * * * *", "Australia/Lord_Howe", "2026-10-03T15:25:00Z", 2)).toEqual([
      "2026-10-03T15:30:00.000Z", // 02:00, 02:10, 02:20 (gap) and 02:30: one fire
      "2026-10-03T15:40:00.000Z",
    ]);
  });

  test("a time in the repeated half hour fires once, at its first occurrence", () => {
    expect(fires("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T00:00:00Z", 2)).toEqual([
      "2026-04-04T14:45:00.000Z", // 01:45 LHDT (+11); 01:45 LHST (15:15Z) does not fire
      "2026-04-05T15:15:00.000Z", // 01:45 LHST (+10:30) the next day
    ]);
    expect(fires("*/15 * * * *", "Australia/Lord_Howe", "2026-04-04T14:20:00Z", 4)).toEqual([
      "2026-04-04T14:30:00.000Z", // 01:30 LHDT
      "2026-04-04T14:45:00.000Z", // 01:45 LHDT
      "2026-04-04T15:30:00.000Z", // 02:00 LHST; 01:30 and 01:45 LHST skipped
      "2026-04-04T15:45:00.000Z",
    ]);
  });
});

test("UTC and the plain cases: strictly after, on whole minutes", () => {
  expect(fires("* * * * *", "UTC", "2026-01-01T00:00:30.500Z", 2)).toEqual(["2026-01-01T00:01:00.000Z", "2026-01-01T00:02:00.000Z"]);
  expect(fires("* * * * *", "UTC", "2026-01-01T00:01:00.000Z", 1)).toEqual(["2026-01-01T00:02:00.000Z"]);
  expect(fires("0 9 * * 1-5", "Europe/Berlin", "2026-01-02T09:00:00Z", 2)).toEqual(["2026-01-05T08:00:00.000Z", "2026-01-06T08:00:00.000Z"]);
  // Day-of-month and day-of-week both restricted: either matches (Vixie cron).
  expect(fires("0 0 13 * 5", "UTC", "2026-02-01T00:00:00Z", 3)).toEqual([
    "2026-02-06T00:00:00.000Z",
    "2026-02-13T00:00:00.000Z",
    "2026-02-20T00:00:00.000Z",
  ]);
});

describe("bad expressions say what is wrong", () => {
  const message = (expr: string) => {
    try {
      parseCron(expr);
    } catch (error) {
      expect(error).toBeInstanceOf(CronError);
      return (error as Error).message;
    }
    throw new Error(`${expr} was accepted`);
  };

  test("field count", () => {
    expect(message("* * * *")).toContain("must have 5 fields (minute hour day-of-month month day-of-week)");
    expect(message("0 * * * * *")).toContain("has 6");
    expect(message("@daily")).toContain("must have 5 fields");
    expect(message("")).toContain("has 0");
  });

  test("values and syntax", () => {
    expect(message("61 * * * *")).toBe("is not a valid cron expression (minute hour day-of-month month day-of-week): Invalid value for minute: 61");
    expect(message("* 24 * * *")).toContain("hour");
    expect(message("* * * 13 *")).toContain("month");
    expect(message("* * * * 8")).toContain("dayOfWeek");
    expect(message("*/0 * * * *")).toContain("stepping");
  });

  test("an expression that never fires", () => {
    expect(message("0 0 31 2 *")).toBe('never fires: "0 0 31 2 *" matches no date');
  });

  test("good expressions are normalised", () => {
    expect(parseCron("  */5   *  * * MON-FRI ")).toBe("*/5 * * * MON-FRI");
    expect(parseCron("0 0 29 2 *")).toBe("0 0 29 2 *");
  });
});

describe("time zones: IANA names only", () => {
  test("names are accepted in their canonical spelling", () => {
    expect(parseTimeZone("UTC")).toBe("UTC");
    expect(parseTimeZone("america/new_york")).toBe("America/New_York");
    expect(parseTimeZone("Australia/Lord_Howe")).toBe("Australia/Lord_Howe");
    expect(parseTimeZone("Etc/GMT+5")).toBe("Etc/GMT+5");
  });

  test("unknown names and offsets are refused with a sentence", () => {
    for (const bad of ["Mars/Olympus_Mons", "+05:00", "-0300", "", "Europe/Berlin; DROP", "New York"]) {
      expect(() => parseTimeZone(bad)).toThrow(TimeZoneError);
    }
    expect(() => parseTimeZone("Mars/Olympus_Mons")).toThrow('must be an IANA time zone name such as "UTC", "Europe/Berlin" or "America/New_York"');
  });
});
