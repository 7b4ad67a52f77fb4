import { gcmsiv } from "@noble/ciphers/aes.js";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdfSync, randomBytes } from "node:crypto";

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

// AES-GCM-SIV (RFC 8452) resists nonce reuse: with a fixed nonce it is
// deterministic encryption, which reveals only whether two sealed values are
// equal. Used for list cursors, where equal positions may well look equal.
const FIXED_NONCE = new Uint8Array(12);

/** Deterministic sealing: the same key, plaintext and associated data always give the same bytes. */
export function sealDeterministic(key: Uint8Array, plaintext: Uint8Array, associatedData: string): Uint8Array {
  return gcmsiv(key, FIXED_NONCE, encoder.encode(associatedData)).encrypt(plaintext);
}

/** Returns undefined when the bytes do not authenticate under this key and associated data. */
export function openDeterministic(key: Uint8Array, sealed: Uint8Array, associatedData: string): Uint8Array | undefined {
  if (sealed.length < 16) return undefined;
  try {
    return gcmsiv(key, FIXED_NONCE, encoder.encode(associatedData)).decrypt(sealed);
  } catch {
    return undefined;
  }
}

/** A 32-byte key for one purpose, derived from a master key (HKDF-SHA256), so that no purpose shares a key with another. */
export function deriveKey(masterKey: Uint8Array, purpose: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", masterKey, new Uint8Array(0), purpose, 32));
}
