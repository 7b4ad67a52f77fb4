/**
 * A test site on 127.0.0.1 that needs a cookie: GET /whoami answers
 * "signed in as alice" only with the session cookie `sid` of SESSION, else
 * "signed out"; GET /set sets a cookie `fresh` of FRESH (what a site does
 * during a job: a rotated session, a consent cookie).
 */
export interface CookieSite {
  url: string;
  session: string;
  fresh: string;
  /** Cookie headers the site received, in order. */
  seen: string[];
  stop(): void;
}

export function startCookieSite(): CookieSite {
  const session = `sess-${crypto.randomUUID()}`;
  const fresh = `fresh-${crypto.randomUUID()}`;
  const seen: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const url = new URL(request.url);
      const cookies = request.headers.get("cookie") ?? "";
      seen.push(cookies);
      const html = (body: string, headers: Record<string, string> = {}) =>
        new Response(`<!doctype html><title>site</title><body><p id="who">${body}</p></body>`, { headers: { "content-type": "text/html", ...headers } });
      if (url.pathname === "/whoami") {
        const signedIn = cookies.split(/;\s*/).includes(`sid=${session}`);
        return html(signedIn ? "signed in as alice" : "signed out");
      }
      if (url.pathname === "/set") return html("set", { "set-cookie": `fresh=${fresh}; Path=/; Max-Age=3600` });
      return new Response("not found", { status: 404 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, session, fresh, seen, stop: () => server.stop(true) };
}

/** A storageState holding the site's session cookie. */
export function signedInState(site: CookieSite) {
  return {
    cookies: [{ name: "sid", value: site.session, domain: "127.0.0.1", path: "/", expires: -1, httpOnly: true, secure: false, sameSite: "Lax" }],
    origins: [],
  };
}
