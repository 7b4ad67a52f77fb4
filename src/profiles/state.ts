import { z } from "zod";

/**
 * A browser profile's state: what Playwright's `context.storageState()`
 * gives and `storageState` / `setStorageState` take (cookies, and the
 * localStorage of each origin). Fields Playwright fills in on export may be
 * left out of an upload: they get Playwright's defaults. Other keys are
 * dropped.
 */
const cookie = z.object({
  name: z.string().min(1, "must not be empty"),
  value: z.string(),
  domain: z.string().min(1, "must not be empty"),
  path: z.string().default("/"),
  expires: z.number().default(-1).describe("Unix time in seconds; -1 for a session cookie"),
  httpOnly: z.boolean().default(false),
  secure: z.boolean().default(false),
  sameSite: z.enum(["Strict", "Lax", "None"]).default("Lax"),
});

const origin = z.object({
  origin: z.string().regex(/^https?:\/\/[^/\s]+$/, "must be an origin such as https://example.com"),
  localStorage: z.array(z.object({ name: z.string(), value: z.string() })).default([]),
});

export const storageState = z
  .object({
    cookies: z.array(cookie).default([]),
    origins: z.array(origin).default([]),
  })
  .describe("A Playwright storageState object: {cookies: [...], origins: [{origin, localStorage: [{name, value}]}]}");

export type StorageState = z.output<typeof storageState>;

/** A profile name as the libretto CLI sends it: trimmed, letters, digits, dots, underscores and dashes; case is kept. */
export const profileName = z
  .string()
  .regex(/^\s*[A-Za-z0-9._-]{1,128}\s*$/, "must be 1 to 128 characters of letters, digits, '.', '_' and '-' (it is trimmed first)")
  .transform((name) => name.trim())
  .describe("Browser profile name; trimmed, it must then match ^[A-Za-z0-9._-]{1,128}$ (case is kept)");

/** The name a workflow declares, normalised like profileName; undefined when it is not a valid name. */
export function normaliseProfileName(name: string): string | undefined {
  const parsed = profileName.safeParse(name);
  return parsed.success ? parsed.data : undefined;
}

/**
 * The values of a state to keep out of a job's logs, error and result: its
 * cookie values and localStorage values of 8 characters or more (session
 * tokens; shorter ones such as "1", "true" or "en-US" would blank ordinary
 * words), localStorage values only up to 4 KiB (larger ones are data, not tokens).
 */
export function stateSecrets(state: StorageState): { name: string; value: string }[] {
  const worth = (value: string, max = Number.POSITIVE_INFINITY) => value.trim().length >= 8 && value.length <= max;
  return [
    ...state.cookies.filter((c) => worth(c.value)).map((c) => ({ name: `profile_cookie_${c.name}`, value: c.value })),
    ...state.origins.flatMap((o) => o.localStorage.filter((e) => worth(e.value, 4096)).map((e) => ({ name: `profile_storage_${e.name}`, value: e.value }))),
  ];
}
