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
  #writing = false;

  /**
   * `write` handles a batch (at most `maxBatch` inputs) and returns one
   * result per input, in order: a value, or an Error that only that input's
   * caller gets.
   */
  constructor(
    private readonly write: (inputs: In[]) => Promise<(Out | Error)[]>,
    private readonly maxBatch = 64,
  ) {}

  submit(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#pending.push({ input, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, this.maxBatch);
        const results = await this.#results(batch.map((call) => call.input));
        for (const [i, call] of batch.entries()) {
          const result = i < results.length ? results[i]! : new Error("a batch returned fewer results than it was given");
          if (result instanceof Error) call.reject(result);
          else call.resolve(result);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /** The batch's results; when the batch throws, each input's own, written alone. */
  async #results(inputs: In[]): Promise<(Out | Error)[]> {
    const asError = (error: unknown) => (error instanceof Error ? error : new Error(String(error)));
    try {
      return await this.write(inputs);
    } catch (error) {
      if (inputs.length === 1) return [asError(error)];
      const results: (Out | Error)[] = [];
      for (const input of inputs) results.push(await this.write([input]).then((r) => r[0]!, asError));
      return results;
    }
  }
}
