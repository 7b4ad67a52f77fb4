import { z } from "zod";
import { deploymentDir } from "../deployments/service";
import * as deployments from "../deployments/store";
import type { RunnableWorkflow } from "../runner/executor";
import type { JobRow } from "../jobs/store";
import type { Db } from "../store/database";
import { normaliseProfileName } from "../profiles/state";
import type { AuthProfile } from "./define";
import { uuidFromHash, type RegisteredWorkflow, type WorkflowRegistry } from "./registry";

/** A workflow as a tenant sees it: deployed by the tenant, or one of the operator's files. */
export interface CatalogEntry {
  name: string;
  source: "file" | "deployment";
  status: "ready" | "failed";
  /** Why a failed one cannot run. */
  error: string | undefined;
  credentials: readonly string[];
  startUrl: string | undefined;
  viewport: { width: number; height: number } | undefined;
  /** The declared browser profile, if any. */
  authProfile: AuthProfile | undefined;
  workflowId: string;
  deploymentId: string;
  deploymentVersion: string;
  createdAt: string;
  updatedAt: string;
  /** JSON Schema, or null. */
  inputSchema: unknown;
  outputSchema: unknown;
}

/**
 * Which workflow a name means for a tenant (API.md "Deployments"): the
 * tenant's newest ready deployment that has it, else the operator's file of
 * that name. A job keeps the deployment it was created with: it runs that
 * version even when a newer one is deployed meanwhile.
 */
export class WorkflowCatalog {
  constructor(
    private readonly files: WorkflowRegistry,
    private readonly deploymentsDir: string,
  ) {}

  async find(db: Db, tenantId: string, name: string): Promise<CatalogEntry | undefined> {
    const key = name.trim();
    const deployed = await deployments.currentDeployedWorkflow(db, tenantId, key);
    if (deployed) return fromDeployment(deployed, await deployments.findDeploymentById(db, deployed.deployment_id));
    const file = this.files.get(key);
    return file ? fromFile(file) : undefined;
  }

  /** Every workflow the tenant can see, by name: deployed ones shadow files of the same name; then files that failed to load. */
  async list(db: Db, tenantId: string): Promise<CatalogEntry[]> {
    const deployed = await deployments.currentDeployedWorkflows(db, tenantId);
    const rows = new Map((await Promise.all([...new Set(deployed.map((w) => w.deployment_id))].map((id) => deployments.findDeploymentById(db, id)))).flatMap((r) => (r ? [[r.id, r]] : [])));
    const named = deployed.map((w) => fromDeployment(w, rows.get(w.deployment_id)));
    const taken = new Set(named.map((e) => e.name));
    // The registry lists workflows by name, then the files that failed to load (listed under their path).
    const files = this.files.list().filter((f) => !taken.has(f.name));
    const failedFiles = files.filter((f) => f.name === f.file && !f.definition);
    named.push(...files.filter((f) => !failedFiles.includes(f)).map(fromFile));
    return [...named.sort((a, b) => a.name.localeCompare(b.name)), ...failedFiles.map(fromFile)];
  }

  /** The code a job runs, or why it cannot run. */
  async forJob(db: Db, row: JobRow, isolation: "process" | "none"): Promise<RunnableWorkflow | { error: string }> {
    // A job of an operator's file carries that file's deployment id: no query on the claim path for it.
    const file = this.files.get(row.workflow);
    if (row.deployment_id && file?.deploymentId !== row.deployment_id) {
      const deployment = await deployments.findDeploymentById(db, row.deployment_id);
      if (deployment && deployment.tenant_id === row.tenant_id) {
        const workflow = await deployments.findDeploymentWorkflow(db, deployment.id, row.workflow);
        if (!workflow) return { error: `Deployment ${deployment.id} has no workflow "${row.workflow}".` };
        return {
          kind: "deployment",
          name: workflow.name,
          credentials: JSON.parse(workflow.credential_names) as string[],
          startUrl: workflow.start_url ?? undefined,
          viewport: workflow.viewport ? (JSON.parse(workflow.viewport) as { width: number; height: number }) : undefined,
          authProfile: deployedAuthProfile(workflow),
          deploymentId: deployment.id,
          dir: deploymentDir(this.deploymentsDir, deployment.tenant_id, deployment.id),
          entry: deployment.entry_point,
        };
      }
    }
    const registered = file;
    if (!registered?.definition) {
      return {
        error: registered ? `Workflow "${row.workflow}" failed to load: ${registered.error}` : `Workflow "${row.workflow}" is no longer loaded on this server.`,
      };
    }
    if (!registered.path && isolation === "process") {
      return {
        error: `Workflow "${row.workflow}" was handed to the server as code, not as a file, so it can run only in the server process (UNDERSTUDY_WORKFLOW_ISOLATION=none).`,
      };
    }
    const { definition } = registered;
    return {
      kind: "file",
      name: definition.name,
      credentials: definition.credentials,
      startUrl: definition.startUrl,
      viewport: definition.viewport,
      authProfile: definition.authProfile,
      path: registered.path ?? "",
      definition,
    };
  }
}

/** A deployed workflow's authProfile (what discovery or the CLI's metadata said), normalised like a file's. */
function deployedAuthProfile(w: deployments.DeploymentWorkflowRow): AuthProfile | undefined {
  const name = w.auth_profile_name === null ? undefined : normaliseProfileName(w.auth_profile_name);
  return name ? { name, refresh: w.auth_profile_refresh === 1 } : undefined;
}

function fromDeployment(w: deployments.DeploymentWorkflowRow, deployment: deployments.DeploymentRow | undefined): CatalogEntry {
  return {
    name: w.name,
    source: "deployment",
    status: "ready",
    error: undefined,
    credentials: JSON.parse(w.credential_names) as string[],
    startUrl: w.start_url ?? undefined,
    viewport: w.viewport ? (JSON.parse(w.viewport) as { width: number; height: number }) : undefined,
    authProfile: deployedAuthProfile(w),
    workflowId: uuidFromHash(`deployed-workflow:${w.tenant_id}:${w.name}`),
    deploymentId: w.deployment_id,
    deploymentVersion: String(w.version),
    createdAt: deployment?.created_at ?? w.created_at,
    updatedAt: deployment?.ready_at ?? w.created_at,
    inputSchema: w.input_schema ? JSON.parse(w.input_schema) : null,
    outputSchema: w.output_schema ? JSON.parse(w.output_schema) : null,
  };
}

function fromFile(w: RegisteredWorkflow): CatalogEntry {
  return {
    name: w.name,
    source: "file",
    status: w.status,
    error: w.error,
    credentials: w.definition?.credentials ?? [],
    startUrl: w.definition?.startUrl,
    viewport: w.definition?.viewport,
    authProfile: w.definition?.authProfile,
    workflowId: w.workflowId,
    deploymentId: w.deploymentId,
    deploymentVersion: w.deploymentVersion,
    createdAt: w.createdAt,
    updatedAt: w.updatedAt,
    inputSchema: jsonSchemaOf(w.definition?.input, "input"),
    outputSchema: jsonSchemaOf(w.definition?.output, "output"),
  };
}

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
