/** @jsxImportSource hono/jsx */
import { Hono, type Context } from "hono";
import { getCookie } from "hono/cookie";
import type { JSX } from "hono/jsx/jsx-runtime";
import type { AppDeps } from "../app-deps";
import { AppError } from "../errors";
import { readBody } from "../http/envelope";
import { toAppError } from "../http/failure";
import type { RouteDef } from "../http/route";
import { accountRequest } from "../http/account";
import { assets } from "./assets";
import type { Flash, Frame } from "./layout";
import { findSession, type DashboardSession } from "./sessions";

/**
 * The dashboard's plumbing: sessions from the cookie, CSRF checks, security
 * headers, the request log, and `call`, which runs an API route's own
 * handler (its validation, tenant scoping and audit) for a page.
 */

export type UiSession = DashboardSession;

export type UiEnv = { Variables: { session: UiSession; requestId: string; origin: string; form: Promise<URLSearchParams> | undefined } };
export type UiContext = Context<UiEnv>;

/** What a page's handler gets. */
export interface UiRequest {
  c: UiContext;
  deps: AppDeps;
  session: UiSession;
  /** Runs the API route at `path` as this session's tenant; throws its AppError (4xx) as the API would. */
  call<T = any>(path: string, input: unknown): Promise<T>;
  /** The frame of a page of this section, with the flash message waiting for it (if any). */
  frame(section: Frame["section"], flash?: Flash): Frame;
  /** The submitted form (already checked for its CSRF token). */
  form(): Promise<URLSearchParams>;
  /** The status a page is sent with: 200, or the 4xx of a problem the page itself shows (a bad filter). */
  status: number;
}

export const SESSION_COOKIE = "understudy_session";
/** Behind TLS the cookie takes the __Host- prefix: Secure, Path=/, no Domain, so no other host or path can set it. */
export const SECURE_SESSION_COOKIE = "__Host-understudy_session";
/** The message a redirect carries to the next page; __Host- prefixed behind TLS, like the session's. */
const flashCookie = (origin: string, value: string, maxAge: number) =>
  isSecure(origin)
    ? `__Host-understudy_flash=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; Secure; SameSite=Strict`
    : `understudy_flash=${value}; Path=/ui; Max-Age=${maxAge}; HttpOnly; SameSite=Strict`;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

export function securityHeaders(secure: boolean): Record<string, string> {
  return {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    // same-origin, not no-referrer: Chromium sends "Origin: null" on a form POST under no-referrer, which the CSRF check refuses.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ...(secure ? { "strict-transport-security": "max-age=31536000" } : {}),
  };
}

const isSecure = (origin: string) => origin.startsWith("https:");

export function sessionCookie(origin: string, token: string, maxAgeSeconds: number): string {
  return isSecure(origin)
    ? `${SECURE_SESSION_COOKIE}=${token}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; Secure; SameSite=Strict`
    : `${SESSION_COOKIE}=${token}; Path=/ui; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict`;
}

/** The signed-in session of this request (one query: the session, its key not revoked, its tenant's name). */
export function currentSession(deps: AppDeps, c: UiContext): Promise<UiSession | undefined> {
  return findSession(deps, getCookie(c, isSecure(c.get("origin")) ? SECURE_SESSION_COOKIE : SESSION_COOKIE));
}

/** Redirects after a change (POST, then GET), carrying a short message to the next page in a cookie. */
export function redirect(c: UiContext, to: string, flash?: Flash): Response {
  const headers = new Headers({ location: to });
  if (flash) {
    const value = encodeURIComponent(JSON.stringify(flash));
    headers.append("set-cookie", flashCookie(c.get("origin"), value, 60));
  }
  return new Response(null, { status: 303, headers });
}

function takeFlash(c: UiContext): Flash | undefined {
  // getCookie decodes the value (redirect encoded it).
  const value = getCookie(c, isSecure(c.get("origin")) ? "__Host-understudy_flash" : "understudy_flash");
  if (!value) return undefined;
  c.header("set-cookie", flashCookie(c.get("origin"), "", 0), { append: true });
  try {
    const parsed = JSON.parse(value) as Flash;
    if ((parsed.kind === "ok" || parsed.kind === "error") && typeof parsed.message === "string") return { kind: parsed.kind, message: parsed.message.slice(0, 2000) };
  } catch {
    // a mangled cookie shows nothing
  }
  return undefined;
}

export function html(c: UiContext, page: JSX.Element, status = 200): Response | Promise<Response> {
  c.header("cache-control", "no-store");
  return c.html(page, status as 200);
}

/** A plain page for a refusal that has no page of its own (403, 404, 415). */
export function refusal(status: number, message: string, origin: string): Response {
  const body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Refused · Understudy</title></head><body><main><h1>Refused</h1><p>${escapeHtml(message)}</p><p><a href="/ui/">Back to the dashboard</a></p></main></body></html>`;
  return new Response(body, { status, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", ...securityHeaders(isSecure(origin)) } });
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * A state-changing request must come from our own pages: never from another
 * site (Sec-Fetch-Site, Origin), and with the session's CSRF token (a form
 * field or the x-csrf-token header). Returns why it is refused, or undefined.
 */
export function crossSiteProblem(c: UiContext): string | undefined {
  const site = c.req.header("sec-fetch-site");
  if (site && site !== "same-origin" && site !== "none") return "This request came from another site; the dashboard only takes changes from its own pages.";
  const origin = c.req.header("origin");
  if (origin && origin !== c.get("origin")) return "This request came from another origin; the dashboard only takes changes from its own pages.";
  return undefined;
}

export type Render = (req: UiRequest, flash?: Flash) => Promise<JSX.Element>;

export interface Mount {
  ui: Hono<UiEnv>;
  /** A signed-in page (GET). */
  page(path: string, render: Render): void;
  /**
   * A signed-in change (POST, CSRF-checked). `run` answers (mostly a
   * redirect); when it throws an AppError, the page `back` renders with the
   * error's message and status.
   */
  action(path: string, back: Render, run: (req: UiRequest) => Promise<Response>): void;
  /** Builds the UiRequest for a signed-in request. */
  request(c: UiContext): UiRequest;
}

export function createUi(deps: AppDeps, routes: readonly RouteDef[], origin: (request: Request) => string): Mount {
  const byPath = new Map(routes.map((r) => [r.path as string, r]));
  const ui = new Hono<UiEnv>();

  // Every /ui response: the request log, metrics and the security headers.
  ui.use("/ui/*", async (c, next) => {
    const started = performance.now();
    const requestId = crypto.randomUUID();
    c.set("requestId", requestId);
    c.set("origin", origin(c.req.raw));
    await next();
    for (const [name, value] of Object.entries(securityHeaders(isSecure(c.get("origin"))))) {
      if (!c.res.headers.has(name)) c.res.headers.set(name, value);
    }
    c.res.headers.set("x-request-id", requestId);
    // The path only: a query string may hold a sign-in link's token.
    accountRequest(deps, { route: "/ui", method: c.req.method, path: c.req.path, status: c.res.status, started, requestId, tenantId: c.get("session")?.tenantId ?? null });
  });

  ui.get("/ui/assets/:name", (c) => {
    const found = assets.get(c.req.path);
    if (!found) return refusal(404, "No such file.", c.get("origin"));
    const gzip = /\bgzip\b/.test(c.req.header("accept-encoding") ?? "");
    const body = gzip ? found.gzip : found.body;
    return new Response(new Uint8Array(body), {
      headers: {
        "content-type": found.contentType,
        "content-length": String(body.length),
        "cache-control": "public, max-age=31536000, immutable",
        vary: "Accept-Encoding",
        ...(gzip ? { "content-encoding": "gzip" } : {}),
      },
    });
  });

  const request = (c: UiContext): UiRequest => {
    const session = c.get("session");
    let flash: Flash | undefined | null = null;
    return {
      c,
      deps,
      session,
      async call(path, input) {
        const route = byPath.get(path);
        if (!route) throw new Error(`no API route ${path}`);
        const parsed = route.input.safeParse(input);
        if (!parsed.success) {
          const summary = parsed.error.issues
            .slice(0, 5)
            .map((i) => `${i.path.length ? i.path.join(".") : "input"} ${i.message}`)
            .join("; ");
          throw new AppError("BAD_REQUEST", `Invalid input: ${summary}.`);
        }
        return (await route.handler({ deps, caller: session, requestId: c.get("requestId"), origin: c.get("origin") }, parsed.data)) as never;
      },
      frame(section, given) {
        if (flash === null) flash = takeFlash(c);
        return { tenantName: session.tenantName, csrfToken: session.csrfToken, section, flash: given ?? flash };
      },
      form() {
        let form = c.get("form");
        if (!form) c.set("form", (form = readForm(c, deps)));
        return form;
      },
      status: 200,
    };
  };
  const failed = (c: UiContext, thrown: unknown): AppError => toAppError(thrown, deps, c.get("requestId"));
  return {
    ui,
    request,
    page(path, render) {
      ui.get(path, async (c) => {
        const req = request(c);
        try {
          const page = await render(req);
          return await html(c, page, req.status);
        } catch (thrown) {
          const error = failed(c, thrown);
          return refusal(error.status, error.message, c.get("origin"));
        }
      });
    },
    action(path, back, run) {
      ui.post(path, async (c) => {
        const req = request(c);
        try {
          return await run(req);
        } catch (thrown) {
          const error = failed(c, thrown);
          try {
            return await html(c, await back(req, { kind: "error", message: error.message }), error.status);
          } catch {
            return refusal(error.status, error.message, c.get("origin"));
          }
        }
      });
    },
  };
}

export async function readForm(c: Context, deps: AppDeps): Promise<URLSearchParams> {
  const type = c.req.header("content-type") ?? "";
  if (!type.startsWith("application/x-www-form-urlencoded")) {
    throw new AppError("BAD_REQUEST", "The dashboard takes forms (application/x-www-form-urlencoded); use the API (/v1/...) for JSON.");
  }
  return new URLSearchParams(await readBody(c.req.raw, deps.config.maxBodyBytes));
}
