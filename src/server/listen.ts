import type { Hono } from "hono";
import { isBun } from "../runtime";

export interface Listening {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Serves the app: Bun.serve under Bun, @hono/node-server under Node. The
 * only runtime switch above the store.
 */
export async function listen(app: Hono, options: { hostname: string; port: number; maxBodyBytes: number }): Promise<Listening> {
  const host = (port: number) => {
    const h = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
    return `http://${h}:${port}`;
  };
  if (isBun) {
    const server = Bun.serve({
      fetch: app.fetch,
      hostname: options.hostname,
      port: options.port,
      // The app enforces the body limit itself with a proper error body; this
      // is only the backstop for bodies far past it.
      maxRequestBodySize: options.maxBodyBytes * 2 + 64 * 1024,
    });
    const port = server.port ?? options.port;
    return { url: host(port), port, stop: async () => void (await server.stop(true)) };
  }
  const { serve } = await import("@hono/node-server");
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: options.hostname, port: options.port }, (info) => {
      resolve({
        url: host(info.port),
        port: info.port,
        stop: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
    server.once("error", reject);
  });
}
