import { workflow } from "libretto";
import { z } from "zod";

// No credentials and no ctx.page: this workflow never starts a browser.
export default workflow("hello", {
  input: z.object({
    name: z.string().default("world"),
  }),
  async handler(ctx, input) {
    ctx.log.info("Greeting someone");
    return { greeting: `Hello, ${input.name}!` };
  },
});
