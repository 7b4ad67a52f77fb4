/** @jsxImportSource hono/jsx */
import type { Hono } from "hono";
import type { AppDeps } from "../app-deps";
import type { RouteDef } from "../http/route";
import { SignInPage, LinkSignInPage } from "./layout";
import { auditPages } from "./pages/audit";
import { credentialPages } from "./pages/credentials";
import { jobPages } from "./pages/jobs";
import { schedulePages } from "./pages/schedules";
import { webhookPages } from "./pages/webhooks";
import { workflowPages } from "./pages/workflows";
import { createUi, crossSiteProblem, currentSession, html, readForm, redirect, refusal, sessionCookie, type UiContext } from "./server";
import { csrfMatches, endSession, SESSION_TTL_MS, signInWithKey, signInWithLink } from "./sessions";

/**
 * The web dashboard at /ui/: server-rendered pages (Hono JSX) over the API's
 * own route handlers, one small script for the live log, no CDN and nothing
 * fetched from elsewhere. Sign-in exchanges a tenant API key for a session
 * cookie; the key itself is never kept by the browser.
 */
export function mountDashboard(app: Hono, deps: AppDeps, routes: readonly RouteDef[], origin: (request: Request) => string): void {
  const mount = createUi(deps, routes, origin);
  const { ui } = mount;
  const signInPage = (c: UiContext, status: number, message?: string) =>
    html(c, <SignInPage flash={message ? { kind: "error", message } : undefined} />, status);

  ui.get("/ui", (c) => c.redirect("/ui/", 301));
  ui.get("/ui/", async (c) => c.redirect((await currentSession(deps, c)) ? "/ui/jobs" : "/ui/sign-in", 303));
  ui.get("/ui/sign-in", async (c) => ((await currentSession(deps, c)) ? c.redirect("/ui/jobs", 303) : signInPage(c, 200)));
  ui.post("/ui/sign-in", async (c) => {
    const problem = crossSiteProblem(c);
    if (problem) return refusal(403, problem, c.get("origin"));
    let key: string;
    try {
      key = (await readForm(c, deps)).get("api_key") ?? "";
    } catch (error) {
      return signInPage(c, 400, error instanceof Error ? error.message : "The form could not be read.");
    }
    if (!key.trim()) return signInPage(c, 400, "Enter an API key.");
    const session = await signInWithKey(deps, key);
    if (!session) return signInPage(c, 401, "That API key is not valid: it is unknown or revoked.");
    const response = redirect(c, "/ui/jobs");
    response.headers.append("set-cookie", sessionCookie(c.get("origin"), session.token, SESSION_TTL_MS / 1000));
    return response;
  });
  // The dev banner's one-time link: GET shows a button, POST spends the link
  // (so a link previewer or a cross-site page cannot sign anybody in).
  ui.get("/ui/sign-in/link", (c) => html(c, <LinkSignInPage token={c.req.query("token") ?? ""} />));
  ui.post("/ui/sign-in/link", async (c) => {
    const problem = crossSiteProblem(c);
    if (problem) return refusal(403, problem, c.get("origin"));
    const token = (await readForm(c, deps).catch(() => new URLSearchParams())).get("token") ?? "";
    const session = token ? await signInWithLink(deps, token) : undefined;
    if (!session) return signInPage(c, 401, "That sign-in link has been used or has expired. Sign in with the API key instead.");
    const response = redirect(c, "/ui/jobs");
    response.headers.append("set-cookie", sessionCookie(c.get("origin"), session.token, SESSION_TTL_MS / 1000));
    return response;
  });

  // Every other /ui page needs a live session; every change, its CSRF token.
  ui.use("/ui/*", async (c, next) => {
    if (c.req.path.startsWith("/ui/assets/")) return next();
    const session = await currentSession(deps, c);
    if (!session) {
      if (c.req.method === "GET" || c.req.method === "HEAD") {
        if (c.req.header("accept")?.includes("text/event-stream")) return refusal(401, "Not signed in.", c.get("origin"));
        return c.redirect("/ui/sign-in", 303);
      }
      return refusal(401, "You are not signed in (or your session has ended). Sign in again at /ui/sign-in.", c.get("origin"));
    }
    c.set("session", session);
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      const problem = crossSiteProblem(c);
      if (problem) return refusal(403, problem, c.get("origin"));
      let presented = c.req.header("x-csrf-token");
      if (!presented) {
        try {
          const form = readForm(c, deps);
          c.set("form", form);
          presented = (await form).get("_csrf") ?? undefined;
        } catch (error) {
          return refusal(400, error instanceof Error ? error.message : "The form could not be read.", c.get("origin"));
        }
      }
      if (!csrfMatches(session, presented)) {
        return refusal(403, "This form is missing its security token or the token is stale: reload the page and try again.", c.get("origin"));
      }
    }
    return next();
  });

  ui.post("/ui/sign-out", async (c) => {
    await endSession(deps, c.get("session"));
    const response = redirect(c, "/ui/sign-in");
    response.headers.append("set-cookie", sessionCookie(c.get("origin"), "", 0));
    return response;
  });

  jobPages(mount);
  workflowPages(mount);
  credentialPages(mount);
  schedulePages(mount);
  webhookPages(mount);
  auditPages(mount);

  ui.all("/ui/*", (c) => refusal(c.req.method === "GET" || c.req.method === "HEAD" ? 404 : 405, `Nothing at ${c.req.method} ${c.req.path}.`, c.get("origin")));
  app.route("/", ui as unknown as Hono);
}
