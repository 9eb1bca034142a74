import { CompiledQuery, Kysely, PostgresIntrospector, SqliteIntrospector, type Dialect, type Driver } from 'kysely';
import { sqliteRunnerOf } from './database.js';
import { isPostgres } from './migrations.js';
import { heldRunnerOf, runOnHeldConnection, type HeldRunner } from './prepared.js';
import type { Database } from './schema.js';

/** PostgreSQL answered COMMIT with ROLLBACK: a statement of the transaction had failed, so nothing of it was written. */
export class TransactionRolledBackError extends Error {
  constructor() {
    super('the transaction was rolled back at COMMIT: one of its statements had failed');
    this.name = 'TransactionRolledBackError';
  }
}

const ENDED = "a transaction's storage was used after the transaction ended";
const NESTED = 'Storage.transaction: already inside a transaction';

/**
 * Runs `work` in one transaction on one connection of `db`, given a Kysely of its own that runs every statement on
 * that connection — and refuses to, for good, once the transaction has ended: a Storage kept past it fails instead of
 * writing into whichever transaction has the connection next. That Kysely is a light one (the database's executor
 * with another connection provider, no driver of its own); Kysely's transaction() would make a builder, a Transaction
 * and two executors for each, copies and Object.freeze of objects made by spreads (on Node 20 each gets a hidden class
 * of its own). BEGIN, COMMIT and ROLLBACK, and the hot prepared statements (prepared.ts), run on the connection directly.
 * SQLite: the write lock is taken at BEGIN (`begin immediate`). A plain (deferred) transaction that reads, then writes,
 * fails at once with "database is locked" when another process (a second worker) wrote meanwhile, instead of waiting
 * for busy_timeout; `work` is told it holds the lock (`writeLocked`).
 */
export function runTransaction<T>(
  db: Kysely<Database>,
  work: (trx: Kysely<Database>, writeLocked: boolean) => Promise<T>,
): Promise<T> {
  if (db.isTransaction || heldRunnerOf(db)) return Promise.reject(new Error(NESTED));
  const executor = db.getExecutor();
  const postgres = isPostgres(db);
  // Our own SQLite database (openDatabase) runs statements with its statement cache; a host's Kysely as its driver does.
  const sqliteRunner = postgres ? undefined : sqliteRunnerOf(db);
  // provideConnection holds the connection for the whole transaction: SQLite's driver lock (and the checkpoint
  // thread's pause, wal-checkpoints.ts), a client taken from PostgreSQL's pool.
  return executor.provideConnection(async (connection) => {
    const run: HeldRunner =
      sqliteRunner ?? ((query, parameters) => connection.executeQuery(CompiledQuery.raw(query, parameters)));
    let open = true;
    const trx = new Kysely<Database>({
      config: postgres ? POSTGRES_CONFIG : SQLITE_CONFIG,
      dialect: postgres ? POSTGRES_CONFIG.dialect : SQLITE_CONFIG.dialect,
      driver: NO_DRIVER,
      executor: executor.withConnectionProvider({
        provideConnection: (consume) => (open ? consume(connection) : Promise.reject(new Error(ENDED))),
      }),
    });
    await run(postgres ? 'begin' : 'begin immediate', []);
    const held = runOnHeldConnection(trx, run);
    const end = () => {
      open = false;
      held.release();
    };
    let result: T;
    try {
      result = await work(trx, !postgres);
    } catch (error) {
      end();
      // The work's error is the one to report. A ROLLBACK that fails leaves the connection in an unknown state:
      // PostgreSQL's is dropped by the pool on release (database.ts).
      await settled(run('rollback', []));
      throw error;
    }
    // Closed before COMMIT is written: a statement the work left running and issues later cannot follow it.
    end();
    const { rows } = await run('commit', []);
    if (postgres && (rows[0] as { command?: string } | undefined)?.command === 'ROLLBACK')
      throw new TransactionRolledBackError();
    return result;
  });
}

const settled = (answer: unknown) =>
  Promise.resolve(answer).then(
    () => {},
    () => {},
  );

/** The transaction's Kysely has no driver: it runs statements through its connection provider only. */
const refuse = () => Promise.reject(new Error(NESTED));
const NO_DRIVER: Driver = {
  init: async () => {},
  acquireConnection: () => Promise.reject(new Error(ENDED)),
  beginTransaction: refuse,
  commitTransaction: refuse,
  rollbackTransaction: refuse,
  releaseConnection: async () => {},
  destroy: async () => {}, // the database is its opener's to close
};
/** What Kysely keeps of a dialect once made: only its introspector is asked for again (`trx.introspection`). */
const boundDialect = (introspector: Dialect['createIntrospector']): Dialect => ({
  createAdapter: () => {
    throw new Error('not used');
  },
  createDriver: () => NO_DRIVER,
  createQueryCompiler: () => {
    throw new Error('not used');
  },
  createIntrospector: introspector,
});
const POSTGRES_CONFIG = { dialect: boundDialect((db) => new PostgresIntrospector(db)) };
const SQLITE_CONFIG = { dialect: boundDialect((db) => new SqliteIntrospector(db)) };
