import { workflow } from "libretto";

// Holds a runner slot until the benchmark answers params.releaseUrl (a
// 127.0.0.1 server of the benchmark's), or params.holdMs passes, so that the
// benchmark can queue jobs the runner does not take. Each holder runs in a
// worker process of its own, so the release is a request every holder waits
// on, answered for all of them at once.
export default workflow("bench-hold", {
  async handler(ctx, input: { releaseUrl: string; holdMs: number }) {
    const deadline = AbortSignal.timeout(input.holdMs);
    await fetch(input.releaseUrl, { signal: AbortSignal.any([ctx.signal, deadline]) }).catch(() => {});
    return null;
  },
});
