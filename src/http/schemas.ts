import { z } from "zod";

/** Shared field schemas, so every route validates an id or a name the same way. */

// The pattern is checked on the raw input (surrounding spaces and capitals
// allowed), so the OpenAPI document states exactly what the server accepts;
// the name is then trimmed and lowercased, which makes it ^[a-z0-9_]{1,128}$.
export const credentialName = z
  .string()
  .regex(/^\s*[A-Za-z0-9_]{1,128}\s*$/, "must be 1 to 128 characters of a-z, 0-9 and _ (it is trimmed and lowercased first)")
  .transform((name) => name.trim().toLowerCase())
  .describe("Credential name; trimmed and lowercased, it must then match ^[a-z0-9_]{1,128}$");

export const uuid = (what: string) => z.uuid(`must be a ${what} id (a UUID)`);

export const timestamp = z.string().describe("ISO 8601 UTC timestamp");

export const successMessage = { success: z.literal(true), message: z.string() };
