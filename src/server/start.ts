import { systemClock, randomId, type Clock, type IdSource } from "../clock";
import type { Config } from "../config";
import { createApp } from "../http/app";
import type { Logger } from "../log";
import { openDatabase, type Db } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import { Vault, type Keyring } from "../vault/vault";
import { listen, type Listening } from "./listen";

export interface OpenedStore {
  db: Db;
  vault: Vault;
}

/** Opens the database, brings its schema up to date and verifies the master key, in that order. */
export async function openStore(config: Config, dbPath: string, keyring: Keyring, clock: Clock = systemClock): Promise<OpenedStore> {
  const db = await openDatabase({ path: dbPath, synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
  try {
    await migrateToLatest(db);
    const vault = await Vault.open(db, keyring, clock);
    return { db, vault };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

export interface RunningServer extends Listening {
  readonly db: Db;
  readonly vault: Vault;
  close(): Promise<void>;
}

export async function startServer(
  config: Config,
  store: OpenedStore,
  log: Logger,
  options: { clock?: Clock; newId?: IdSource } = {},
): Promise<RunningServer> {
  const app = createApp({
    db: store.db,
    vault: store.vault,
    config,
    clock: options.clock ?? systemClock,
    newId: options.newId ?? randomId,
    log,
  });
  const listening = await listen(app, { ...config.listen, maxBodyBytes: config.maxBodyBytes });
  return {
    ...listening,
    db: store.db,
    vault: store.vault,
    async close() {
      await listening.stop();
      await store.db.destroy();
    },
  };
}
