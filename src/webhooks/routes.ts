import { z } from "zod";
import { cursorField, issueCursor, readCursor, readUuidPosition, staleCursor, uuidPosition } from "../http/cursor";
import { defineRoute } from "../http/route";
import { successMessage, timestamp, uuid } from "../http/schemas";
import * as service from "./service";
import { signingSecretProblem } from "./signing";
import type { Delivery, DeliveryStatus, Endpoint } from "./store";

/** Optional fields accept null as "not given": clients differ on how they send an absent value. */
const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

const webhookUrl = z
  .url({ protocol: /^https?$/, error: "must be an http(s) URL" })
  .max(2048, "must be at most 2048 characters")
  .refine((url) => {
    // Refinements also run after a failed format check: a URL that does not parse is reported by that check.
    if (!URL.canParse(url)) return true;
    const parsed = new URL(url);
    return parsed.username === "" && parsed.password === "";
  }, "must not carry a user name or password; receivers authenticate a webhook by its signature")
  .describe("Where job results are POSTed (http or https). An IP address is checked at once; a host name at every attempt.");

const signingSecret = z
  .string()
  .max(1024, "must be at most 1024 characters")
  .superRefine((secret, ctx) => {
    const problem = signingSecretProblem(secret);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .describe(
    "HMAC key of the signatures: whsec_ + base64 of 24 to 64 bytes, or any other secret of at least 16 bytes. Omit it on create and the server generates one (whsec_ + base64 of 32 bytes), shown once.",
  );

const description = z.string().max(1024, "must be at most 1024 characters");
const endpointId = uuid("webhook endpoint");
const DELIVERY_STATUSES = ["pending", "succeeded", "failed"] as const;
const DELIVERIES_LIST = "/v1/webhooks/deliveries";

const endpointOutput = z.object({
  webhook_endpoint_id: z.uuid(),
  url: z.string(),
  description: z.string().nullable(),
  active: z.boolean(),
  /** Extension: why the server turned the endpoint off (a 410 from the receiver). */
  disabled_reason: z.string().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
});

const toEndpointOutput = (e: Endpoint): z.input<typeof endpointOutput> => ({
  webhook_endpoint_id: e.id,
  url: e.url,
  description: e.description,
  active: e.active,
  disabled_reason: e.disabledReason,
  created_at: e.createdAt,
  updated_at: e.updatedAt,
});

const deliveryOutput = z.object({
  delivery_id: z.uuid().describe("Also the Standard Webhooks webhook-id of every attempt"),
  webhook_endpoint_id: z.string().nullable().describe("Null for a job's own callback_url"),
  job_id: z.uuid(),
  event: z.string(),
  url: z.string(),
  status: z.enum(DELIVERY_STATUSES),
  attempts: z.number().int(),
  last_status_code: z.number().int().nullable(),
  last_error: z.string().nullable(),
  last_duration_ms: z.number().int().nullable(),
  response_excerpt: z.string().nullable().describe("The first 512 bytes of the receiver's last answer"),
  next_attempt_at: timestamp.nullable().describe("Pending only: when the next attempt is due (while one is in flight, when its claim lapses)"),
  created_at: timestamp,
  updated_at: timestamp,
  completed_at: timestamp.nullable(),
});

const toDeliveryOutput = (d: Delivery): z.input<typeof deliveryOutput> => ({
  delivery_id: d.id,
  webhook_endpoint_id: d.endpointId,
  job_id: d.jobId,
  event: d.event,
  url: d.url,
  status: d.status,
  attempts: d.attempts,
  last_status_code: d.lastStatusCode,
  last_error: d.lastError,
  last_duration_ms: d.lastDurationMs,
  response_excerpt: d.responseExcerpt,
  next_attempt_at: d.status === "pending" ? d.nextAttemptAt : null,
  created_at: d.createdAt,
  updated_at: d.updatedAt,
  completed_at: d.completedAt,
});

export const webhookRoutes = [
  defineRoute({
    path: "/v1/webhooks/create",
    summary: "Add an endpoint that receives the tenant's job results; without a signing_secret, one is generated and shown once.",
    input: z.object({
      url: webhookUrl,
      signing_secret: optional(signingSecret),
      description: optional(description),
      active: optional(z.boolean()).transform((a) => a ?? true),
    }),
    output: z.object({ ...successMessage, webhook_endpoint_id: z.uuid(), signing_secret: z.string().optional() }),
    async handler({ deps, caller }, input) {
      const { id, generatedSecret } = await service.createEndpoint(deps, caller, {
        url: input.url,
        signingSecret: input.signing_secret,
        description: input.description,
        active: input.active,
      });
      if (generatedSecret === undefined) return { success: true as const, webhook_endpoint_id: id, message: "Webhook endpoint created." };
      return {
        success: true as const,
        webhook_endpoint_id: id,
        signing_secret: generatedSecret,
        message: "Webhook endpoint created. Store its signing_secret now: it is not shown again.",
      };
    },
  }),
  defineRoute({
    path: "/v1/webhooks/list",
    summary: "The tenant's webhook endpoints, oldest first. Never the signing secret.",
    input: z.object({}),
    output: z.object({ webhook_endpoints: z.array(endpointOutput) }),
    async handler({ deps, caller }) {
      return { webhook_endpoints: (await service.listEndpoints(deps, caller)).map(toEndpointOutput) };
    },
  }),
  defineRoute({
    path: "/v1/webhooks/update",
    summary: "Change an endpoint's URL, signing secret, description or active flag.",
    input: z
      .object({
        id: endpointId,
        url: optional(webhookUrl),
        signing_secret: optional(signingSecret),
        description: optional(description.describe("An empty string clears it")),
        active: optional(z.boolean()),
      })
      .refine((i) => i.url !== undefined || i.signing_secret !== undefined || i.description !== undefined || i.active !== undefined, {
        message: "give at least one of url, signing_secret, description, active",
        path: ["url"],
      }),
    output: z.object(successMessage),
    async handler({ deps, caller }, input) {
      await service.updateEndpoint(deps, caller, input.id, {
        url: input.url,
        signingSecret: input.signing_secret,
        description: input.description,
        active: input.active,
      });
      return { success: true as const, message: `Webhook endpoint ${input.id} updated.` };
    },
  }),
  defineRoute({
    path: "/v1/webhooks/delete",
    summary: "Delete an endpoint. Its deliveries stay in the log; those still pending fail.",
    input: z.object({ id: endpointId }),
    output: z.object(successMessage),
    async handler({ deps, caller }, input) {
      await service.deleteEndpoint(deps, caller, input.id);
      return { success: true as const, message: `Webhook endpoint ${input.id} deleted.` };
    },
  }),
  defineRoute({
    path: "/v1/webhooks/deliveries",
    summary: "Extension: the delivery log, newest first: attempts, last status code, duration, response excerpt, next attempt, outcome.",
    input: z.object({
      webhook_endpoint_id: optional(endpointId),
      job_id: optional(uuid("job")),
      status: optional(z.enum(DELIVERY_STATUSES, `must be one of ${DELIVERY_STATUSES.join(", ")}`)),
      limit: optional(z.number().int().min(1, "must be at least 1").max(100, "must be at most 100")).transform((l) => l ?? 20),
      cursor: optional(cursorField),
    }),
    output: z.object({ deliveries: z.array(deliveryOutput), next_cursor: z.string().nullable() }),
    async handler({ deps, caller }, input) {
      // The cursor holds the last delivery's id; the page goes on from that delivery's place.
      let beforeSeq: number | undefined;
      if (input.cursor !== undefined) {
        const anchor = readCursor(deps.vault, caller.tenantId, DELIVERIES_LIST, "cursor", input.cursor, readUuidPosition);
        beforeSeq = await service.deliveryPlace(deps, caller, anchor);
        if (beforeSeq === undefined) throw staleCursor("cursor", "a delivery");
      }
      const rows = await service.listDeliveries(deps, caller, {
        endpointId: input.webhook_endpoint_id,
        jobId: input.job_id,
        status: input.status as DeliveryStatus | undefined,
        beforeSeq,
        limit: input.limit + 1,
      });
      const page = rows.slice(0, input.limit);
      return {
        deliveries: page.map(toDeliveryOutput),
        next_cursor: rows.length > input.limit ? issueCursor(deps.vault, caller.tenantId, DELIVERIES_LIST, uuidPosition(page[page.length - 1]!.id)) : null,
      };
    },
  }),
  defineRoute({
    path: "/v1/webhooks/redeliver",
    summary: "Extension: send an ended delivery again now, with the same webhook-id and a fresh attempt count.",
    input: z.object({ delivery_id: uuid("webhook delivery") }),
    output: z.object({ ...successMessage, delivery_id: z.uuid() }),
    async handler({ deps, caller }, input) {
      await service.redeliver(deps, caller, input.delivery_id);
      return { success: true as const, delivery_id: input.delivery_id, message: `Webhook delivery ${input.delivery_id} queued to be sent again.` };
    },
  }),
];
