import { z } from "zod";

/** Shared field schemas, so every route validates an id or a name the same way. */

export const credentialName = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z0-9_]{1,128}$/, "must be 1 to 128 characters of a-z, 0-9 and _ (it is trimmed and lowercased first)")
  .describe("Credential name; trimmed and lowercased, then ^[a-z0-9_]{1,128}$");

export const uuid = (what: string) => z.uuid(`must be a ${what} id (a UUID)`);

export const timestamp = z.string().describe("ISO 8601 UTC timestamp");

export const successMessage = { success: z.literal(true), message: z.string() };
