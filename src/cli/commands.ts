import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { randomId, systemClock } from "../clock";
import { ENVIRONMENT, loadConfig, type Config } from "../config";
import { AppError, FatalError } from "../errors";
import { jsonLogger } from "../log";
import { deleteProfile, listProfiles, uploadProfileState } from "../profiles/service";
import { profileName, storageState } from "../profiles/state";
import { openStore, startServer } from "../server/start";
import { describeDatabaseUrl, openPostgres } from "../store/postgres";
import { damagedDatabaseError, openDatabase } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import { createApiKey, createTenant, requireTenant, TenantError } from "../tenants/service";
import { listApiKeys, listTenants, revokeApiKey } from "../tenants/store";
import { generateMasterKey, masterKeyId, toMasterKey } from "../vault/master-key";
import { VERSION_STRING } from "../version";
import { BACKUP_OPTIONS, BACKUP_USAGE, backupDatabase, backupPostgres, RESTORE_USAGE, restoreDatabase, restorePostgres } from "./backup";
import { createSignInLink } from "../ui/sessions";
import type { Caller } from "../app-deps";
import { devBanner, devMasterKey, devPaths, ensureDevTenant } from "./dev";
import { UsageError, type Io } from "./io";
import { RUN_OPTIONS, RUN_USAGE, runWorkflowLocally } from "./run";

interface Command {
  summary: string;
  usage: string;
  options?: ParseArgsConfig["options"];
  run(io: Io, values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
}

const DB_OPTION = {
  db: { type: "string" },
  dev: { type: "boolean" },
} as const satisfies ParseArgsConfig["options"];

const DB_HELP = `  --db PATH     the database file (default: UNDERSTUDY_DB, else ./data/understudy.db)
  --dev         use the dev-mode database, ./.understudy/understudy.db`;

const ENV_HELP = Object.entries(ENVIRONMENT)
  .map(([name, value]) => `  ${name.padEnd(38)} ${value}`)
  .join("\n");

export const commands: Record<string, Command> = {
  serve: {
    summary: "run the server (production: needs a master key)",
    usage: `usage: understudy serve

Runs the API server. Needs UNDERSTUDY_MASTER_KEY or UNDERSTUDY_MASTER_KEY_FILE.

Environment (default):
${ENV_HELP}`,
    async run(io) {
      const config = loadConfig(io.env);
      if (!config.masterKey) {
        throw new FatalError(
          "serve needs a master key: set UNDERSTUDY_MASTER_KEY (or UNDERSTUDY_MASTER_KEY_FILE) to the output of `understudy keygen`. " +
            "For a local try-out, `understudy dev` makes one for you.",
        );
      }
      const dbPath = config.dbPath ?? join(io.cwd, "data", "understudy.db");
      const keyring = { current: toMasterKey(config.masterKey), previous: config.masterKeyPrevious && toMasterKey(config.masterKeyPrevious) };
      const store = await openStore(config, dbPath, keyring);
      const stopping = io.stopSignal();
      const server = await startServer(config, store, requestLogger(io), { workflowsDir: workflowsDirOf(io, config) });
      io.err(`${VERSION_STRING} listening on ${server.url} (database ${config.databaseUrl ? describeDatabaseUrl(config.databaseUrl) : dbPath}, master key ${keyring.current.id})\n`);
      return serveUntilStopped(io, server, stopping);
    },
  },
  dev: {
    summary: "run the server for local development, with embedded defaults",
    usage: `usage: understudy dev

Runs the server with everything it needs kept in ./.understudy/: the database,
a master key (made on first start), and a "dev" tenant whose API key is saved
in ./.understudy/dev-api-key. Listens on UNDERSTUDY_LISTEN (default 127.0.0.1:8787).`,
    async run(io) {
      const config = loadConfig(io.env);
      const paths = devPaths(io.cwd, config.dbPath);
      const master = devMasterKey(paths, config.masterKey);
      const keyring = { current: toMasterKey(master.key), previous: config.masterKeyPrevious && toMasterKey(config.masterKeyPrevious) };
      const store = await openStore(config, paths.db, keyring);
      let newKey: string | undefined;
      let devCaller: Caller;
      try {
        ({ newKey, caller: devCaller } = await ensureDevTenant(store.db, paths));
      } catch (error) {
        await store.db.destroy();
        throw error;
      }
      const workflowsDir = workflowsDirOf(io, config);
      const stopping = io.stopSignal();
      const server = await startServer(config, store, requestLogger(io), {
        workflowsDir,
        watchWorkflows: true,
        allowPrivateWebhooksByDefault: true,
      });
      const loaded = server.workflows.list();
      const ready = loaded.filter((w) => w.status === "ready").length;
      const link = await createSignInLink(server.deps, devCaller);
      io.err(
        devBanner({
          version: VERSION_STRING,
          url: server.url,
          cwd: io.cwd,
          paths,
          keyId: keyring.current.id,
          newKey,
          generatedKey: master.generated,
          workflowsDir,
          workflows: { ready, failed: loaded.length - ready },
          isolation: server.isolation,
          database: config.databaseUrl && describeDatabaseUrl(config.databaseUrl),
          signInLink: `${server.url}/ui/sign-in/link?token=${link.token}`,
        }),
      );
      return serveUntilStopped(io, server, stopping);
    },
  },
  keygen: {
    summary: "make a new random master key (--out FILE writes it with mode 0600)",
    usage: `usage: understudy keygen [--out FILE]

Prints a new master key (32 random bytes, base64) on stdout, and its id on stderr.
Keep it secret and keep it safe: without it the stored values cannot be read.

  --out FILE    write the key to FILE instead, readable by its owner only (mode
                0600); an existing FILE is never overwritten
To redirect stdout instead, set the umask first, or the file is made 0644:
  (umask 077; understudy keygen > master.key)`,
    options: { out: { type: "string" } },
    async run(io, values, positionals) {
      if (positionals.length > 0) throw new UsageError(`keygen takes no arguments, got: ${positionals.join(" ")}`, this.usage);
      const key = generateMasterKey();
      const id = masterKeyId(new Uint8Array(Buffer.from(key, "base64")));
      const out = values.out as string | undefined;
      if (out === undefined) {
        io.out(`${key}\n`);
        io.err(`master key id ${id}\n`);
        return 0;
      }
      writeKeyFile(resolve(io.cwd, out), `${key}\n`);
      io.err(`wrote master key ${id} to ${out} (mode 0600)\n`);
      return 0;
    },
  },
  tenants: {
    summary: "create or list tenants",
    usage: `usage: understudy tenants create NAME [--db PATH | --dev]
       understudy tenants list [--db PATH | --dev]

${DB_HELP}`,
    options: DB_OPTION,
    async run(io, values, positionals) {
      const [action, name, ...rest] = positionals;
      if (action === "create" && name && rest.length === 0) {
        return withDatabase(io, values, async (db) => {
          const tenant = await createTenant(db, systemClock, randomId, name);
          io.out(`${tenant.id}\t${tenant.name}\n`);
          io.err(`Created tenant "${tenant.name}". Give it an API key with: understudy keys create --tenant ${tenant.name}\n`);
          return 0;
        });
      }
      if (action === "list" && positionals.length === 1) {
        return withDatabase(io, values, async (db) => {
          for (const t of await listTenants(db)) io.out(`${t.id}\t${t.name}\t${t.createdAt}\n`);
          return 0;
        });
      }
      throw new UsageError(action ? `unknown or incomplete tenants command: ${positionals.join(" ")}` : "tenants needs create or list", this.usage);
    },
  },
  keys: {
    summary: "create, list or revoke a tenant's API keys",
    usage: `usage: understudy keys create --tenant NAME [--name LABEL] [--db PATH | --dev]
       understudy keys list --tenant NAME [--db PATH | --dev]
       understudy keys revoke ID [--db PATH | --dev]

keys create prints the new key alone on stdout; it is shown only this once.
${DB_HELP}`,
    options: { ...DB_OPTION, tenant: { type: "string" }, name: { type: "string" } },
    async run(io, values, positionals) {
      const [action, id, ...rest] = positionals;
      const tenantName = values.tenant as string | undefined;
      if (action === "create" && !id && tenantName) {
        return withDatabase(io, values, async (db) => {
          const tenant = await requireTenant(db, tenantName);
          const { key, info } = await createApiKey(db, systemClock, randomId, tenant.id, (values.name as string | undefined) ?? null);
          io.out(`${key}\n`);
          io.err(`Created API key ${info.id} (${info.prefix}...) for tenant "${tenant.name}". It is shown only this once.\n`);
          return 0;
        });
      }
      if (action === "list" && !id && tenantName) {
        return withDatabase(io, values, async (db) => {
          const tenant = await requireTenant(db, tenantName);
          for (const k of await listApiKeys(db, tenant.id)) {
            const state = k.revokedAt ? `revoked ${k.revokedAt}` : "active";
            io.out(`${k.id}\t${k.prefix}...\t${k.name ?? "-"}\tcreated ${k.createdAt}\tlast used ${k.lastUsedAt ?? "never"}\t${state}\n`);
          }
          return 0;
        });
      }
      if (action === "revoke" && id && rest.length === 0) {
        return withDatabase(io, values, async (db) => {
          const outcome = await revokeApiKey(db, id, systemClock.now().toISOString());
          if (outcome === "missing") throw new FatalError(`No API key with id ${id}. List them with \`understudy keys list --tenant NAME\`.`);
          io.err(outcome === "revoked" ? `Revoked API key ${id}.\n` : `API key ${id} was already revoked.\n`);
          return 0;
        });
      }
      throw new UsageError(action ? `unknown or incomplete keys command: ${positionals.join(" ")}` : "keys needs create, list or revoke", this.usage);
    },
  },
  profiles: {
    summary: "upload, list or delete a tenant's browser profiles (saved signed-in browser state)",
    usage: `usage: understudy profiles upload --tenant NAME PROFILE FILE [--db PATH | --dev]
       understudy profiles list --tenant NAME [--db PATH | --dev]
       understudy profiles delete --tenant NAME PROFILE [--db PATH | --dev]

upload stores FILE, a Playwright storageState JSON file (context.storageState({ path })),
as the state of the tenant's profile PROFILE, made if it is new, replaced otherwise.
It is sealed with the tenant's key: upload needs UNDERSTUDY_MASTER_KEY (or
UNDERSTUDY_MASTER_KEY_FILE). A workflow declaring authProfile: "PROFILE" starts with it.
delete refuses while a running job uses the profile.
${DB_HELP}`,
    options: { ...DB_OPTION, tenant: { type: "string" } },
    async run(io, values, positionals) {
      const [action, name, file, ...rest] = positionals;
      const tenantName = values.tenant as string | undefined;
      if (!tenantName) throw new UsageError("profiles needs --tenant NAME", this.usage);
      const checkedName = () => {
        const parsed = profileName.safeParse(name);
        if (!parsed.success) throw new UsageError(`invalid profile name "${name}": ${parsed.error.issues[0]?.message}`, this.usage);
        return parsed.data;
      };
      if (action === "upload" && name && file && rest.length === 0) {
        const profile = checkedName();
        let text: string;
        try {
          text = readFileSync(resolve(io.cwd, file), "utf8");
        } catch (error) {
          throw new FatalError(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"}).`);
        }
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          throw new FatalError(`${file} is not JSON; it must be a Playwright storageState file ({"cookies": [...], "origins": [...]}).`);
        }
        const parsed = storageState.safeParse(json);
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          throw new FatalError(`${file} is not a Playwright storageState: ${issue.path.join(".") || "(file)"}: ${issue.message}.`);
        }
        const config = loadConfig(io.env);
        if (!config.masterKey) throw new FatalError("profiles upload seals the state with the tenant's key: set UNDERSTUDY_MASTER_KEY (or UNDERSTUDY_MASTER_KEY_FILE) to the server's master key.");
        const keyring = { current: toMasterKey(config.masterKey), previous: config.masterKeyPrevious && toMasterKey(config.masterKeyPrevious) };
        const store = await openStore(config, dbPathOf(io, values, config), keyring);
        try {
          const tenant = await requireTenant(store.db, tenantName);
          const deps = { db: store.db, vault: store.vault, clock: systemClock, newId: randomId };
          const { id, created, version } = await uploadProfileState(deps, { tenantId: tenant.id, apiKeyId: null }, profile, parsed.data, config.maxBodyBytes).catch(asFatal);
          io.out(`${id}\t${profile}\tversion ${version}\n`);
          io.err(`${created ? "Created" : "Replaced the state of"} browser profile "${profile}" of tenant "${tenant.name}" (${parsed.data.cookies.length} cookies, ${parsed.data.origins.length} origins).\n`);
          return 0;
        } finally {
          await store.db.destroy();
        }
      }
      if (action === "list" && !name) {
        return withDatabase(io, values, async (db) => {
          const tenant = await requireTenant(db, tenantName);
          for (const p of await listProfiles(db, tenant.id)) io.out(`${p.id}\t${p.name}\t${p.version > 0 ? `version ${p.version}` : "no state"}\tupdated ${p.updatedAt}\n`);
          return 0;
        });
      }
      if (action === "delete" && name && !file) {
        const profile = checkedName();
        return withDatabase(io, values, async (db) => {
          const tenant = await requireTenant(db, tenantName);
          // Deleting needs no key: nothing is sealed or opened.
          await deleteProfile({ db, clock: systemClock }, { tenantId: tenant.id, apiKeyId: null }, profile).catch(asFatal);
          io.err(`Deleted browser profile "${profile}" of tenant "${tenant.name}".\n`);
          return 0;
        });
      }
      throw new UsageError(action ? `unknown or incomplete profiles command: ${positionals.join(" ")}` : "profiles needs upload, list or delete", this.usage);
    },
  },
  "rotate-key": {
    summary: "re-wrap every tenant key with a new master key",
    usage: `usage: understudy rotate-key [--db PATH | --dev]

Set UNDERSTUDY_MASTER_KEY to the new key and UNDERSTUDY_MASTER_KEY_PREVIOUS to
the old one. Every tenant data key is re-wrapped with the new key in one
transaction; values are not re-encrypted and stay readable throughout, also
by a server that is running. Safe to run again. With several instances on
PostgreSQL, restart them with both keys first, rotate, then restart them with
the new key alone: no tenant key is left wrapped by the old one (README).
${DB_HELP}`,
    options: DB_OPTION,
    async run(io, values) {
      const config = loadConfig(io.env);
      if (!config.masterKey || !config.masterKeyPrevious) {
        throw new FatalError("rotate-key needs UNDERSTUDY_MASTER_KEY (the new key) and UNDERSTUDY_MASTER_KEY_PREVIOUS (the old key).");
      }
      const keyring = { current: toMasterKey(config.masterKey), previous: toMasterKey(config.masterKeyPrevious) };
      const store = await openStore(config, dbPathOf(io, values, config), keyring);
      try {
        const { rewrapped, alreadyCurrent } = await store.vault.rotate(store.db);
        io.err(
          `Rotated to master key ${keyring.current.id}: ${rewrapped} tenant key(s) re-wrapped, ${alreadyCurrent} already on it. ` +
            "Restart servers with the new key; UNDERSTUDY_MASTER_KEY_PREVIOUS is no longer needed.\n",
        );
        return 0;
      } finally {
        await store.db.destroy();
      }
    },
  },
  backup: {
    summary: "write a consistent copy of the database, also while the server runs",
    usage: BACKUP_USAGE,
    options: BACKUP_OPTIONS,
    run(io, values, positionals) {
      const config = loadConfig(io.env);
      if (config.databaseUrl) return backupPostgres(io, values, positionals, config.databaseUrl);
      return backupDatabase(io, values, positionals, dbPathOf(io, values, config));
    },
  },
  restore: {
    summary: "put a backup in place of the database (server stopped; checks the master key)",
    usage: RESTORE_USAGE,
    options: BACKUP_OPTIONS,
    run(io, values, positionals) {
      const config = loadConfig(io.env);
      if (config.databaseUrl) return restorePostgres(io, values, positionals, config.databaseUrl);
      return restoreDatabase(io, values, positionals, dbPathOf(io, values, config));
    },
  },
  run: {
    summary: "run one workflow file locally (no server, no database)",
    usage: RUN_USAGE,
    options: RUN_OPTIONS,
    run: (io, values, positionals) => runWorkflowLocally(io, values, positionals),
  },
  healthcheck: {
    summary: "exit 0 when the server's /healthz answers (for Docker)",
    usage: `usage: understudy healthcheck [--url URL]

Asks GET /healthz of the server at UNDERSTUDY_LISTEN (or --url); exit 0 when it answers 200, else 1.`,
    options: { url: { type: "string" } },
    async run(io, values) {
      const config = loadConfig(io.env);
      const host = ["0.0.0.0", "::", ""].includes(config.listen.hostname) ? "127.0.0.1" : config.listen.hostname;
      const base = (values.url as string | undefined) ?? `http://${host.includes(":") ? `[${host}]` : host}:${config.listen.port}`;
      try {
        const response = await fetch(`${base.replace(/\/$/, "")}/healthz`, { signal: AbortSignal.timeout(3000) });
        if (response.status === 200) return 0;
        io.err(`unhealthy: /healthz answered ${response.status}\n`);
      } catch (error) {
        io.err(`unhealthy: ${base} did not answer (${error instanceof Error ? error.message : "error"})\n`);
      }
      return 1;
    },
  },
  version: {
    summary: "print the version",
    usage: "usage: understudy version",
    async run(io) {
      io.out(`${VERSION_STRING}\n`);
      return 0;
    },
  },
};

export const MAIN_USAGE = `usage: understudy <command> [options]

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
  .join("\n")}

Run \`understudy <command> --help\` for a command's options.`;

/** Runs one command line; returns the exit code. Usage errors are 2, failures 1. */
export async function runCli(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    (name ? io.out : io.err)(`${MAIN_USAGE}\n`);
    return name ? 0 : 2;
  }
  if (name === "--version") return commands.version!.run(io, {}, []);
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    io.err(`understudy: unknown command "${name}"\n\n${MAIN_USAGE}\n`);
    return 2;
  }
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...command.options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error), command.usage);
    }
    if (parsed.values.help) {
      io.out(`${command.usage}\n`);
      return 0;
    }
    if (!command.options && parsed.positionals.length > 0) {
      throw new UsageError(`${name} takes no arguments, got: ${parsed.positionals.join(" ")}`, command.usage);
    }
    return await command.run(io, parsed.values, parsed.positionals);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`understudy ${name}: ${error.message}\n\n${error.usage}\n`);
      return 2;
    }
    if (error instanceof FatalError || error instanceof TenantError) {
      io.err(`understudy ${name}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** A service's refusal (not found, in use, too large) as the command's failure. */
function asFatal(error: unknown): never {
  if (error instanceof AppError) {
    const jobs = Array.isArray(error.data.job_ids) ? ` Jobs: ${error.data.job_ids.join(", ")}.` : "";
    throw new FatalError(`${error.message}${jobs}`);
  }
  throw error;
}

function requestLogger(io: Io) {
  return jsonLogger((line) => io.out(line));
}

function workflowsDirOf(io: Io, config: Config): string {
  return resolve(io.cwd, config.workflowsDir ?? "workflows");
}

function dbPathOf(io: Io, values: Record<string, string | boolean | undefined>, config: Config): string {
  if (typeof values.db === "string") return values.db;
  if (values.dev) return devPaths(io.cwd).db;
  return config.dbPath ?? join(io.cwd, "data", "understudy.db");
}

/** Admin commands work on the database directly; they need no master key (tenant data keys are made at first use). */
async function withDatabase(io: Io, values: Record<string, string | boolean | undefined>, work: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<number>) {
  const config = loadConfig(io.env);
  // With UNDERSTUDY_DATABASE_URL, the PostgreSQL database the instances share (--db names a SQLite file instead).
  const postgres = config.databaseUrl !== undefined && values.db === undefined && !values.dev;
  const db = postgres
    ? await openPostgres({ url: config.databaseUrl!, poolSize: 2 })
    : await openDatabase({ path: dbPathOf(io, values, config), synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
  try {
    await migrateToLatest(db).catch((error: unknown) => {
      throw (postgres ? undefined : damagedDatabaseError(dbPathOf(io, values, config), error)) ?? error;
    });
    return await work(db);
  } finally {
    await db.destroy();
  }
}

/**
 * Creates the file with mode 0600, failing if anything is at the path already
 * (O_EXCL: a symlink there too), so an existing key, perhaps the only copy
 * of one, is never overwritten.
 */
function writeKeyFile(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new FatalError(`${path} already exists; keygen --out never overwrites a file (it may hold the only copy of a key). Choose another name, or remove it first.`);
    throw new FatalError(`cannot create ${path} (${code ?? "error"}).`);
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * Waits for SIGINT or SIGTERM, then closes the server. `stopping` is taken
 * before the server starts listening: the server answers /healthz while the
 * rest of its start-up finishes, and a SIGTERM sent on that first 200 must
 * shut it down cleanly, not find no handler and kill it (exit 143).
 */
async function serveUntilStopped(io: Io, server: { close(): Promise<void> }, stopping: Promise<string>): Promise<number> {
  const signal = await stopping;
  io.err(`received ${signal}, shutting down\n`);
  await server.close();
  return 0;
}
