import { z } from "zod";
import { defineRoute } from "../http/route";
import { credentialName, successMessage, timestamp, uuid } from "../http/schemas";
import * as service from "./service";

const value = z.string().min(1, "must not be empty").describe("The secret value; up to UNDERSTUDY_MAX_VALUE_BYTES bytes");
const credentialId = uuid("credential");

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
    summary: "List the tenant's credentials, sorted by name. Never values.",
    input: z.object({}),
    output: z.object({
      credentials: z.array(z.object({ credential_id: z.uuid(), name: z.string(), created_at: timestamp, updated_at: timestamp })),
    }),
    async handler({ deps, caller }) {
      const credentials = await service.listCredentials(deps, caller);
      return {
        credentials: credentials.map((c) => ({ credential_id: c.id, name: c.name, created_at: c.createdAt, updated_at: c.updatedAt })),
      };
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
