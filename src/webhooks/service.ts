import { AppError } from "../errors";
import type { AppDeps, Caller } from "../http/route";
import { lockTenant } from "../store/locks";
import { refuseLiteralTarget } from "./address";
import { endpointSecretContext, generateSigningSecret } from "./signing";
import * as store from "./store";

const endpointNotFound = (id: string) =>
  new AppError("NOT_FOUND", `Webhook endpoint ${id} not found. List this tenant's endpoints with /v1/webhooks/list.`);

const deliveryNotFound = (id: string) =>
  new AppError("NOT_FOUND", `Webhook delivery ${id} not found. List this tenant's deliveries with /v1/webhooks/deliveries.`);

export async function createEndpoint(
  deps: AppDeps,
  caller: Caller,
  input: { url: string; signingSecret?: string; description?: string; active: boolean },
): Promise<{ id: string; generatedSecret: string | undefined }> {
  refuseLiteralTarget(input.url, deps.webhooks.allowPrivate, "url");
  const generatedSecret = input.signingSecret === undefined ? generateSigningSecret() : undefined;
  const secret = input.signingSecret ?? generatedSecret!;
  const id = deps.newId();
  const at = deps.clock.now().toISOString();
  await deps.db.transaction().execute(async (trx) => {
    const sealedSecret = await deps.vault.sealForTenant(trx, caller.tenantId, endpointSecretContext(id), secret);
    await store.insertEndpoint(trx, {
      id,
      tenantId: caller.tenantId,
      url: input.url,
      sealedSecret,
      description: input.description || null,
      active: input.active,
      disabledReason: null,
      createdAt: at,
      updatedAt: at,
    });
  });
  return { id, generatedSecret };
}

export async function listEndpoints(deps: AppDeps, caller: Caller) {
  return store.listEndpoints(deps.db, caller.tenantId);
}

export async function updateEndpoint(
  deps: AppDeps,
  caller: Caller,
  id: string,
  change: { url?: string; signingSecret?: string; description?: string; active?: boolean },
): Promise<void> {
  if (change.url !== undefined) refuseLiteralTarget(change.url, deps.webhooks.allowPrivate, "url");
  const at = deps.clock.now().toISOString();
  await deps.db.transaction().execute(async (trx) => {
    if (!(await store.findEndpoint(trx, caller.tenantId, id))) throw endpointNotFound(id);
    const sealedSecret =
      change.signingSecret === undefined ? undefined : await deps.vault.sealForTenant(trx, caller.tenantId, endpointSecretContext(id), change.signingSecret);
    await store.updateEndpoint(trx, caller.tenantId, id, {
      url: change.url,
      sealedSecret,
      // An empty description clears it.
      description: change.description === undefined ? undefined : change.description || null,
      active: change.active,
      // Turning an endpoint on or off by hand clears the reason the server turned it off.
      disabledReason: change.active === undefined ? undefined : null,
      updatedAt: at,
    });
  });
}

/** Deletes an endpoint; its deliveries stay in the log, and those still pending fail. */
export async function deleteEndpoint(deps: AppDeps, caller: Caller, id: string): Promise<void> {
  const at = deps.clock.now().toISOString();
  await deps.db.transaction().execute(async (trx) => {
    // Under the tenant's lock, like redeliver: a redelivery either comes first
    // (and is failed here) or sees the endpoint gone (409), never re-queued after this.
    await lockTenant(trx, caller.tenantId);
    if (!(await store.deleteEndpoint(trx, caller.tenantId, id))) throw endpointNotFound(id);
    await store.failPendingDeliveriesOf(trx, caller.tenantId, id, "The webhook endpoint was deleted.", at);
  });
}

export async function listDeliveries(
  deps: AppDeps,
  caller: Caller,
  filter: { endpointId?: string; jobId?: string; status?: store.DeliveryStatus; beforeSeq?: number; limit: number },
) {
  return store.listDeliveries(deps.db, caller.tenantId, filter);
}

/** Where a delivery of the caller's stands in the delivery log (its seq), or undefined when there is no such delivery. */
export async function deliveryPlace(deps: AppDeps, caller: Caller, id: string): Promise<number | undefined> {
  return (await store.findDelivery(deps.db, caller.tenantId, id))?.seq;
}

/**
 * Sends an ended delivery again, with the same webhook-id and a fresh
 * attempt count, to the endpoint's current URL and secret. A pending one is
 * already on its way (409); an endpoint that is off or gone must be dealt
 * with first (409).
 */
export async function redeliver(deps: AppDeps, caller: Caller, id: string): Promise<store.Delivery> {
  const at = deps.clock.now().toISOString();
  const delivery = await deps.db.transaction().execute(async (trx) => {
    await lockTenant(trx, caller.tenantId);
    const found = await store.findDelivery(trx, caller.tenantId, id);
    if (!found) throw deliveryNotFound(id);
    if (found.status === "pending") {
      throw new AppError(
        "CONFLICT",
        `Webhook delivery ${id} is still pending; its next attempt is at ${found.nextAttemptAt}. Redeliver it once it has succeeded or failed.`,
        { data: { status: found.status, next_attempt_at: found.nextAttemptAt } },
      );
    }
    if (found.endpointId !== null) {
      const endpoint = await store.findEndpoint(trx, caller.tenantId, found.endpointId);
      if (!endpoint) {
        throw new AppError("CONFLICT", `The webhook endpoint of delivery ${id} was deleted, so it cannot be redelivered.`, {
          data: { webhook_endpoint_id: found.endpointId },
        });
      }
      if (!endpoint.active) {
        throw new AppError(
          "CONFLICT",
          `The webhook endpoint of delivery ${id} is turned off. Turn it on with /v1/webhooks/update and active: true, then redeliver.`,
          { data: { webhook_endpoint_id: found.endpointId, disabled_reason: endpoint.disabledReason } },
        );
      }
    }
    await store.requeueDelivery(trx, caller.tenantId, id, at);
    return found;
  });
  deps.webhooks.wake();
  return delivery;
}
