import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "node:crypto";

const NONCE_BYTES = 24;
const encoder = new TextEncoder();

/**
 * XChaCha20-Poly1305 with a fresh random 24-byte nonce per seal, stored in
 * front of the ciphertext. The associated data binds the ciphertext to where
 * it belongs: opened anywhere else, it fails authentication.
 */
export function seal(key: Uint8Array, plaintext: Uint8Array, associatedData: string): Uint8Array {
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  const ciphertext = xchacha20poly1305(key, nonce, encoder.encode(associatedData)).encrypt(plaintext);
  const out = new Uint8Array(NONCE_BYTES + ciphertext.length);
  out.set(nonce, 0);
  out.set(ciphertext, NONCE_BYTES);
  return out;
}

/** Returns undefined when the sealed bytes do not authenticate under this key and associated data. */
export function open(key: Uint8Array, sealed: Uint8Array, associatedData: string): Uint8Array | undefined {
  if (sealed.length < NONCE_BYTES + 16) return undefined;
  try {
    return xchacha20poly1305(key, sealed.subarray(0, NONCE_BYTES), encoder.encode(associatedData)).decrypt(
      sealed.subarray(NONCE_BYTES),
    );
  } catch {
    return undefined;
  }
}
