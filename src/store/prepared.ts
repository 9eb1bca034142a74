import { CompiledQuery, type Compilable, type Kysely, type QueryResult } from 'kysely';
import { isPostgres } from './migrations.js';
import type { Database } from './schema.js';

/**
 * A hot query (every sign-in or authenticated request runs it) built with Kysely once per database kind and
 * then run as its compiled SQL with new values: building and compiling a query costs as much as SQLite running
 * it. `build` receives one marker per argument and must use each as a value exactly where the argument goes;
 * the markers in the compiled parameters are replaced by the arguments at each run. Keep Kysely's builder for
 * everything else.
 */
export function prepared<Args extends unknown[], Row>(build: (db: Kysely<Database>, ...args: Args) => Compilable<Row>) {
  const compiled = new Map<boolean, { sql: string; slots: Array<number | { value: unknown }> }>();
  const compile = (db: Kysely<Database>, args: Args) => {
    const postgres = isPostgres(db);
    let query = compiled.get(postgres);
    if (!query) {
      const markers = args.map((_, index) => `\u0000arg${index}\u0000`) as unknown as Args;
      const { sql, parameters } = build(db, ...markers).compile();
      const slots = parameters.map((value) => {
        const index = typeof value === 'string' ? /^\u0000arg(\d+)\u0000$/.exec(value)?.[1] : undefined;
        return index === undefined ? { value } : Number(index);
      });
      // Every argument must land in the SQL as a parameter (a marker inlined, or dropped, would be a bug).
      if (new Set(slots.filter((slot) => typeof slot === 'number')).size < args.length)
        throw new Error(`prepared(): an argument is not a parameter of ${sql}`);
      query = { sql, slots };
      compiled.set(postgres, query);
    }
    return { sql: query.sql, values: query.slots.map((slot) => (typeof slot === 'number' ? args[slot] : slot.value)) };
  };
  const run = async (db: Kysely<Database>, ...args: Args): Promise<QueryResult<Row>> => {
    const { sql, values } = compile(db, args);
    const held = heldConnections.get(db);
    if (held) return held.run(sql, values) as QueryResult<Row> | Promise<QueryResult<Row>>;
    return db.executeQuery<Row>(CompiledQuery.raw(sql, values));
  };
  /**
   * The same statement, its answer not awaited: in a transaction on our own PostgreSQL it is written with the
   * transaction's next statement or its COMMIT (one round trip for both), and its error fails that one — for a
   * transaction's last writes, whose answer nobody reads and whose error no step catches. Elsewhere it runs at once.
   */
  const later = async (db: Kysely<Database>, ...args: Args): Promise<void> => {
    const held = heldConnections.get(db);
    if (!held) {
      await run(db, ...args);
      return;
    }
    const { sql, values } = compile(db, args);
    await held.later(sql, values);
  };
  return Object.assign(run, { later });
}

/** Runs statements on the connection a transaction holds. */
export interface HeldRunner {
  /** One statement, at once (SQLite's runner answers synchronously). */
  run(query: string, parameters: unknown[]): QueryResult<unknown> | Promise<QueryResult<unknown>>;
  /** One statement written with the next one (PostgreSQL: database.ts WITH_NEXT_STATEMENT); SQLite runs it at once. */
  later(query: string, parameters: unknown[]): unknown;
}

const heldConnections = new WeakMap<Kysely<Database>, HeldRunner>();

/**
 * `db` is bound to one connection, which its transaction holds until it ends (transaction.ts): the hot queries run on it
 * directly, without going through Kysely's executor for each. They run when called, so a transaction awaits each
 * query before the next (as every step does): one left running would be overtaken (SQLite) or would hold the others
 * back (PostgreSQL answers in order).
 */
export function runOnHeldConnection(db: Kysely<Database>, runner: HeldRunner): { release(): void } {
  heldConnections.set(db, runner);
  return { release: () => heldConnections.delete(db) };
}

/** The runner of the transaction that holds `db`'s connection now (undefined: none does, or `db` is not bound). */
export const heldRunnerOf = (db: Kysely<Database>): HeldRunner | undefined => heldConnections.get(db);
