/** @jsxImportSource hono/jsx */
import { ActionForm, Badge, Page, Pager, When, type Flash } from "../layout";
import { redirect, type Mount, type UiRequest } from "../server";

/** What /v1/webhooks/list gives: never the signing secret. */
interface EndpointSummary {
  webhook_endpoint_id: string;
  url: string;
  description: string | null;
  active: boolean;
  disabled_reason: string | null;
  created_at: string;
  updated_at: string;
}

interface DeliverySummary {
  delivery_id: string;
  webhook_endpoint_id: string | null;
  job_id: string;
  event: string;
  url: string;
  status: string;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  response_excerpt: string | null;
  next_attempt_at: string | null;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

const EXCERPT_CHARS = 300;
const DELIVERIES_PER_PAGE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function excerpt(text: string, max = EXCERPT_CHARS): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function LastResponse(props: { d: DeliverySummary }) {
  const { d } = props;
  if (d.attempts === 0 && d.last_status_code === null && d.last_error === null) return <span class="muted">not sent yet</span>;
  return (
    <>
      {d.last_status_code !== null ? <strong data-status-code="">HTTP {d.last_status_code}</strong> : <strong>no answer</strong>}
      {d.last_duration_ms !== null ? <span class="muted"> in {d.last_duration_ms} ms</span> : null}
      {d.last_error ? (
        <>
          <br />
          <span data-last-error="">{excerpt(d.last_error)}</span>
        </>
      ) : null}
      {d.response_excerpt ? (
        <>
          <br />
          <code data-response-excerpt="">{excerpt(d.response_excerpt)}</code>
        </>
      ) : null}
    </>
  );
}

/** Webhooks: the endpoints (never their secrets) and the delivery log, with each delivery's attempts and last answer; redeliver. */
export function webhookPages(mount: Mount): void {
  const render = async (req: UiRequest, flash?: Flash) => {
    const endpointFilter = req.c.req.method === "GET" ? (req.c.req.query("endpoint") ?? "") : "";
    const cursor = req.c.req.method === "GET" ? (req.c.req.query("cursor") ?? "") : "";
    const { webhook_endpoints: endpoints } = await req.call<{ webhook_endpoints: EndpointSummary[] }>("/v1/webhooks/list", {});
    const filtered = UUID.test(endpointFilter) ? endpoints.find((e) => e.webhook_endpoint_id === endpointFilter) : undefined;
    const { deliveries, next_cursor } = await req.call<{ deliveries: DeliverySummary[]; next_cursor: string | null }>("/v1/webhooks/deliveries", {
      limit: DELIVERIES_PER_PAGE,
      ...(filtered ? { webhook_endpoint_id: filtered.webhook_endpoint_id } : {}),
      ...(cursor ? { cursor } : {}),
    });
    const endpointUrl = new Map(endpoints.map((e) => [e.webhook_endpoint_id, e.url]));
    const csrf = req.session.csrfToken;
    const filterQuery = filtered ? `endpoint=${filtered.webhook_endpoint_id}&` : "";
    return (
      <Page title="Webhooks" frame={req.frame("/ui/webhooks", flash)}>
        <p class="muted">
          Endpoints receive the end of every job of this tenant that has no callback URL of its own, signed with their secret. Secrets are never shown
          here; endpoints are added and changed through the API or the CLI.
        </p>
        <h2 id="endpoints">Endpoints</h2>
        {endpoints.length === 0 ? (
          <p>No webhook endpoints yet.</p>
        ) : (
          <div class="table-wrap">
            <table class="responsive endpoints">
              <caption class="muted">{endpoints.length === 1 ? "1 endpoint" : `${endpoints.length} endpoints`}</caption>
              <thead>
                <tr>
                  <th scope="col">URL</th>
                  <th scope="col">Description</th>
                  <th scope="col">Events</th>
                  <th scope="col">State</th>
                  <th scope="col">Created</th>
                  <th scope="col">Deliveries</th>
                </tr>
              </thead>
              <tbody>
                {endpoints.map((e) => (
                  <tr data-endpoint={e.webhook_endpoint_id}>
                    <td data-label="URL">
                      <code>{e.url}</code>
                    </td>
                    <td data-label="Description">{e.description ?? <span class="muted">—</span>}</td>
                    <td data-label="Events">
                      <code>job.completed</code>, <code>job.failed</code>, <code>job.cancelled</code>
                    </td>
                    <td data-label="State">
                      <Badge value={e.active ? "enabled" : "disabled"} />
                      {e.disabled_reason ? <p class="muted">{e.disabled_reason}</p> : null}
                    </td>
                    <td data-label="Created">
                      <When at={e.created_at} />
                    </td>
                    <td data-label="Deliveries">
                      <a href={`/ui/webhooks?endpoint=${e.webhook_endpoint_id}#deliveries`}>Deliveries to {e.url}</a>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}

        <h2 id="deliveries">Recent deliveries</h2>
        <form method="get" action="/ui/webhooks" class="filters" aria-label="Filter deliveries">
          <label>
            Endpoint
            <select name="endpoint">
              <option value="" selected={!filtered}>
                All endpoints and job callbacks
              </option>
              {endpoints.map((e) => (
                <option value={e.webhook_endpoint_id} selected={filtered?.webhook_endpoint_id === e.webhook_endpoint_id}>
                  {e.url}
                </option>
              ))}
            </select>
          </label>{" "}
          <button type="submit" class="secondary">
            Show deliveries
          </button>
        </form>
        {deliveries.length === 0 ? (
          <p>No deliveries{filtered ? " to this endpoint" : ""}{cursor ? " further back" : " yet"}.</p>
        ) : (
          <div class="table-wrap">
            <table class="responsive deliveries">
              <caption class="muted">
                {deliveries.length === 1 ? "1 delivery" : `${deliveries.length} deliveries`}
                {filtered ? ` to ${filtered.url}` : ""}, newest first
              </caption>
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col">Job</th>
                  <th scope="col">Status</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Last response</th>
                  <th scope="col">Next attempt</th>
                  <th scope="col">Created</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {deliveries.map((d) => (
                  <tr data-delivery={d.delivery_id}>
                    <td data-label="Event">
                      <code>{d.event}</code>
                      <br />
                      <span class="muted">
                        to {d.webhook_endpoint_id ? (endpointUrl.get(d.webhook_endpoint_id) ?? d.url) : `the callback URL of its job, ${d.url}`}
                      </span>
                    </td>
                    <td data-label="Job">
                      <a href={`/ui/jobs/${d.job_id}`}>
                        <code>{d.job_id}</code>
                      </a>
                    </td>
                    <td data-label="Status">
                      <Badge value={d.status} />
                    </td>
                    <td data-label="Attempts" data-attempts="">
                      {String(d.attempts)}
                    </td>
                    <td data-label="Last response">
                      <LastResponse d={d} />
                    </td>
                    <td data-label="Next attempt">
                      <When at={d.next_attempt_at} />
                    </td>
                    <td data-label="Created">
                      <When at={d.created_at} />
                    </td>
                    <td data-label="Actions">
                      <details>
                        <summary>Attempts and response</summary>
                        <dl class="delivery-detail">
                          <dt>Delivery id (webhook-id)</dt>
                          <dd>
                            <code>{d.delivery_id}</code>
                          </dd>
                          <dt>Sent to</dt>
                          <dd>
                            <code>{d.url}</code>
                          </dd>
                          <dt>Attempts</dt>
                          <dd>{String(d.attempts)}</dd>
                          <dt>Last status code</dt>
                          <dd>{d.last_status_code === null ? "none" : String(d.last_status_code)}</dd>
                          <dt>Last duration</dt>
                          <dd>{d.last_duration_ms === null ? "—" : `${d.last_duration_ms} ms`}</dd>
                          <dt>Last error</dt>
                          <dd>{d.last_error ?? "none"}</dd>
                          <dt>Response (first 512 bytes)</dt>
                          <dd>{d.response_excerpt ? <pre>{d.response_excerpt}</pre> : "none"}</dd>
                          <dt>Next attempt</dt>
                          <dd>
                            <When at={d.next_attempt_at} />
                          </dd>
                          <dt>Updated</dt>
                          <dd>
                            <When at={d.updated_at} />
                          </dd>
                          <dt>Completed</dt>
                          <dd>
                            <When at={d.completed_at} />
                          </dd>
                        </dl>
                      </details>
                      {d.status === "pending" ? (
                        <span class="muted">on its way</span>
                      ) : (
                        <ActionForm
                          action={`/ui/webhooks/deliveries/${d.delivery_id}/redeliver`}
                          csrf={csrf}
                          class="inline"
                          label={`Redeliver ${d.event} for job ${d.job_id}`}
                        >
                          {filtered ? <input type="hidden" name="endpoint" value={filtered.webhook_endpoint_id} /> : null}
                          <button type="submit" aria-label={`Redeliver ${d.event} for job ${d.job_id}`}>
                            Redeliver
                          </button>
                        </ActionForm>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager
          label="Delivery pages"
          newest={cursor ? { href: `/ui/webhooks?${filterQuery}#deliveries`, text: "Newest deliveries" } : undefined}
          older={next_cursor ? { href: `/ui/webhooks?${filterQuery}cursor=${encodeURIComponent(next_cursor)}#deliveries`, text: "Older deliveries" } : undefined}
        />
      </Page>
    );
  };

  mount.page("/ui/webhooks", render);
  mount.action("/ui/webhooks/deliveries/:id/redeliver", render, async (req) => {
    const id = req.c.req.param("id") ?? "";
    const out = await req.call<{ message: string }>("/v1/webhooks/redeliver", { delivery_id: id });
    const endpoint = (await req.form()).get("endpoint") ?? "";
    const back = UUID.test(endpoint) ? `/ui/webhooks?endpoint=${endpoint}#deliveries` : "/ui/webhooks#deliveries";
    return redirect(req.c, back, { kind: "ok", message: out.message });
  });
}
