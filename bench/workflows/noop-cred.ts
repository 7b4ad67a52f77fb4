import { workflow } from "libretto";

// A no-op that declares one credential, so that each job takes a reference at
// create and claim, decrypts the stored value and writes an audit event. The
// benchmark stores bench_token first; without it the job fails, and the
// benchmark with it.
export default workflow("bench-noop-cred", {
  credentials: ["bench_token"],
  async handler(_ctx, input) {
    if (typeof input.credentials?.bench_token !== "string") throw new Error("bench_token was not injected");
    return null;
  },
});
