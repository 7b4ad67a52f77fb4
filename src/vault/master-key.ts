import { createHash, randomBytes } from "node:crypto";

export const MASTER_KEY_BYTES = 32;

export type DecodedKey = { ok: true; key: Uint8Array } | { ok: false; problem: string };

/** Accepts standard or URL-safe base64; the key must be exactly 32 bytes. Never echoes the input. */
export function decodeMasterKey(text: string): DecodedKey {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    return { ok: false, problem: "is not base64 (it must be 32 random bytes in base64, 44 characters)" };
  }
  const key = new Uint8Array(Buffer.from(trimmed.replace(/-/g, "+").replace(/_/g, "/"), "base64"));
  if (key.length !== MASTER_KEY_BYTES) {
    return {
      ok: false,
      problem: `decodes to ${key.length} bytes; it must be exactly ${MASTER_KEY_BYTES} random bytes in base64 (44 characters)`,
    };
  }
  return { ok: true, key };
}

export function generateMasterKey(): string {
  return randomBytes(MASTER_KEY_BYTES).toString("base64");
}

/**
 * A short public name for a master key, stored beside what it wraps so a
 * wrong key can be named at start. One-way: it reveals nothing of the key.
 */
export function masterKeyId(key: Uint8Array): string {
  return `mk_${createHash("sha256").update("understudy master key id\0").update(key).digest("hex").slice(0, 16)}`;
}

export interface MasterKey {
  readonly id: string;
  readonly key: Uint8Array;
}

export function toMasterKey(key: Uint8Array): MasterKey {
  return { id: masterKeyId(key), key };
}
