import { z } from "zod";
import * as deployments from "../deployments/store";
import { AppError } from "../errors";
import { defineRoute } from "../http/route";
import { timestamp } from "../http/schemas";
import type { CatalogEntry } from "./catalog";

const summary = {
  name: z.string(),
  deployment_id: z.string(),
  deployment_status: z.enum(["ready", "failed"]),
  created_at: timestamp,
  updated_at: timestamp,
  /** Extension: where it comes from: the tenant's deployment, or the operator's workflow files. */
  source: z.enum(["deployment", "file"]),
  /** Extension: why a failed workflow (or workflow file) did not load. */
  error: z.string().nullable(),
};

const toSummary = (w: CatalogEntry) => ({
  name: w.name,
  deployment_id: w.deploymentId,
  deployment_status: w.status,
  created_at: w.createdAt,
  updated_at: w.updatedAt,
  source: w.source,
  error: w.error ?? null,
});

export const workflowRoutes = [
  defineRoute({
    path: "/v1/workflows/list",
    summary:
      "The workflows this tenant can run: its deployed ones (the newest deployment of each name), then the operator's workflow files; and its deployments still building.",
    input: z.object({}),
    output: z.object({
      deployed_workflows: z.array(z.object(summary)),
      in_progress_builds: z.array(z.object({ deployment_id: z.string(), status: z.literal("building"), entry_point: z.string(), created_at: timestamp })),
    }),
    async handler({ deps, caller }) {
      const building = await deployments.deploymentsWithStatus(deps.db, "building", caller.tenantId);
      return {
        deployed_workflows: (await deps.catalog.list(deps.db, caller.tenantId)).map(toSummary),
        in_progress_builds: building.map((d) => ({ deployment_id: d.id, status: "building" as const, entry_point: d.entry_point, created_at: d.created_at })),
      };
    },
  }),
  defineRoute({
    path: "/v1/workflows/get",
    summary: "One workflow with its declared credential names and JSON Schemas.",
    input: z.object({ workflow: z.string().trim().min(1, "must name a workflow").max(256) }),
    output: z.object({
      ...summary,
      credential_names: z.array(z.string()),
      input_schema: z.unknown(),
      output_schema: z.unknown(),
    }),
    async handler({ deps, caller }, input) {
      const found = await deps.catalog.find(deps.db, caller.tenantId, input.workflow);
      if (!found) throw new AppError("NOT_FOUND", `Workflow "${input.workflow}" not found. List the deployed workflows with /v1/workflows/list.`);
      return {
        ...toSummary(found),
        credential_names: [...found.credentials],
        input_schema: found.inputSchema,
        output_schema: found.outputSchema,
      };
    },
  }),
];
