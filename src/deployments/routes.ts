import { z } from "zod";
import { defineRoute } from "../http/route";
import { timestamp, uuid } from "../http/schemas";
import { cursorField, integerPosition, issueCursor, readCursor, readIntegerPosition } from "../http/cursor";
import { optional } from "../jobs/routes";

const deploymentId = uuid("deployment");
const LIST = "/v1/deployments/list";

const deploymentOutput = z.object({
  deployment_id: z.uuid(),
  status: z.enum(["building", "ready", "failed"]),
  /** When ready: the workflow names the deployment holds. */
  workflows: z.array(z.string()).optional(),
  /** When failed: why, for the person deploying. */
  build_error: z.string().optional(),
  /** Extensions. */
  deployment_version: z.number().int(),
  entry_point: z.string(),
  description: z.string().nullable(),
  auto_repair: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
});

/**
 * `libretto cloud deploy` polls with `{id}` although the contract names the
 * field `deployment_id`; both are accepted, one is required.
 */
const deploymentRef = z
  .object({ deployment_id: optional(deploymentId), id: optional(deploymentId) })
  .refine((i) => i.deployment_id !== undefined || i.id !== undefined, { message: "give the deployment_id (or id)", path: ["deployment_id"] })
  .transform((i) => ({ deploymentId: (i.deployment_id ?? i.id)! }));

/** sync and get answer the same: the deployment as it is now. */
function readDeploymentRoute(path: "/v1/deployments/sync" | "/v1/deployments/get", summary: string) {
  return defineRoute({
    path,
    summary,
    input: deploymentRef,
    output: deploymentOutput,
    async handler({ deps, caller }, input) {
      return deps.deployments.get(caller.tenantId, input.deploymentId);
    },
  });
}

export const deploymentRoutes = [
  defineRoute({
    path: "/v1/deployments/create",
    summary:
      "Upload workflow code (what `libretto cloud deploy` sends: base64 of a gzip'd tar). Bad uploads are refused at once; the build (loading the entry point in a worker) runs after the answer: poll deployments/sync.",
    largeBody: true,
    input: z.object({
      source: z.string().min(1, "must be the base64 of a gzip'd tar"),
      entry_point: z.string().trim().min(1, "must name the entry module, e.g. index.js").max(1000, "must be at most 1000 characters"),
      description: optional(z.string().max(1000, "must be at most 1000 characters")),
      auto_repair: optional(z.boolean()),
    }),
    output: deploymentOutput,
    async handler({ deps, caller }, input) {
      const view = await deps.deployments.create(caller.tenantId, input);
      return view;
    },
  }),
  readDeploymentRoute("/v1/deployments/sync", "A deployment's build status (what `libretto cloud deploy` polls)."),
  readDeploymentRoute("/v1/deployments/get", "One deployment."),
  defineRoute({
    path: "/v1/deployments/list",
    summary: "The tenant's deployments, newest first, with an opaque cursor.",
    input: z.object({
      limit: optional(z.number().int().min(1, "must be at least 1").max(100, "must be at most 100")).transform((l) => l ?? 20),
      cursor: optional(cursorField),
    }),
    output: z.object({ deployments: z.array(deploymentOutput), next_cursor: z.string().nullable() }),
    async handler({ deps, caller }, input) {
      // A deployment's version counts the tenant's own deployments: it says nothing of other tenants.
      const before = input.cursor === undefined ? undefined : readCursor(deps.vault, caller.tenantId, LIST, "cursor", input.cursor, readIntegerPosition);
      const page = await deps.deployments.list(caller.tenantId, input.limit, before);
      return {
        deployments: page.deployments,
        next_cursor: page.next === null ? null : issueCursor(deps.vault, caller.tenantId, LIST, integerPosition(page.next)),
      };
    },
  }),
];
