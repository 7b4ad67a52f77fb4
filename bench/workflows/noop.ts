import { workflow } from "libretto";

// The cheapest job there is: no credentials, no browser, no log line.
export default workflow("bench-noop", {
  async handler() {
    return null;
  },
});
