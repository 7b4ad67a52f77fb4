import { z } from "zod";
import { AppError } from "../errors";
import type { Vault } from "../vault/vault";

/**
 * List cursors (`cursor`, `pageToken`). A cursor is the position after the
 * last row of a page, sealed by the vault to the tenant and the list it was
 * given out for: the client can neither read it nor use it elsewhere, and a
 * cursor that is damaged, made up, or another tenant's or list's is a 400.
 *
 * A position is the tenant's own data wherever the list allows it (the last
 * row's public id, name or version), never a counter shared by all tenants,
 * so a cursor says nothing of what other tenants did. Job log lines have no
 * public id: their position is the row number, which the seal hides.
 */

const FORMAT = 1;
const MAX_CHARACTERS = 256;

/** The input field of a cursor (max 256 characters; a credential name is the longest position). */
export const cursorField = z
  .string()
  .max(MAX_CHARACTERS, `must be at most ${MAX_CHARACTERS} characters`)
  .describe("Opaque: the next_cursor of the previous page, given out for this list and tenant");

export function issueCursor(vault: Vault, tenantId: string, list: string, position: Uint8Array): string {
  const sealed = vault.sealCursor(tenantId, list, Buffer.concat([Uint8Array.of(FORMAT), position]));
  return Buffer.from(sealed).toString("base64url");
}

/**
 * The position a cursor holds, decoded by `decode`; a 400 naming `field` for
 * a cursor this tenant was not given by this list (or one `decode` refuses).
 */
export function readCursor<T>(
  vault: Vault,
  tenantId: string,
  list: string,
  field: string,
  cursor: string,
  decode: (position: Uint8Array) => T | undefined,
): T {
  const sealed = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, "base64url") : undefined;
  // Only the canonical base64url spelling is accepted: no two strings are the same cursor.
  const opened = sealed && sealed.toString("base64url") === cursor ? vault.openCursor(tenantId, list, sealed) : undefined;
  const position = opened && opened[0] === FORMAT ? decode(opened.subarray(1)) : undefined;
  if (position === undefined) {
    throw new AppError(
      "BAD_REQUEST",
      `Invalid input: ${field} was not given out by ${list} for this API key's tenant (it is damaged, made up, or another list's or tenant's); start again without it.`,
      { data: { issues: [{ path: [field], message: `is not a ${field} that ${list} gave out to this tenant` }] } },
    );
  }
  return position;
}

/** A 400 for a cursor whose row is gone (a list whose rows can be deleted). */
export function staleCursor(field: string, what: string): AppError {
  return new AppError("BAD_REQUEST", `Invalid input: ${field} points at ${what} that no longer exists; start again without it.`, {
    data: { issues: [{ path: [field], message: `points at ${what} that no longer exists` }] },
  });
}

// Position encodings.

export function uuidPosition(id: string): Uint8Array {
  return Buffer.from(id.replaceAll("-", ""), "hex");
}

export function readUuidPosition(bytes: Uint8Array): string | undefined {
  if (bytes.length !== 16) return undefined;
  const hex = Buffer.from(bytes).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A non-negative integer in 8 fixed bytes, so that a cursor's length says nothing of the number. */
export function integerPosition(n: number): Uint8Array {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(n));
  return bytes;
}

export function readIntegerPosition(bytes: Uint8Array): number | undefined {
  if (bytes.length !== 8) return undefined;
  const n = Buffer.from(bytes).readBigUInt64BE();
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined;
}

export function textPosition(text: string): Uint8Array {
  return Buffer.from(text, "utf8");
}

export function readTextPosition(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
