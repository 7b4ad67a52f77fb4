/**
 * A token bucket per API key: `perSecond` tokens refill each second up to
 * `burst`. Buckets live in memory; a restart forgets them, which only ever
 * errs on the side of letting a client through.
 */
export class RateLimiter {
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: { perSecond: number; burst: number }, nowMs: () => number = () => performance.now()) {
    this.#perSecond = options.perSecond;
    this.#burst = options.burst;
    this.#now = nowMs;
  }

  /** Returns 0 when the request may go ahead, else the seconds to wait. */
  take(key: string): number {
    if (this.#perSecond <= 0) return 0;
    const now = this.#now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, at: now };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#perSecond);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#perSecond));
  }
}
