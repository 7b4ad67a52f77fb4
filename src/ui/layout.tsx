/** @jsxImportSource hono/jsx */
import type { Child } from "hono/jsx";
import { raw } from "hono/html";
import { icon, script, stylesheet } from "./assets";

export const PAGES = [
  { path: "/ui/jobs", label: "Jobs" },
  { path: "/ui/workflows", label: "Workflows" },
  { path: "/ui/credentials", label: "Credentials" },
  { path: "/ui/schedules", label: "Schedules" },
  { path: "/ui/webhooks", label: "Webhooks" },
  { path: "/ui/audit", label: "Audit" },
] as const;

export interface Flash {
  kind: "ok" | "error";
  message: string;
}

/** What every signed-in page shows in its frame. */
export interface Frame {
  tenantName: string;
  csrfToken: string;
  /** Which top-level page this belongs to (for aria-current). */
  section: (typeof PAGES)[number]["path"];
  flash?: Flash | undefined;
}

function Document(props: { title: string; children: Child }) {
  return (
    <>
      {raw("<!DOCTYPE html>")}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="referrer" content="same-origin" />
          <title>{`${props.title} · Understudy`}</title>
          <link rel="icon" href={icon.path} type="image/svg+xml" />
          <link rel="stylesheet" href={stylesheet.path} />
          <script src={script.path} defer></script>
        </head>
        <body>{props.children}</body>
      </html>
    </>
  );
}

export function FlashMessage(props: { flash?: Flash | undefined }) {
  if (!props.flash) return null;
  return (
    <p class={`flash ${props.flash.kind}`} role={props.flash.kind === "error" ? "alert" : "status"}>
      {props.flash.message}
    </p>
  );
}

/** A form that changes something: POST, with the session's CSRF token. */
export function ActionForm(props: { action: string; csrf: string; class?: string; children: Child; label?: string }) {
  return (
    <form method="post" action={props.action} class={props.class} aria-label={props.label}>
      <input type="hidden" name="_csrf" value={props.csrf} />
      {props.children}
    </form>
  );
}

export function Page(props: { title: string; frame: Frame; children: Child }) {
  const { frame } = props;
  return (
    <Document title={props.title}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/ui/jobs">
          Understudy
        </a>
        <nav aria-label="Main">
          <ul>
            {PAGES.map((p) => (
              <li>
                <a href={p.path} aria-current={p.path === frame.section ? "page" : undefined}>
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span>
            Tenant <strong data-tenant>{frame.tenantName}</strong>
          </span>
          <ActionForm action="/ui/sign-out" csrf={frame.csrfToken} class="inline">
            <button type="submit" class="secondary">
              Sign out
            </button>
          </ActionForm>
        </div>
      </header>
      <main id="main">
        <h1>{props.title}</h1>
        <FlashMessage flash={frame.flash} />
        {props.children}
      </main>
    </Document>
  );
}

export function SignInPage(props: { flash?: Flash | undefined }) {
  return (
    <Document title="Sign in">
      <main id="main" class="signin">
        <h1>Sign in to Understudy</h1>
        <FlashMessage flash={props.flash} />
        <form method="post" action="/ui/sign-in" class="stack">
          <label>
            API key
            <span class="hint">A tenant API key (understudy tenants create, or the dev banner). It is exchanged for a session and not kept in the browser.</span>
            <input type="password" name="api_key" autocomplete="off" required spellcheck={false} autofocus />
          </label>
          <div>
            <button type="submit">Sign in</button>
          </div>
        </form>
      </main>
    </Document>
  );
}

/** A timestamp as a person reads it (UTC), with the exact value for machines. */
export function When(props: { at: string | null | undefined }) {
  // The epoch is how the API dates what has no date (an operator's workflow file).
  if (!props.at || props.at.startsWith("1970-01-01T00:00:00")) return <span class="muted">—</span>;
  return <time datetime={props.at}>{props.at.replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC")}</time>;
}

export function Badge(props: { value: string }) {
  return <span class={`badge ${props.value}`}>{props.value.replace(/_/g, " ")}</span>;
}

export function LinkSignInPage(props: { token: string }) {
  return (
    <Document title="Sign in">
      <main id="main" class="signin">
        <h1>Sign in to Understudy</h1>
        <p>This one-time link signs this browser in to the dev tenant. It works once.</p>
        <form method="post" action="/ui/sign-in/link" class="stack">
          <input type="hidden" name="token" value={props.token} />
          <div>
            <button type="submit">Continue to the dashboard</button>
          </div>
        </form>
        <p>
          <a href="/ui/sign-in">Sign in with an API key instead</a>
        </p>
      </main>
    </Document>
  );
}

/** Links between the pages of a long list: back to the newest page, and on to older ones. */
export function Pager(props: { label: string; newest?: { href: string; text: string } | undefined; older?: { href: string; text: string } | undefined }) {
  if (!props.newest && !props.older) return null;
  return (
    <nav aria-label={props.label} class="pager">
      <ul>
        {props.newest ? (
          <li>
            <a href={props.newest.href}>{props.newest.text}</a>
          </li>
        ) : null}
        {props.older ? (
          <li>
            <a href={props.older.href} rel="next">
              {props.older.text}
            </a>
          </li>
        ) : null}
      </ul>
    </nav>
  );
}
