import { expect, test } from "bun:test";
import { Batcher } from "../../src/store/batcher";

test("calls made while a batch is written go together in the next one; a lone call starts at once", async () => {
  const batches: number[][] = [];
  const batcher = new Batcher<number, number>(async (inputs) => {
    batches.push(inputs);
    await Bun.sleep(5);
    return inputs.map((n) => n * 2);
  });
  const first = batcher.submit(1);
  expect(batches).toEqual([[1]]); // written at once, not after a delay
  const rest = [2, 3, 4, 5].map((n) => batcher.submit(n));
  expect(await Promise.all([first, ...rest])).toEqual([2, 4, 6, 8, 10]);
  expect(batches).toEqual([[1], [2, 3, 4, 5]]);
});

test("an Error result goes to its own caller only", async () => {
  const batcher = new Batcher<number, number>(async (inputs) => inputs.map((n) => (n === 3 ? new Error("three is refused") : n)));
  const results = await Promise.allSettled([1, 2, 3, 4].map((n) => batcher.submit(n)));
  expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([1, 2, "three is refused", 4]);
});

test("a batch that throws is retried one call at a time: the call that breaks it fails alone", async () => {
  const batches: number[][] = [];
  const batcher = new Batcher<number, number>(async (inputs) => {
    batches.push(inputs);
    await Bun.sleep(1);
    if (inputs.includes(13)) throw new Error("thirteen breaks the transaction");
    return inputs;
  });
  const first = batcher.submit(0);
  const results = await Promise.allSettled([first, ...[11, 12, 13, 14].map((n) => batcher.submit(n))]);
  expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([0, 11, 12, "thirteen breaks the transaction", 14]);
  expect(batches).toEqual([[0], [11, 12, 13, 14], [11], [12], [13], [14]]);
});

test("busy (a batch just ended), calls of one turn of the event loop share a batch even when writing never yields (bun:sqlite)", async () => {
  const batches: number[][] = [];
  // Synchronous work, as on SQLite; a wide busy window keeps the test free of timing.
  const batcher = new Batcher<number, number>(async (inputs) => (batches.push(inputs), inputs), 64, 60_000);
  expect(await batcher.submit(0)).toBe(0);
  expect(batches).toEqual([[0]]); // idle: at once
  const next = [1, 2, 3].map((n) => batcher.submit(n));
  expect(batches).toEqual([[0]]); // busy: after this turn
  expect(await Promise.all(next)).toEqual([1, 2, 3]);
  expect(batches).toEqual([[0], [1, 2, 3]]);
});
