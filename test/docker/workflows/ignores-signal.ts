import { workflow } from "libretto";

// For test/docker/smoke.sh: a handler that ignores its stop signal (ctx.signal)
// and would run for ten minutes. `docker stop` must still end the container
// within its 10 s, exit code 0, and the job must end failed as interrupted.
export default workflow("ignores-signal", {
  async handler(ctx) {
    ctx.log.info("ignoring the stop signal");
    await new Promise((resolve) => setTimeout(resolve, 10 * 60_000));
    return { finished: true };
  },
});
