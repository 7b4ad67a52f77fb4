import { z } from "zod";
import { cursorField, issueCursor, readCursor, readTextPosition, textPosition } from "../http/cursor";
import { defineRoute } from "../http/route";
import { credentialName, successMessage, timestamp, uuid } from "../http/schemas";
import { optional } from "../jobs/routes";
import * as service from "./service";

const value = z.string().min(1, "must not be empty").describe("The secret value; up to UNDERSTUDY_MAX_VALUE_BYTES bytes");
const credentialId = uuid("credential");
const LIST = "/v1/credentials/list";
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

export const credentialRoutes = [
  defineRoute({
    path: "/v1/credentials/create",
    summary: "Store a new credential; 409 if the name exists.",
    input: z.object({ name: credentialName, value }),
    output: z.object({ ...successMessage, credential_id: z.uuid() }),
    async handler({ deps, caller }, input) {
      const { id } = await service.createCredential(deps, caller, input.name, input.value);
      return { success: true as const, credential_id: id, message: `Credential "${input.name}" created.` };
    },
  }),
  defineRoute({
    path: "/v1/credentials/upsert",
    summary: "Store a credential, replacing the value if the name exists.",
    input: z.object({ name: credentialName, value }),
    output: z.object({ ...successMessage, credential_id: z.uuid(), overwritten: z.boolean() }),
    async handler({ deps, caller }, input) {
      const { id, overwritten } = await service.upsertCredential(deps, caller, input.name, input.value);
      const message = overwritten ? `Credential "${input.name}" updated.` : `Credential "${input.name}" created.`;
      return { success: true as const, credential_id: id, overwritten, message };
    },
  }),
  defineRoute({
    path: "/v1/credentials/list",
    summary:
      "List the tenant's credentials, sorted by name. Never values. Without limit or cursor, every credential; with either, a page and next_cursor (null at the end).",
    input: z.object({
      limit: optional(z.number().int("must be a whole number").min(1, "must be at least 1").max(MAX_PAGE, `must be at most ${MAX_PAGE}`)).describe(
        `Extension: page size (default ${DEFAULT_PAGE} when only a cursor is given). Without limit and cursor, the answer holds every credential.`,
      ),
      cursor: optional(cursorField),
    }),
    output: z.object({
      credentials: z.array(z.object({ credential_id: z.uuid(), name: z.string(), created_at: timestamp, updated_at: timestamp })),
      next_cursor: z.string().nullable().optional().describe("Extension: present when limit or cursor was given; null at the end"),
    }),
    async handler({ deps, caller }, input) {
      const paged = input.limit !== undefined || input.cursor !== undefined;
      // The cursor holds the last name of the page: names are unique within a tenant.
      const afterName = input.cursor === undefined ? undefined : readCursor(deps.vault, caller.tenantId, LIST, "cursor", input.cursor, readTextPosition);
      const limit = input.limit ?? (paged ? DEFAULT_PAGE : undefined);
      const rows = await service.listCredentials(deps, caller, { afterName, limit: limit === undefined ? undefined : limit + 1 });
      const page = limit === undefined ? rows : rows.slice(0, limit);
      const credentials = page.map((c) => ({ credential_id: c.id, name: c.name, created_at: c.createdAt, updated_at: c.updatedAt }));
      if (!paged) return { credentials };
      const more = limit !== undefined && rows.length > limit;
      return { credentials, next_cursor: more ? issueCursor(deps.vault, caller.tenantId, LIST, textPosition(page[page.length - 1]!.name)) : null };
    },
  }),
  defineRoute({
    path: "/v1/credentials/get",
    summary: "Read one credential's value by name. Audited.",
    input: z.object({ name: credentialName }),
    output: z.object({ id: z.uuid(), value: z.string() }),
    async handler({ deps, caller }, input) {
      return service.readCredential(deps, caller, input.name);
    },
  }),
  defineRoute({
    path: "/v1/credentials/update",
    summary: "Change a credential's value, name, or both; 409 if the new name is taken.",
    input: z
      .object({ id: credentialId, value: value.optional(), name: credentialName.optional() })
      .refine((i) => i.value !== undefined || i.name !== undefined, {
        message: "give a new value, a new name, or both",
        path: ["value"],
      }),
    output: z.object(successMessage),
    async handler({ deps, caller }, input) {
      const { name } = await service.updateCredential(deps, caller, input.id, { name: input.name, value: input.value });
      return { success: true as const, message: `Credential "${name}" updated.` };
    },
  }),
  defineRoute({
    path: "/v1/credentials/delete",
    summary: "Delete a credential; 409 while queued or running jobs reference it.",
    input: z.object({ id: credentialId }),
    output: z.object(successMessage),
    async handler({ deps, caller }, input) {
      const { name } = await service.deleteCredential(deps, caller, input.id);
      return { success: true as const, message: `Credential "${name}" deleted.` };
    },
  }),
];
