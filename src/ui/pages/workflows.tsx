/** @jsxImportSource hono/jsx */
import { ActionForm, Badge, Page, Pager, When, type Flash } from "../layout";
import { redirect, type Mount, type UiRequest } from "../server";
import { fieldsOf, optionalNumber, paramsFromForm, SchemaFields } from "./schema-form";

interface WorkflowSummary {
  name: string;
  deployment_id: string;
  deployment_status: "ready" | "failed";
  created_at: string;
  updated_at: string;
  source: "deployment" | "file";
  error: string | null;
}

interface WorkflowDetail extends WorkflowSummary {
  credential_names: string[];
  input_schema: unknown;
  output_schema: unknown;
}

interface Build {
  deployment_id: string;
  status: "building";
  entry_point: string;
  created_at: string;
}

interface Deployment {
  deployment_id: string;
  status: "building" | "ready" | "failed";
  workflows?: string[];
  build_error?: string;
  deployment_version: number;
  entry_point: string;
  description: string | null;
  created_at: string;
  updated_at: string;
}

const workflowPath = (name: string) => `/ui/workflows/${encodeURIComponent(name)}`;
const plural = (n: number, one: string, many: string) => (n === 1 ? `1 ${one}` : `${n} ${many}`);
const sourceLabel = (source: WorkflowSummary["source"]) => (source === "file" ? "workflow file" : "deployment");

function WorkflowTable(props: { workflows: WorkflowSummary[] }) {
  return (
    <div class="table-wrap">
      <table class="responsive" data-table="workflows">
        <caption class="muted">{plural(props.workflows.length, "workflow", "workflows")}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Source</th>
            <th scope="col">Status</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {props.workflows.map((w) => (
            <tr data-workflow={w.name}>
              <td data-label="Name">
                <a href={workflowPath(w.name)}>{w.name}</a>
              </td>
              <td data-label="Source">{sourceLabel(w.source)}</td>
              <td data-label="Status">
                <Badge value={w.deployment_status} />
                {w.error ? <p class="error-text">{w.error}</p> : null}
              </td>
              <td data-label="Updated">
                <When at={w.updated_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function BuildTable(props: { builds: Build[] }) {
  return (
    <div class="table-wrap">
      <table class="responsive" data-table="builds">
        <caption class="muted">{plural(props.builds.length, "build in progress", "builds in progress")}</caption>
        <thead>
          <tr>
            <th scope="col">Deployment</th>
            <th scope="col">Entry point</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {props.builds.map((b) => (
            <tr data-deployment={b.deployment_id}>
              <td data-label="Deployment">
                <code>{b.deployment_id}</code>
              </td>
              <td data-label="Entry point">
                <code>{b.entry_point}</code>
              </td>
              <td data-label="Status">
                <Badge value={b.status} />
              </td>
              <td data-label="Created">
                <When at={b.created_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function DeploymentTable(props: { deployments: Deployment[] }) {
  return (
    <div class="table-wrap">
      <table class="responsive" data-table="deployments">
        <caption class="muted">{plural(props.deployments.length, "deployment", "deployments")}, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Deployment</th>
            <th scope="col">Version</th>
            <th scope="col">Entry point</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
            <th scope="col">Workflows</th>
          </tr>
        </thead>
        <tbody>
          {props.deployments.map((d) => (
            <tr data-deployment={d.deployment_id}>
              <td data-label="Deployment">
                <code>{d.deployment_id}</code>
                {d.description ? <p class="muted">{d.description}</p> : null}
              </td>
              <td data-label="Version">{d.deployment_version}</td>
              <td data-label="Entry point">
                <code>{d.entry_point}</code>
              </td>
              <td data-label="Status">
                <Badge value={d.status} />
                {d.build_error ? <p class="error-text">{d.build_error}</p> : null}
              </td>
              <td data-label="Created">
                <When at={d.created_at} />
              </td>
              <td data-label="Workflows">
                {d.workflows && d.workflows.length > 0 ? (
                  <ul>
                    {d.workflows.map((name) => (
                      <li>
                        <a href={workflowPath(name)}>{name}</a>
                      </li>
                    ))}
                  </ul>
                ) : (
                  <span class="muted">{d.status === "ready" ? "none" : "—"}</span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function SchemaBlock(props: { schema: unknown; none: string }) {
  if (props.schema === null || props.schema === undefined) return <p class="muted">{props.none}</p>;
  return (
    <pre class="schema">
      <code>{JSON.stringify(props.schema, null, 2)}</code>
    </pre>
  );
}

/** Workflows: what this tenant can run, its builds and deployments; one workflow with its credentials, schemas and a form that starts a job. */
export function workflowPages(mount: Mount): void {
  const renderList = async (req: UiRequest, flash?: Flash) => {
    const cursor = req.c.req.query("cursor");
    const [{ deployed_workflows: workflows, in_progress_builds: builds }, page] = await Promise.all([
      req.call<{ deployed_workflows: WorkflowSummary[]; in_progress_builds: Build[] }>("/v1/workflows/list", {}),
      req.call<{ deployments: Deployment[]; next_cursor: string | null }>("/v1/deployments/list", { limit: 50, ...(cursor ? { cursor } : {}) }),
    ]);
    return (
      <Page title="Workflows" frame={req.frame("/ui/workflows", flash)}>
        <h2 id="workflows">Workflows you can run</h2>
        {workflows.length === 0 ? (
          <p>No workflows yet. Deploy some with <code>libretto cloud deploy</code>, or ask the operator to add workflow files.</p>
        ) : (
          <WorkflowTable workflows={workflows} />
        )}
        <h2 id="builds">Builds in progress</h2>
        {builds.length === 0 ? <p class="muted">No deployment is building.</p> : <BuildTable builds={builds} />}
        <h2 id="deployments">Deployments</h2>
        {page.deployments.length === 0 ? (
          <p class="muted">{cursor ? "No older deployments." : "No deployments yet."}</p>
        ) : (
          <DeploymentTable deployments={page.deployments} />
        )}
        <Pager
          label="Deployment pages"
          newest={cursor ? { href: "/ui/workflows#deployments", text: "Newest deployments" } : undefined}
          older={page.next_cursor ? { href: `/ui/workflows?cursor=${encodeURIComponent(page.next_cursor)}#deployments`, text: "Older deployments" } : undefined}
        />
      </Page>
    );
  };

  const renderOne = async (req: UiRequest, flash?: Flash) => {
    const name = req.c.req.param("name") ?? "";
    const workflow = await req.call<WorkflowDetail>("/v1/workflows/get", { workflow: name });
    const { credentials } = await req.call<{ credentials: { name: string }[] }>("/v1/credentials/list", {});
    const stored = new Set(credentials.map((c) => c.name));
    const fields = fieldsOf(workflow.input_schema);
    // A refused start shows the form again with what was typed (passwords excepted).
    const values = req.c.req.method === "POST" ? await req.form().catch(() => undefined) : undefined;
    const missing = workflow.credential_names.filter((n) => !stored.has(n));
    const csrf = req.session.csrfToken;
    return (
      <Page title={`Workflow ${workflow.name}`} frame={req.frame("/ui/workflows", flash)}>
        <p>
          <a href="/ui/workflows">All workflows</a>
        </p>
        <h2 id="details">Details</h2>
        <dl class="details">
          <dt>Source</dt>
          <dd data-field="source">{sourceLabel(workflow.source)}</dd>
          <dt>Status</dt>
          <dd data-field="status">
            <Badge value={workflow.deployment_status} />
          </dd>
          {workflow.error ? (
            <>
              <dt>Error</dt>
              <dd data-field="error" class="error-text">
                {workflow.error}
              </dd>
            </>
          ) : null}
          {workflow.source === "deployment" ? (
            <>
              <dt>Deployment</dt>
              <dd data-field="deployment">
                <code>{workflow.deployment_id}</code>
              </dd>
            </>
          ) : null}
          <dt>Updated</dt>
          <dd data-field="updated">
            <When at={workflow.updated_at} />
          </dd>
        </dl>

        <h2 id="credentials">Credentials</h2>
        {workflow.credential_names.length === 0 ? (
          <p class="muted">This workflow declares no credentials.</p>
        ) : (
          <>
            {missing.length > 0 ? (
              <p class="warning">
                {missing.length === 1 ? "1 declared credential is missing" : `${missing.length} declared credentials are missing`}: a job of this workflow does not get it until it is stored.{" "}
                <a href="/ui/credentials#add">Add a credential</a>
              </p>
            ) : null}
            <div class="table-wrap">
              <table class="responsive" data-table="credentials">
                <caption class="muted">Declared credentials, injected into each job of this workflow</caption>
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Stored</th>
                  </tr>
                </thead>
                <tbody>
                  {workflow.credential_names.map((credential) => {
                    const present = stored.has(credential);
                    return (
                      <tr data-credential={credential} data-present={present ? "true" : "false"}>
                        <td data-label="Name">
                          <code>{credential}</code>
                        </td>
                        <td data-label="Stored">
                          {present ? (
                            <Badge value="present" />
                          ) : (
                            <>
                              <Badge value="missing" /> <a href="/ui/credentials#add">Add {credential}</a>
                            </>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          </>
        )}

        <h2 id="start">Start a job</h2>
        {workflow.deployment_status === "failed" ? <p class="warning">This workflow failed to load: a job cannot start until it is fixed.</p> : null}
        <ActionForm action={`${workflowPath(workflow.name)}/run`} csrf={csrf} class="stack" label={`Start a job of ${workflow.name}`}>
          <SchemaFields fields={fields} values={values} />
          <details>
            <summary>Advanced</summary>
            <label for="timeout-seconds">
              Timeout seconds
              <span class="hint">How long the job may run before it is stopped (default 1800).</span>
              <input type="number" id="timeout-seconds" name="timeout_seconds" min="1" step="1" value={values?.get("timeout_seconds") ?? ""} />
            </label>
          </details>
          <div>
            <button type="submit">Start job</button>
          </div>
        </ActionForm>

        {fields !== null ? (
          <details>
            <summary>Input schema (JSON Schema)</summary>
            <SchemaBlock schema={workflow.input_schema} none="No input schema declared." />
          </details>
        ) : null}
        <h2 id="output">Output schema</h2>
        <SchemaBlock schema={workflow.output_schema} none="No output schema declared." />
      </Page>
    );
  };

  mount.page("/ui/workflows", renderList);
  mount.page("/ui/workflows/:name", renderOne);
  mount.action("/ui/workflows/:name/run", renderOne, async (req) => {
    const name = req.c.req.param("name") ?? "";
    const workflow = await req.call<WorkflowDetail>("/v1/workflows/get", { workflow: name });
    const form = await req.form();
    const params = paramsFromForm(fieldsOf(workflow.input_schema), form);
    const timeout = optionalNumber(form, "timeout_seconds", "Timeout seconds");
    const out = await req.call<{ job_id: string; message: string }>("/v1/jobs/create", {
      workflow: workflow.name,
      params,
      ...(timeout === undefined ? {} : { timeout_seconds: timeout }),
    });
    return redirect(req.c, `/ui/jobs/${out.job_id}`, { kind: "ok", message: out.message });
  });
}
