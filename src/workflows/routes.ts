import { z } from "zod";
import { AppError } from "../errors";
import { defineRoute } from "../http/route";
import { timestamp } from "../http/schemas";
import type { RegisteredWorkflow } from "./registry";

const summary = {
  name: z.string(),
  deployment_id: z.string(),
  deployment_status: z.enum(["ready", "failed"]),
  created_at: timestamp,
  updated_at: timestamp,
  /** Extension: why a failed workflow (or workflow file) did not load. */
  error: z.string().nullable(),
};

const toSummary = (w: RegisteredWorkflow) => ({
  name: w.name,
  deployment_id: w.deploymentId,
  deployment_status: w.status,
  created_at: w.createdAt,
  updated_at: w.updatedAt,
  error: w.error ?? null,
});

function jsonSchemaOf(schema: z.ZodType | undefined, io: "input" | "output"): unknown {
  if (!schema) return null;
  try {
    const json = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
    delete json.$schema;
    return json;
  } catch {
    return null;
  }
}

export const workflowRoutes = [
  defineRoute({
    path: "/v1/workflows/list",
    summary: "The workflows this server has loaded (the same for every tenant), and files that failed to load.",
    input: z.object({}),
    output: z.object({ deployed_workflows: z.array(z.object(summary)), in_progress_builds: z.array(z.never()) }),
    async handler({ deps }) {
      return { deployed_workflows: deps.workflows.list().map(toSummary), in_progress_builds: [] };
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
    async handler({ deps }, input) {
      const found = deps.workflows.get(input.workflow);
      if (!found) throw new AppError("NOT_FOUND", `Workflow "${input.workflow}" not found. List the deployed workflows with /v1/workflows/list.`);
      return {
        ...toSummary(found),
        credential_names: [...(found.definition?.credentials ?? [])],
        input_schema: jsonSchemaOf(found.definition?.input, "input"),
        output_schema: jsonSchemaOf(found.definition?.output, "output"),
      };
    },
  }),
];
