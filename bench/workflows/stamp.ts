import { workflow } from "libretto";

// Returns when its handler started, as epoch milliseconds with sub-millisecond
// precision: the benchmark subtracts the moment it sent jobs/create.
export default workflow("bench-stamp", {
  async handler() {
    return { started: performance.timeOrigin + performance.now() };
  },
});
