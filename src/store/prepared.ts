import { CompiledQuery } from "kysely";
import { readerOf, type Db } from "./database";
import { isPostgres } from "./postgres";

/** A query builder, or a raw `sql` template (which compiles against a database). */
type Buildable<Row> = { compile(db: Db): CompiledQuery<Row> };

/**
 * A query that Kysely builds and compiles once per engine, then runs again
 * with other values: on the hot paths (every request's API key, every
 * credentials/get and upsert, every job's claim and end) building and
 * compiling a query costs more than SQLite takes to run it.
 *
 * `build` writes the query with `slot("name")` wherever a value goes; the
 * slots are found in the compiled parameters, so the SQL and the order of
 * its parameters are Kysely's, for each dialect, never written by hand. The
 * driver then reuses its prepared statement for the SQL (database.ts).
 */
export class PreparedQuery<Input extends Record<string, unknown>, Row> {
  readonly #build: (db: Db, slot: <K extends keyof Input & string>(name: K) => Input[K]) => Buildable<Row>;
  readonly #compiled: { sqlite?: Compiled<Input>; postgres?: Compiled<Input> } = {};

  constructor(build: (db: Db, slot: <K extends keyof Input & string>(name: K) => Input[K]) => Buildable<Row>) {
    this.#build = build;
  }

  /** The SQL and where each input goes in its parameters, compiled on first use for the engine of `db`. */
  compiled(db: Db): Compiled<Input> {
    const engine = isPostgres(db) ? "postgres" : "sqlite";
    return (this.#compiled[engine] ??= compile(db, this.#build));
  }

  async execute(db: Db, input: Input): Promise<Row[]> {
    const { sql, slots } = this.compiled(db);
    return (await db.executeQuery<Row>(CompiledQuery.raw(sql, parameters(slots, input)))).rows;
  }

  async executeTakeFirst(db: Db, input: Input): Promise<Row | undefined> {
    return (await this.execute(db, input))[0];
  }

  /**
   * The first row, read from committed data: through the database's read
   * connection when it has one (SQLite, outside a transaction: no wait
   * behind a write), else like executeTakeFirst.
   */
  async readFirst(db: Db, input: Input): Promise<Row | undefined> {
    const reader = readerOf(db);
    if (!reader) return this.executeTakeFirst(db, input);
    const { sql, slots } = this.compiled(db);
    return reader.get<Row>(sql, parameters(slots, input));
  }
}

/** The parameters for these inputs, in the compiled order. */
function parameters<Input extends Record<string, unknown>>(slots: Compiled<Input>["slots"], input: Input): unknown[] {
  return slots.map((slot) => (slot.name === undefined ? slot.constant : input[slot.name]));
}

/**
 * Prepared queries of one kind whose SQL depends on a key, typically how many
 * values an IN list holds: one PreparedQuery per key, each compiled once (a
 * batch of n jobs ends with the query for n). At most `maxKeys` are kept.
 */
export class PreparedQueries<Input extends Record<string, unknown>, Row> {
  readonly #byKey = new Map<string, PreparedQuery<Input, Row>>();

  constructor(
    private readonly make: (key: string) => PreparedQuery<Input, Row>,
    private readonly maxKeys = 256,
  ) {}

  for(key: string | number): PreparedQuery<Input, Row> {
    const k = String(key);
    let query = this.#byKey.get(k);
    if (!query) {
      if (this.#byKey.size >= this.maxKeys) this.#byKey.clear();
      this.#byKey.set(k, (query = this.make(k)));
    }
    return query;
  }
}

/** The slots of an IN list of `size` values (`${prefix}0`, `${prefix}1`, ...), and the input that fills them. */
export const listSlots = <T>(slot: (name: string) => T, prefix: string, size: number): T[] => Array.from({ length: size }, (_, i) => slot(`${prefix}${i}`));
export const listInput = <T>(prefix: string, values: readonly T[]): Record<string, T> =>
  Object.fromEntries(values.map((value, i) => [`${prefix}${i}`, value]));

export interface Compiled<Input> {
  sql: string;
  /** Each parameter: an input by name, or a constant the query itself holds (e.g. a status it filters on). */
  slots: { name?: keyof Input & string; constant?: unknown }[];
}

// What a slot holds while the query is compiled. Only the compile step looks
// for it, among the parameters of the query it built itself: values given at
// run time are never inspected, whatever they hold.
const SLOT_PREFIX = "\u0000understudy-slot:";

function compile<Input extends Record<string, unknown>>(
  db: Db,
  build: (db: Db, slot: <K extends keyof Input & string>(name: K) => Input[K]) => Buildable<unknown>,
): Compiled<Input> {
  const named = new Set<string>();
  const compiled = build(db, (name) => {
    named.add(name);
    return `${SLOT_PREFIX}${name}` as never;
  }).compile(db);
  const slots = compiled.parameters.map((parameter) =>
    typeof parameter === "string" && parameter.startsWith(SLOT_PREFIX) ? { name: parameter.slice(SLOT_PREFIX.length) as keyof Input & string } : { constant: parameter },
  );
  for (const name of named) {
    if (!slots.some((s) => s.name === name)) throw new Error(`prepared query: the slot "${name}" is not among the compiled parameters`);
  }
  return { sql: compiled.sql, slots };
}
