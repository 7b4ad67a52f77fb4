import { afterAll, afterEach, beforeAll } from "bun:test";
import type { Server } from "bun";
import { startTestServer, type TestServer } from "../helpers";

/**
 * For a describe block of session tests: a 127.0.0.1 site answering `html`
 * for the remote browser to open, and test servers driving `chromiumPath`,
 * each closed (ending its sessions) after its test.
 */
export function sessionHarness(chromiumPath: string, html: string) {
  let site: Server<unknown>;
  const servers: TestServer[] = [];
  beforeAll(() => {
    site = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(html, { headers: { "content-type": "text/html" } }) });
  });
  afterAll(() => site.stop(true));
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
  });
  return {
    /** The site's URL (valid inside tests). */
    siteUrl: () => String(site.url),
    async start(env: Record<string, string> = {}): Promise<TestServer> {
      const server = await startTestServer({ env: { UNDERSTUDY_CHROMIUM_PATH: chromiumPath, ...env } });
      servers.push(server);
      return server;
    },
  };
}
