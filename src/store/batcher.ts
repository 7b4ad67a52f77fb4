/**
 * Group commit for the hot paths: calls that arrive while a batch is being
 * written wait and go together in the next one, so N concurrent requests
 * cost one transaction (a few round trips) instead of N. A lone call starts
 * its batch at once, so an idle server answers as fast as before.
 *
 * A batch that throws is retried one call at a time, so one call that fails
 * (a bug, a constraint) fails alone and the others still land.
 */
export class Batcher<In, Out> {
  readonly #pending: { input: In; resolve: (out: Out) => void; reject: (error: unknown) => void }[] = [];
  #running = 0;

  /**
   * `write` handles a batch and returns one result per input, in order: a
   * value, or an Error that only that input's caller gets.
   */
  constructor(
    private readonly write: (inputs: In[]) => Promise<(Out | Error)[]>,
    private readonly options: { maxBatch: number; concurrency: number } = { maxBatch: 64, concurrency: 1 },
  ) {}

  submit(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#pending.push({ input, resolve, reject });
      if (this.#running < this.options.concurrency) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running++;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, this.options.maxBatch);
        let results: (Out | Error)[];
        try {
          results = await this.write(batch.map((call) => call.input));
        } catch (error) {
          if (batch.length === 1) {
            batch[0]!.reject(error);
            continue;
          }
          results = [];
          for (const call of batch) results.push(await this.write([call.input]).then((r) => r[0]!, (e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
        }
        for (const [i, call] of batch.entries()) {
          const result = results[i];
          if (result instanceof Error) call.reject(result);
          else if (result === undefined && results.length <= i) call.reject(new Error("a batch returned fewer results than it was given"));
          else call.resolve(result as Out);
        }
      }
    } finally {
      this.#running--;
    }
  }
}
