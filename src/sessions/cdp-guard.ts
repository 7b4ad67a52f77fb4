/**
 * Commands a session's client may not send as they are: those that reach the
 * server's files (a `file:` navigation, a file input set from a path on the
 * server, a drag of server files, an extension loaded from a path) or write
 * them (a download directory of the client's choosing). The workers' sandbox
 * is the boundary where there is one (it hides the data directory and keys
 * from the browser); this holds where there is none too.
 */
export type Guarded = { forward: string } | { refuse: string };

/** URL schemes a client may open: the web, and pages with no origin of their own. */
const OPENABLE = /^(https?|about|data):/i;

export function guardCdpCommand(text: string, downloadsDir: string): Guarded {
  let command: { id?: unknown; method?: unknown; params?: Record<string, any>; sessionId?: unknown };
  try {
    command = JSON.parse(text);
  } catch {
    // Not a command Chromium would run either: it answers the parse error itself.
    return { forward: text };
  }
  if (typeof command !== "object" || command === null || typeof command.method !== "string") return { forward: text };
  const { method } = command;
  const params = typeof command.params === "object" && command.params !== null ? command.params : {};
  const refuse = (why: string) => ({
    refuse: JSON.stringify({
      id: command.id,
      ...(command.sessionId === undefined ? {} : { sessionId: command.sessionId }),
      error: { code: -32000, message: `Understudy refused ${method}: ${why}` },
    }),
  });
  const urlOf = (value: unknown) => (typeof value === "string" ? value.trim() : "");
  switch (method) {
    case "Page.navigate":
    case "Target.createTarget":
      if (urlOf(params.url) !== "" && !OPENABLE.test(urlOf(params.url))) {
        return refuse("a remote session opens http(s), about: and data: URLs only (no file: URLs of the server).");
      }
      return { forward: text };
    case "Network.loadNetworkResource":
    case "Fetch.continueRequest":
    case "Network.continueInterceptedRequest":
      if (urlOf(params.url) !== "" && !/^https?:/i.test(urlOf(params.url))) return refuse("only http(s) URLs.");
      return { forward: text };
    case "DOM.setFileInputFiles":
      return refuse("paths name files on the server; set the files' contents instead (Playwright sends them when given buffers).");
    case "Input.dispatchDragEvent":
      if (Array.isArray(params.data?.files) && params.data.files.length > 0) return refuse("dragged files would be the server's.");
      return { forward: text };
    case "Browser.setDownloadBehavior":
    case "Page.setDownloadBehavior":
      // Playwright names a directory of the client's machine here: downloads go to the session's own directory instead.
      if (params.downloadPath === undefined) return { forward: text };
      return { forward: JSON.stringify({ ...command, params: { ...params, downloadPath: downloadsDir } }) };
    default:
      if (method.startsWith("Extensions.")) return refuse("extensions cannot be loaded into a remote session.");
      return { forward: text };
  }
}
