import type { TestServer } from "../helpers";

/** A signed-in dashboard client over plain HTTP (no browser): the cookie and the CSRF token of one session. */
export interface UiClient {
  cookie: string;
  csrf: string;
  /** GET a dashboard path with the session cookie; the body as text. */
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; text: string }>;
  /** POST a form (the CSRF token added unless `csrf: false`); redirects are not followed. */
  post(path: string, fields: Record<string, string>, options?: { csrf?: boolean; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; text: string; location: string | null }>;
}

export async function signIn(server: Pick<TestServer, "url">, apiKey: string): Promise<UiClient> {
  const response = await fetch(`${server.url}/ui/sign-in`, { method: "POST", body: new URLSearchParams({ api_key: apiKey }), redirect: "manual" });
  if (response.status !== 303) throw new Error(`sign-in answered ${response.status}: ${await response.text()}`);
  const cookie = response.headers.getSetCookie().find((c) => c.startsWith("understudy_session="))!.split(";")[0]!;
  const page = await (await fetch(`${server.url}/ui/credentials`, { headers: { cookie } })).text();
  const csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1];
  if (!csrf) throw new Error("no CSRF token on the credentials page");
  const client: UiClient = {
    cookie,
    csrf,
    async get(path, headers = {}) {
      const r = await fetch(`${server.url}${path}`, { headers: { cookie, ...headers }, redirect: "manual" });
      return { status: r.status, headers: r.headers, text: await r.text() };
    },
    async post(path, fields, options = {}) {
      const body = new URLSearchParams(options.csrf === false ? fields : { _csrf: csrf, ...fields });
      const r = await fetch(`${server.url}${path}`, { method: "POST", headers: { cookie, ...options.headers }, body, redirect: "manual" });
      return { status: r.status, headers: r.headers, text: await r.text(), location: r.headers.get("location") };
    },
  };
  return client;
}

/** The text of a flash message a redirect carried, read by following it once. */
export async function followFlash(server: Pick<TestServer, "url">, client: UiClient, response: { headers: Headers; location: string | null }): Promise<string | undefined> {
  const flash = response.headers.getSetCookie().find((c) => c.startsWith("understudy_flash="))?.split(";")[0];
  const r = await fetch(`${server.url}${response.location}`, { headers: { cookie: flash ? `${client.cookie}; ${flash}` : client.cookie } });
  const text = await r.text();
  return /class="flash (?:ok|error)"[^>]*>([^<]*)</.exec(text)?.[1];
}
