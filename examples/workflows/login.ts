import { workflow } from "libretto";
import { z } from "zod";

// Logs in to a portal with injected credentials. The values arrive in
// input.credentials and are never logged: the job log would redact them
// anyway, but a workflow should not lean on that.
export default workflow("portal-login", {
  credentials: ["username", "password"],
  input: z.object({
    loginUrl: z.string().url(),
  }),
  async handler(ctx, input) {
    const { page, log } = ctx;
    // A declared credential that is not stored is simply absent: say which, plainly.
    const { username, password } = input.credentials ?? {};
    if (!username || !password) {
      throw new Error("Store the username and password credentials first (libretto cloud credentials push, or /v1/credentials/upsert).");
    }

    log.info("Opening the login page");
    await page.goto(input.loginUrl);
    await page.fill("#username", username);
    await page.fill("#password", password);

    log.info("Submitting the login form");
    // Listen before clicking, so a fast response cannot load unseen.
    const loaded = page.waitForEvent("load");
    await page.click("button[type=submit]");
    await loaded;

    const loggedIn = (await page.getByText("Welcome").count()) > 0;
    return { loggedIn, title: await page.title() };
  },
});
