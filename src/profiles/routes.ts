import { z } from "zod";
import { defineRoute } from "../http/route";
import { timestamp } from "../http/schemas";
import * as service from "./service";
import { profileName, storageState } from "./state";

const actor = (caller: { tenantId: string; apiKeyId: string }) => ({ tenantId: caller.tenantId, apiKeyId: caller.apiKeyId });

export const profileRoutes = [
  defineRoute({
    path: "/v1/browserProfiles/ensure",
    summary: "Register a browser profile name (libretto's deploy does, for each declared authProfile); an existing profile is left unchanged.",
    input: z.object({ name: profileName }),
    output: z.object({ success: z.literal(true), profile_id: z.uuid(), name: z.string(), created: z.boolean() }),
    async handler({ deps, caller }, input) {
      const { id, created } = await service.ensureProfile(deps, actor(caller), input.name);
      return { success: true as const, profile_id: id, name: input.name, created };
    },
  }),
  defineRoute({
    path: "/v1/browserProfiles/list",
    summary: "List the tenant's browser profiles, sorted by name. Never their state.",
    input: z.object({}),
    output: z.object({
      profiles: z.array(
        z.object({
          profile_id: z.uuid(),
          name: z.string(),
          providers: z.array(z.string()).describe("Always empty: the state is kept by Understudy itself, not by a browser provider"),
          has_state: z.boolean().describe("Extension: whether a state was uploaded or saved by a job (a profile made by ensure has none)"),
          version: z.number().int().describe("Extension: the state's version, 0 before the first; each upload or refresh adds 1"),
          created_at: timestamp,
          updated_at: timestamp,
        }),
      ),
    }),
    async handler({ deps, caller }) {
      const rows = await service.listProfiles(deps.db, caller.tenantId);
      return {
        profiles: rows.map((p) => ({
          profile_id: p.id,
          name: p.name,
          providers: [],
          has_state: p.version > 0,
          version: p.version,
          created_at: p.createdAt,
          updated_at: p.updatedAt,
        })),
      };
    },
  }),
  defineRoute({
    path: "/v1/browserProfiles/delete",
    summary: "Delete a browser profile and its state; 404 when absent, 409 while a queued or running job uses it.",
    input: z.object({ name: profileName }),
    output: z.object({ success: z.literal(true), deleted_count: z.literal(1), message: z.string() }),
    async handler({ deps, caller }, input) {
      await service.deleteProfile(deps, actor(caller), input.name, (name) => deps.sessions.persistingInto(caller.tenantId, name));
      return { success: true as const, deleted_count: 1 as const, message: `Browser profile "${input.name}" deleted.` };
    },
  }),
  defineRoute({
    path: "/v1/browserProfiles/upload",
    summary:
      "Extension: store (or replace) a browser profile's state, a Playwright storageState object; the profile is made if it is new. The state is sealed and never returned.",
    input: z.object({ name: profileName, state: storageState }),
    output: z.object({ success: z.literal(true), profile_id: z.uuid(), name: z.string(), created: z.boolean(), version: z.number().int(), message: z.string() }),
    async handler({ deps, caller }, input) {
      const { id, created, version } = await service.uploadProfileState(deps, actor(caller), input.name, input.state, deps.config.maxBodyBytes);
      const message = created ? `Browser profile "${input.name}" created with its state.` : `Browser profile "${input.name}" state replaced (version ${version}).`;
      return { success: true as const, profile_id: id, name: input.name, created, version, message };
    },
  }),
];
