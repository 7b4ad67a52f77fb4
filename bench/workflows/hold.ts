import { existsSync } from "node:fs";
import { workflow } from "libretto";

// Holds a runner slot until the file named by params.releaseFile exists (at
// most params.holdMs), so that the benchmark can queue jobs the runner does
// not take. Every holder waiting on one file is released by the same timer
// tick: the runner runs a job to its end without giving the event loop a turn,
// so holders released one at a time (a cancel each, a timer each) would free
// one slot and drain the whole queue through it before freeing the next.
const releases = new Map<string, Promise<void>>();

function released(file: string, holdMs: number): Promise<void> {
  let release = releases.get(file);
  if (!release) {
    const deadline = Date.now() + holdMs;
    release = new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (!existsSync(file) && Date.now() < deadline) return;
        clearInterval(timer);
        releases.delete(file);
        resolve();
      }, 2);
    });
    releases.set(file, release);
  }
  return release;
}

export default workflow("bench-hold", {
  async handler(ctx, input: { releaseFile: string; holdMs: number }) {
    const stopped = new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    await Promise.race([released(input.releaseFile, input.holdMs), stopped]);
    return null;
  },
});
