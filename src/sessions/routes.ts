import { z } from "zod";
import { AppError } from "../errors";
import { defineRoute } from "../http/route";
import { successMessage, timestamp, uuid } from "../http/schemas";
import { findJob } from "../jobs/store";
import { httpUrl, optional } from "../jobs/routes";
import { profileName } from "../profiles/state";
import { RECORDING_VIEW_PREFIX } from "./recording";

const sessionId = uuid("session");
const DEFAULT_TIMEOUT_SECONDS = 3600;
const MAX_TIMEOUT_SECONDS = 7200;
// --window-size: past this Chromium's headless window is not created.
const windowSide = z.number().int("must be a whole number").min(1, "must be at least 1 pixel").max(16_384, "must be at most 16384 pixels");

const sessionView = {
  session_id: z.uuid(),
  status: z.enum(["starting", "running", "closed"]).describe("running: cdp_url is usable; closed: see closed_reason"),
  cdp_url: z
    .string()
    .nullable()
    .describe("ws(s)://<this server>/v1/sessions/cdp/<session_id>/<token>: Chrome DevTools Protocol, for chromium.connectOverCDP; null unless running. The token is the credential of the URL: keep it secret."),
  live_view_url: z.null().describe("Always null: Understudy has no live view"),
  created_at: timestamp,
  expires_at: timestamp.describe("When the session ends at the latest (timeout_seconds after creation)"),
  closed_at: timestamp.nullable(),
  closed_reason: z.enum(["closed", "idle_timeout", "timeout", "browser_exited", "shutdown"]).nullable(),
};

export const sessionRoutes = [
  defineRoute({
    path: "/v1/sessions/create",
    summary:
      "Start a remote browser session: a Chromium of its own on this server, driven over CDP at cdp_url. Capped per tenant (UNDERSTUDY_SESSIONS_PER_TENANT) and in total (UNDERSTUDY_MAX_SESSIONS): 429 past either.",
    input: z.object({
      timeout_seconds: optional(
        z.number().int("must be a whole number").min(1, "must be at least 1").max(MAX_TIMEOUT_SECONDS, `must be at most ${MAX_TIMEOUT_SECONDS}`),
      ).describe(`The session's longest life (default ${DEFAULT_TIMEOUT_SECONDS}); it also ends after UNDERSTUDY_SESSION_IDLE_MS without CDP traffic`),
      start_url: optional(httpUrl).describe("Opened in the browser's first tab before cdp_url is returned"),
      viewport: optional(z.object({ width: windowSide, height: windowSide })),
      headless: optional(z.boolean()).describe("Accepted; the browser always runs headless on the server"),
      gpu: optional(z.boolean()).describe("Accepted and ignored"),
      disable_default_proxy: optional(z.boolean()).describe("Accepted and ignored: Understudy has no default proxy"),
      residential_proxy: z.unknown().optional().describe("Not offered: refused unless null"),
      profile_name: optional(profileName).describe(
        "A browser profile of this tenant to load (its cookies and localStorage) before start_url opens; 404 when it does not exist, unless profile_persist",
      ),
      profile_persist: optional(z.boolean()).describe(
        "With profile_name: when the session ends (close, idle or timeout, shutdown), its browser's state is saved as the profile's next version (the profile is made if it is new)",
      ),
    }),
    output: z.object({ success: z.literal(true), ...sessionView }),
    async handler({ deps, caller, origin }, input) {
      if (input.residential_proxy !== undefined && input.residential_proxy !== null) {
        throw new AppError("BAD_REQUEST", "Invalid input: residential_proxy is not offered by Understudy (it has no residential proxies).", {
          data: { issues: [{ path: ["residential_proxy"], message: "is not offered by Understudy" }] },
        });
      }
      if (input.profile_persist === true && input.profile_name === undefined) {
        throw new AppError("BAD_REQUEST", "Invalid input: profile_persist saves the session's state into a browser profile; name it with profile_name.", {
          data: { issues: [{ path: ["profile_persist"], message: "needs profile_name" }] },
        });
      }
      const view = await deps.sessions.create(
        caller.tenantId,
        {
          timeoutSeconds: input.timeout_seconds ?? DEFAULT_TIMEOUT_SECONDS,
          startUrl: input.start_url,
          viewport: input.viewport,
          profile: input.profile_name === undefined ? undefined : { name: input.profile_name, persist: input.profile_persist === true },
        },
        origin,
      );
      return { success: true as const, ...view };
    },
  }),
  defineRoute({
    path: "/v1/sessions/get",
    summary: "A session's status and cdp_url (poll until cdp_url is set).",
    input: z.object({ session_id: sessionId }),
    output: z.object(sessionView),
    async handler({ deps, caller }, input) {
      return deps.sessions.get(caller.tenantId, input.session_id);
    },
  }),
  defineRoute({
    path: "/v1/sessions/close",
    summary: "Close a session: its browser ends and its cdp_url is refused from then on. Closing a closed session succeeds.",
    input: z.object({ session_id: sessionId }),
    output: z.object(successMessage),
    async handler({ deps, caller }, input) {
      const wasOpen = await deps.sessions.close(caller.tenantId, input.session_id);
      return { success: true as const, message: wasOpen ? `Session ${input.session_id} closed.` : `Session ${input.session_id} was already closed.` };
    },
  }),
  defineRoute({
    path: "/v1/recordings/get",
    summary:
      "The recording of a session: recording_url opens, in a web browser and without the API key, a page of the screenshots taken while it ran (null when none were). Jobs have no recording (their screenshots are at /v1/jobs/artifacts).",
    input: z
      .object({ session_id: optional(sessionId), job_id: optional(uuid("job")) })
      .refine((input) => (input.session_id === undefined) !== (input.job_id === undefined), "give exactly one of session_id and job_id"),
    output: z.object({
      recording_url: z
        .string()
        .nullable()
        .describe("http(s)://<this server>/v1/recordings/view/<session_id>/<token>: an HTML page of the session's screenshots; the token is its only credential. Null when nothing was recorded."),
      recording_url_expires_at: timestamp.nullable().describe("When the recording is deleted (UNDERSTUDY_ARTIFACT_RETENTION_DAYS after its last screenshot); null when kept"),
    }),
    async handler({ deps, caller, origin }, input) {
      if (input.job_id !== undefined) {
        if (!(await findJob(deps.db, caller.tenantId, input.job_id))) throw new AppError("NOT_FOUND", `No job ${input.job_id}.`);
        return { recording_url: null, recording_url_expires_at: null };
      }
      const id = input.session_id!;
      const recorded = await deps.recordings?.expiry(caller.tenantId, id);
      if (!recorded) {
        // Another tenant's session is absent, exactly like one that never was.
        if (!deps.sessions.knows(caller.tenantId, id)) throw new AppError("NOT_FOUND", `No browser session ${id}.`);
        return { recording_url: null, recording_url_expires_at: null };
      }
      const token = await deps.recordings!.mintToken(caller.tenantId, id);
      return { recording_url: `${origin}${RECORDING_VIEW_PREFIX}${id}/${token}`, recording_url_expires_at: recorded.expiresAt };
    },
  }),
];
