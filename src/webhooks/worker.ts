import type { Clock, IdSource } from "../clock";
import type { Config } from "../config";
import type { JobEndHook } from "../jobs/lifecycle";
import type { Logger } from "../log";
import type { Db } from "../store/database";
import type { Vault } from "../vault/vault";

export interface WebhookDeps {
  db: Db;
  vault: Vault;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  config: Pick<Config, "webhooks">;
  /** The effective private-address policy (config, or the command's default). */
  allowPrivate: boolean;
}

/** Writes a job's deliveries (the outbox rows) in the transaction that ends it. TODO(webhooks issue). */
export function webhookJobEndHook(_deps: WebhookDeps): JobEndHook {
  return async () => {};
}

/** Sends pending deliveries; resumes after a restart. TODO(webhooks issue). */
export class DeliveryWorker {
  constructor(readonly deps: WebhookDeps) {}
  start(): void {}
  wake(): void {}
  async stop(): Promise<void> {}
}
