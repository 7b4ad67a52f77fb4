/**
 * Values the vault opened lately, for reads that come again: a workflow's
 * credential is read by every job that runs it, and an open costs ~10 us of
 * cipher alone and ~40 us of server CPU under load (the cipher's many small
 * buffers keep the garbage collector busy), against ~1 us for a hit here.
 *
 * A hit needs the very bytes that were opened, under the same tenant and
 * context (the associated data): the row is still read from the database on
 * every read, so a changed, replaced or tampered value never hits and is
 * opened (and checked) again. What this keeps in memory is no more than the
 * process already holds: the unwrapped tenant keys open every value anyway.
 * It bounds how long a value stays here (`ttlMs`), how many (`maxEntries`)
 * and how large (`maxValueLength`); a change or delete of a credential
 * through this process forgets its value at once.
 */
export class RecentValues {
  readonly #entries = new Map<string, { sealed: Uint8Array; value: string; expiresAt: number }>();
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly ttlMs: number,
    readonly maxEntries = 1024,
    readonly maxValueLength = 4096,
    readonly nowMs: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  /** The value opened from exactly these bytes under this key, while it is fresh. */
  get(key: string, sealed: Uint8Array): string | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.nowMs()) {
      this.#entries.delete(key);
      return undefined;
    }
    return sameBytes(entry.sealed, sealed) ? entry.value : undefined;
  }

  set(key: string, sealed: Uint8Array, value: string): void {
    if (this.ttlMs <= 0 || value.length > this.maxValueLength) return;
    this.#entries.delete(key);
    // Oldest first: a Map iterates in insertion order.
    if (this.#entries.size >= this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { sealed, value, expiresAt: this.nowMs() + this.ttlMs });
    this.#sweep();
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }

  /** Drops every stale value, so that none outlives its time by long even when nobody reads it again. */
  prune(): void {
    const now = this.nowMs();
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
    if (this.#entries.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  clear(): void {
    this.#entries.clear();
    this.prune();
  }

  /** A timer runs only while something is kept, and never holds the process open. */
  #sweep() {
    if (this.#sweeper) return;
    this.#sweeper = setInterval(() => this.prune(), Math.max(1000, this.ttlMs));
    this.#sweeper.unref?.();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
