import { createHmac, randomBytes } from "node:crypto";

/**
 * Webhook signatures. HMAC is authentication of a message in flight, not
 * encryption at rest, so it lives here and not in the vault.
 *
 * Two schemes are sent on every request, over the exact bytes of the body:
 * - `x-webhook-signature`: hex HMAC-SHA256 of the body, keyed with the UTF-8
 *   bytes of the signing secret exactly as stored (Libretto Cloud's header);
 * - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of
 *   "<webhook-id>.<webhook-timestamp>.<body>">`, keyed with the base64-decoded
 *   part of a `whsec_` secret, or with the UTF-8 bytes of any other secret.
 */

const WHSEC = "whsec_";

/** A new signing secret: `whsec_` and the base64 of 32 random bytes. */
export function generateSigningSecret(): string {
  return WHSEC + randomBytes(32).toString("base64");
}

/**
 * The shortest secret a client may choose, in bytes (of its UTF-8 form, the
 * HMAC key). The Standard Webhooks spec asks for 24 to 64 random bytes; a
 * secret much shorter can be guessed offline from one signed delivery, and
 * then anyone can sign a webhook.
 */
export const MIN_SECRET_BYTES = 16;

/** What is wrong with the length of a secret a client chose (a callback_secret, a plain signing secret), or undefined. */
export function shortSecretProblem(secret: string): string | undefined {
  const bytes = Buffer.byteLength(secret, "utf8");
  if (bytes >= MIN_SECRET_BYTES) return undefined;
  return (
    `must be at least ${MIN_SECRET_BYTES} bytes, not ${bytes}: a short secret can be guessed from one signed delivery ` +
    "(Standard Webhooks asks for 24 to 64 random bytes, e.g. `openssl rand -base64 32`)"
  );
}

/** What is wrong with a signing secret a client chose, or undefined. */
export function signingSecretProblem(secret: string): string | undefined {
  if (!secret.startsWith(WHSEC)) return shortSecretProblem(secret);
  const encoded = secret.slice(WHSEC.length);
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(encoded) ? Buffer.from(encoded, "base64").length : 0;
  if (bytes < 24 || bytes > 64) {
    return "must be whsec_ followed by the base64 of 24 to 64 random bytes (Standard Webhooks), or a secret without the whsec_ prefix";
  }
  return undefined;
}

/** The Standard Webhooks HMAC key of a secret. */
export function standardWebhooksKey(secret: string): Buffer {
  return secret.startsWith(WHSEC) ? Buffer.from(secret.slice(WHSEC.length), "base64") : Buffer.from(secret, "utf8");
}

/** The signature headers of one attempt. `timestamp` is in seconds since the epoch. */
export function signatureHeaders(secret: string, webhookId: string, timestamp: number, body: Uint8Array): Record<string, string> {
  const legacy = createHmac("sha256", Buffer.from(secret, "utf8")).update(body).digest("hex");
  const standard = createHmac("sha256", standardWebhooksKey(secret))
    .update(`${webhookId}.${timestamp}.`)
    .update(body)
    .digest("base64");
  return {
    "x-webhook-signature": legacy,
    "webhook-id": webhookId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": `v1,${standard}`,
  };
}

/** What a sealed signing secret is bound to besides its tenant (see Vault.sealForTenant). */
export const endpointSecretContext = (endpointId: string) => `webhook/${endpointId}/signing-secret`;

/** Where jobs/service.ts seals a job's callback_secret. */
export const jobCallbackSecretContext = (jobId: string) => `job/${jobId}/callback-secret`;
