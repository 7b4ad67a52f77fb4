import { setTimeout as sleep } from "node:timers/promises";
import type { StorageState } from "../profiles/state";
import { CdpCaller, within, type Connect } from "./cdp-caller";

/**
 * A browser profile's state (Playwright's storageState) in and out of a
 * session's browser, over raw CDP in its default context: cookies through
 * Storage.setCookies / getCookies, each origin's localStorage in a scratch
 * tab whose navigations this server answers itself with an empty page
 * (Fetch.fulfillRequest), so the sites are never contacted.
 */

/** Origins whose localStorage is read or written at most. */
const MAX_ORIGINS = 100;

type Cookie = StorageState["cookies"][number];

interface CdpCookie {
  name: string;
  value: string;
  domain: string;
  path: string;
  expires: number;
  httpOnly: boolean;
  secure: boolean;
  session?: boolean;
  sameSite?: "Strict" | "Lax" | "None";
}

/** Loads the state into the browser; throws when it could not within timeoutMs. */
export async function applyStorageState(connect: Connect, state: StorageState, timeoutMs: number): Promise<void> {
  await withinOrThrow(connect, timeoutMs, "the browser did not take the profile's state", async (cdp) => {
    if (state.cookies.length) await cdp.call("Storage.setCookies", { cookies: state.cookies.map(toCdpCookie) });
    const origins = state.origins.filter((o) => o.localStorage.length).slice(0, MAX_ORIGINS);
    if (!origins.length) return;
    await inScratchTab(cdp, async (visit) => {
      for (const { origin, localStorage } of origins) {
        await visit(origin, `(() => { for (const [k, v] of ${JSON.stringify(localStorage.map((e) => [e.name, e.value]))}) localStorage.setItem(k, v); return true; })()`);
      }
    });
  });
}

/** Runs work on a DevTools connection of its own; throws `${what} within N s` when it does not end in time. */
async function withinOrThrow(connect: Connect, timeoutMs: number, what: string, work: (cdp: CdpCaller) => Promise<void>): Promise<void> {
  const cdp = new CdpCaller(connect);
  try {
    const done = await within(timeoutMs, work(cdp).then(() => true));
    if (!done) throw new Error(`${what} within ${timeoutMs / 1000} s`);
  } finally {
    cdp.close();
  }
}

/**
 * The browser's state: its cookies, and the localStorage of `origins` and of
 * the origins its pages show. Undefined when it could not be read within timeoutMs.
 */
export async function readStorageState(connect: Connect, origins: readonly string[], timeoutMs: number): Promise<StorageState | undefined> {
  const cdp = new CdpCaller(connect);
  try {
    return await within(
      timeoutMs,
      (async () => {
        const { cookies } = await cdp.call<{ cookies: CdpCookie[] }>("Storage.getCookies");
        const { targetInfos } = await cdp.call<{ targetInfos: { type: string; url: string }[] }>("Target.getTargets");
        const seen = new Set(origins);
        for (const target of targetInfos) {
          if (target.type !== "page" || !/^https?:/i.test(target.url)) continue;
          try {
            seen.add(new URL(target.url).origin);
          } catch {
            // Not a URL with an origin.
          }
        }
        const result: StorageState = { cookies: cookies.map(fromCdpCookie), origins: [] };
        await inScratchTab(cdp, async (visit) => {
          for (const origin of [...seen].slice(0, MAX_ORIGINS)) {
            const entries = (await visit(origin, "Object.entries(localStorage).map(([name, value]) => ({ name, value }))")) as { name: string; value: string }[];
            if (entries.length) result.origins.push({ origin, localStorage: entries });
          }
        });
        return result;
      })(),
    );
  } finally {
    cdp.close();
  }
}

/** Opens url in the browser's first tab (as a start URL given at launch would be); throws when it could not within timeoutMs. */
export async function openFirstPage(connect: Connect, url: string, timeoutMs: number): Promise<void> {
  await withinOrThrow(connect, timeoutMs, "the start page did not open", async (cdp) => {
    const { targetInfos } = await cdp.call<{ targetInfos: { targetId: string; type: string }[] }>("Target.getTargets");
    const first = targetInfos.find((t) => t.type === "page");
    if (!first) {
      await cdp.call("Target.createTarget", { url });
      return;
    }
    const { sessionId } = await cdp.call<{ sessionId: string }>("Target.attachToTarget", { targetId: first.targetId, flatten: true });
    await cdp.call("Page.navigate", { url }, sessionId);
    await cdp.call("Target.detachFromTarget", { sessionId }).catch(() => {});
  });
}

/**
 * Runs `work` with a background tab of the default context in which
 * visit(origin, expression) opens the origin (answered by an empty page from
 * here) and evaluates the expression there; the tab is closed afterwards.
 */
async function inScratchTab(cdp: CdpCaller, work: (visit: (origin: string, expression: string) => Promise<unknown>) => Promise<void>): Promise<void> {
  const { targetId } = await cdp.call<{ targetId: string }>("Target.createTarget", { url: "about:blank", background: true });
  try {
    const { sessionId } = await cdp.call<{ sessionId: string }>("Target.attachToTarget", { targetId, flatten: true });
    const stop = cdp.on((event) => {
      if (event.method !== "Fetch.requestPaused" || event.sessionId !== sessionId) return;
      void cdp
        .call(
          "Fetch.fulfillRequest",
          { requestId: event.params.requestId, responseCode: 200, responseHeaders: [{ name: "content-type", value: "text/html" }], body: "" },
          sessionId,
        )
        .catch(() => {});
    });
    try {
      await cdp.call("Fetch.enable", { patterns: [{ urlPattern: "*" }] }, sessionId);
      await work(async (given, expression) => {
        const origin = new URL(given).origin;
        await cdp.call("Page.navigate", { url: `${origin}/` }, sessionId);
        // Until the new document is the one evaluated in (the navigation commits before its context exists).
        for (let attempt = 0; attempt < 100; attempt++) {
          const { result, exceptionDetails } = await cdp.call<{ result: { value?: unknown }; exceptionDetails?: unknown }>(
            "Runtime.evaluate",
            { expression: `location.origin === ${JSON.stringify(origin)} ? [${expression}] : null`, returnByValue: true },
            sessionId,
          );
          if (exceptionDetails) throw new Error(`localStorage of ${origin} could not be reached`);
          if (Array.isArray(result.value)) return result.value[0];
          await sleep(20);
        }
        throw new Error(`the scratch tab did not open ${origin}`);
      });
    } finally {
      stop();
    }
  } finally {
    await cdp.call("Target.closeTarget", { targetId }).catch(() => {});
  }
}

/** The fields Playwright's storageState and CDP name and mean alike. */
function commonFields(cookie: Omit<Cookie, "expires" | "sameSite">) {
  const { name, value, domain, path, httpOnly, secure } = cookie;
  return { name, value, domain, path, httpOnly, secure };
}

function toCdpCookie(cookie: Cookie): object {
  return { ...commonFields(cookie), ...(cookie.expires > 0 ? { expires: cookie.expires } : {}), sameSite: cookie.sameSite };
}

function fromCdpCookie(cookie: CdpCookie): Cookie {
  return { ...commonFields(cookie), expires: cookie.session || !(cookie.expires > 0) ? -1 : cookie.expires, sameSite: cookie.sameSite ?? "Lax" };
}
