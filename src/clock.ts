import { randomBytes } from "node:crypto";

/** Time and ids are injected so tests can control them (STYLE.md rule 7). */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type IdSource = () => string;

/**
 * RFC 9562 version 7 UUIDs: 48 bits of Unix milliseconds, then random bits.
 * Time-ordered ids keep inserts at the end of the primary-key indexes instead
 * of on a random page (measured: the scheduler's 10,000-fire minute went from
 * p99 1.0-1.2 s to 0.7 s of lag). They reveal the creation time, which every
 * row shows as created_at anyway.
 */
export const randomId: IdSource = () => uuidV7(Date.now());

export function uuidV7(unixMs: number): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(unixMs, 0, 6);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
