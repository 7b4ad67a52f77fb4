import { workflow } from "libretto";

// The browser benchmark's job: open a data: page and read its title.
export default workflow("bench-browser-title", {
  async handler(ctx) {
    await ctx.page.goto("data:text/html,<title>bench page</title><h1>bench</h1>");
    return { title: await ctx.page.title() };
  },
});
