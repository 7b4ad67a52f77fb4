import { describe, expect, test } from "bun:test";
import { RecentValues } from "../../src/vault/recent";

const bytes = (...b: number[]) => new Uint8Array(b);

function clock() {
  let now = 1_000;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

describe("RecentValues: values opened lately, for reads that come again", () => {
  test("a hit needs the very same bytes under the same key", () => {
    const c = clock();
    const recent = new RecentValues(60_000, 10, 100, c.now);
    recent.set("t1/credential/a/1/x", bytes(1, 2, 3), "value-a");
    expect(recent.get("t1/credential/a/1/x", bytes(1, 2, 3))).toBe("value-a");
    // Other bytes (a replaced or tampered value): no hit, whatever the key.
    expect(recent.get("t1/credential/a/1/x", bytes(1, 2, 4))).toBeUndefined();
    expect(recent.get("t1/credential/a/1/x", bytes(1, 2))).toBeUndefined();
    // The same bytes under another key (another tenant, credential, version or name): no hit.
    expect(recent.get("t2/credential/a/1/x", bytes(1, 2, 3))).toBeUndefined();
    recent.clear();
  });

  test("a value goes stale after its time, and prune drops it unread", () => {
    const c = clock();
    const recent = new RecentValues(1_000, 10, 100, c.now);
    recent.set("k1", bytes(1), "v1");
    recent.set("k2", bytes(2), "v2");
    c.advance(999);
    expect(recent.get("k1", bytes(1))).toBe("v1");
    c.advance(1);
    expect(recent.get("k1", bytes(1))).toBeUndefined();
    expect(recent.size).toBe(1);
    recent.prune();
    expect(recent.size).toBe(0);
  });

  test("at most maxEntries are kept, the oldest dropped first; large values and a zero time keep nothing", () => {
    const c = clock();
    const recent = new RecentValues(60_000, 3, 5, c.now);
    for (const k of ["a", "b", "c", "d"]) recent.set(k, bytes(1), k);
    expect(recent.size).toBe(3);
    expect(recent.get("a", bytes(1))).toBeUndefined();
    expect(recent.get("d", bytes(1))).toBe("d");
    recent.set("big", bytes(1), "123456");
    expect(recent.get("big", bytes(1))).toBeUndefined();
    recent.forget("d");
    expect(recent.get("d", bytes(1))).toBeUndefined();
    recent.clear();

    const off = new RecentValues(0, 3, 5, c.now);
    off.set("a", bytes(1), "a");
    expect(off.size).toBe(0);
  });
});
