/** @jsxImportSource hono/jsx */
import { listReferences } from "../../credentials/store";
import { AppError } from "../../errors";
import { ActionForm, Page, When, type Flash } from "../layout";
import { redirect, type Mount, type UiRequest } from "../server";

interface CredentialSummary {
  credential_id: string;
  name: string;
  created_at: string;
  updated_at: string;
}

/** Credentials: names, dates and the jobs that hold each now. Add, replace, delete. A value is never shown. */
export function credentialPages(mount: Mount): void {
  const render = async (req: UiRequest, flash?: Flash) => {
    const { credentials } = await req.call<{ credentials: CredentialSummary[] }>("/v1/credentials/list", {});
    const holders = new Map<string, { job_id: string; workflow: string; status: string }[]>();
    for (const ref of await listReferences(req.deps.db, req.session.tenantId)) {
      holders.set(ref.credential_id, [...(holders.get(ref.credential_id) ?? []), ref]);
    }
    const csrf = req.session.csrfToken;
    return (
      <Page title="Credentials" frame={req.frame("/ui/credentials", flash)}>
        <p class="muted">Values are stored encrypted and are never shown here. A credential held by a queued or running job cannot be deleted.</p>
        {credentials.length === 0 ? (
          <p>No credentials yet. Add one below.</p>
        ) : (
          <div class="table-wrap">
            <table class="responsive">
              <caption class="muted">{credentials.length === 1 ? "1 credential" : `${credentials.length} credentials`}</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Created</th>
                  <th scope="col">Updated</th>
                  <th scope="col">Held by</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {credentials.map((cred) => {
                  const held = holders.get(cred.credential_id) ?? [];
                  return (
                    <tr data-credential={cred.name}>
                      <td data-label="Name">
                        <code>{cred.name}</code>
                      </td>
                      <td data-label="Created">
                        <When at={cred.created_at} />
                      </td>
                      <td data-label="Updated">
                        <When at={cred.updated_at} />
                      </td>
                      <td data-label="Held by">
                        {held.length === 0 ? (
                          <span class="muted">no job</span>
                        ) : (
                          <ul>
                            {held.map((h) => (
                              <li>
                                <a href={`/ui/jobs/${h.job_id}`}>{h.workflow}</a> <span class="muted">({h.status.replace(/_/g, " ")})</span>
                              </li>
                            ))}
                          </ul>
                        )}
                      </td>
                      <td data-label="Actions">
                        <details>
                          <summary>Replace value</summary>
                          <ActionForm action="/ui/credentials/upsert" csrf={csrf} class="stack" label={`Replace the value of ${cred.name}`}>
                            <input type="hidden" name="name" value={cred.name} />
                            <label>
                              New value
                              <input type="password" name="value" autocomplete="off" required />
                            </label>
                            <div>
                              <button type="submit">Replace</button>
                            </div>
                          </ActionForm>
                        </details>
                        <details>
                          <summary>Delete</summary>
                          <ActionForm action="/ui/credentials/delete" csrf={csrf} label={`Delete ${cred.name}`}>
                            <input type="hidden" name="id" value={cred.credential_id} />
                            <button type="submit" class="danger">
                              Delete {cred.name}
                            </button>
                          </ActionForm>
                        </details>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        <h2 id="add">Add a credential</h2>
        <ActionForm action="/ui/credentials/upsert" csrf={csrf} class="stack" label="Add a credential">
          <label>
            Name
            <span class="hint">The name a workflow declares. An existing name gets the new value.</span>
            <input type="text" name="name" required autocomplete="off" spellcheck={false} />
          </label>
          <label>
            Value
            <input type="password" name="value" required autocomplete="off" />
          </label>
          <div>
            <button type="submit">Save credential</button>
          </div>
        </ActionForm>
      </Page>
    );
  };

  mount.page("/ui/credentials", render);
  mount.action("/ui/credentials/upsert", render, async (req) => {
    const form = await req.form();
    const out = await req.call<{ message: string }>("/v1/credentials/upsert", { name: form.get("name") ?? "", value: form.get("value") ?? "" });
    return redirect(req.c, "/ui/credentials", { kind: "ok", message: out.message });
  });
  mount.action("/ui/credentials/delete", render, async (req) => {
    const form = await req.form();
    let out: { message: string };
    try {
      out = await req.call<{ message: string }>("/v1/credentials/delete", { id: form.get("id") ?? "" });
    } catch (error) {
      // The API's refusal names /v1/jobs/cancel; here it names the jobs, which are also listed under "Held by", each linking to its page and cancel button.
      if (error instanceof AppError && error.code === "CONFLICT" && Array.isArray(error.data.job_ids)) {
        const ids = error.data.job_ids as string[];
        const held = new Map((await listReferences(req.deps.db, req.session.tenantId)).map((r) => [r.job_id, r]));
        const named = ids.slice(0, 5).map((id) => {
          const job = held.get(id);
          return `${job ? `${job.workflow} (${job.status.replace(/_/g, " ")}, ` : "("}job …${id.slice(-12)})`;
        });
        const more = ids.length > named.length ? ` and ${ids.length - named.length} more` : "";
        const jobs = ids.length === 1 ? "1 queued or running job" : `${ids.length} queued or running jobs`;
        const them = ids.length === 1 ? "it" : "them";
        const name = /^Credential "([^"]*)"/.exec(error.message)?.[1] ?? "";
        throw new AppError(
          "CONFLICT",
          `Credential "${name}" is still used by ${jobs}: ${named.join(", ")}${more}. Wait for ${them} to end, or open ${them} under "Held by" and cancel, then delete again.`,
          { data: error.data },
        );
      }
      throw error;
    }
    return redirect(req.c, "/ui/credentials", { kind: "ok", message: out.message });
  });
}
