/**
 * Libretto Cloud features Understudy does not offer, and every path the
 * libretto CLI (0.6.45) calls for them (API.md, "Routes Understudy does not
 * serve"). A request to one gets a 404 that says so, and what to do instead,
 * rather than the generic "No route". A path ending in `/*` stands for itself
 * and everything below it: the catalogue's paths carry names and ids, and
 * these namespaces hold nothing Understudy serves.
 *
 * These are not in `apiRoutes`: they take any method, need no API key (the
 * CLI's sign-in calls send none), and are no API of ours.
 */
interface UnservedFeature {
  /** What Understudy does not offer, as the object of "Understudy does not offer ...". */
  feature: string;
  /** Why, and what to do instead. */
  instead: string;
  paths: readonly string[];
}

export const UNSERVED_FEATURES: readonly UnservedFeature[] = [
  {
    // commands/billing.ts: /v1/billing/openPlansPage, /v1/billing/subscription
    feature: "billing",
    instead: "A self-hosted server has no plans, subscriptions or usage limits; there is nothing to pay for or to check.",
    paths: ["/v1/billing/*"],
  },
  {
    // commands/cloud-catalogue.ts: GET /v1/catalogue?..., GET /v1/catalogue/<tenant>/<workflow>,
    // POST /v1/catalogue/run/<tenant>/<workflow>, GET|POST /v1/catalogue/bookmarks, DELETE /v1/catalogue/bookmarks/<id>
    feature: "the workflow catalogue",
    instead:
      "There are no publicly shared workflows here: deploy the workflow to your tenant with `libretto cloud deploy`, then run it with `libretto cloud jobs create`.",
    paths: ["/v1/catalogue", "/v1/catalogue/*"],
  },
  {
    // commands/cloud-sms-numbers.ts: /v1/smsNumbers/{provision,list,update,release};
    // shared/workflow/claimSmsOtp.ts (a workflow's claimSmsOtp): /v1/smsOtp/claims/{create,get,expire}
    feature: "SMS numbers or SMS one-time codes",
    instead:
      "A workflow that needs a login code must get it another way, e.g. compute it from a TOTP secret stored as a credential (`libretto cloud credentials push`).",
    paths: ["/v1/smsNumbers/*", "/v1/smsOtp/*"],
  },
  {
    // commands/cloud-publishing.ts: /v1/workflows/share, /v1/workflows/unshare
    feature: "code sharing (publishing workflows to the catalogue)",
    instead: "A tenant's deployed workflows stay its own; to give another tenant a workflow, deploy it with that tenant's API key.",
    paths: ["/v1/workflows/share", "/v1/workflows/unshare"],
  },
  {
    // commands/auth.ts: /v1/auth/{cliLoginCreate,cliLoginPoll} and Better Auth's /api/auth/{get-session,
    // sign-out, organization/list, organization/invite-member, api-key/create, api-key/list, api-key/delete}
    feature: "hosted sign-up, sign-in, organisations or API-key management",
    instead:
      "Use an API key made by the server's operator with `understudy keys create --tenant NAME` (listed and revoked with `understudy keys list` and `understudy keys revoke`), and set it as LIBRETTO_API_KEY.",
    paths: ["/v1/auth/*", "/api/auth/*"],
  },
  {
    // core/telemetry.ts: every CLI command POSTs /v1/telemetry/recordCliEvent to LIBRETTO_API_URL (250 ms, errors ignored)
    feature: "CLI usage telemetry",
    instead: "Nothing the CLI sends here is recorded; LIBRETTO_TELEMETRY_DISABLED=1 stops the CLI from sending it.",
    paths: ["/v1/telemetry/*"],
  },
];

function matches(pattern: string, path: string): boolean {
  if (!pattern.endsWith("/*")) return path === pattern;
  const base = pattern.slice(0, -2);
  return path === base || path.startsWith(`${base}/`);
}

/** The 404 message for a path of an unserved feature, or undefined for any other path. */
export function unservedMessage(method: string, path: string): string | undefined {
  const found = UNSERVED_FEATURES.find((f) => f.paths.some((pattern) => matches(pattern, path)));
  if (!found) return undefined;
  return `Understudy does not offer ${found.feature} (${method} ${path} is a Libretto Cloud route). ${found.instead}`;
}
