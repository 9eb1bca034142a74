import {
  AbortedTransactionError,
  CompiledQuery,
  PostgresIntrospector,
  SqliteIntrospector,
  Transaction,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
} from 'kysely';
import { isOwnDatabase, markedWithNextStatement, sqliteRunnerOf } from './database.js';
import { isPostgres } from './migrations.js';
import { heldRunnerOf, runOnHeldConnection, type HeldRunner } from './prepared.js';
import type { Database } from './schema.js';

const ENDED = "a transaction's storage was used after the transaction ended";
const NESTED = 'Storage.transaction: already inside a transaction';

/**
 * Runs `work` in one transaction on one connection of `db`, given a Kysely Transaction of its own that runs every
 * statement on that connection — and refuses to, for good, once the transaction ends (before its COMMIT is written): a
 * Storage kept past it fails instead of writing into whichever transaction has the connection next. That Transaction is
 * a light one (the database's executor with another connection provider, no driver); Kysely's transaction() would make
 * a builder, a Transaction and two executors for each, copies and Object.freeze of objects made by spreads (on Node 20
 * each gets a hidden class of its own). BEGIN, COMMIT and ROLLBACK, and the hot prepared statements (prepared.ts), run
 * on the connection directly. A host's own Kysely (embed.ts) keeps its driver: Kysely's transaction() on PostgreSQL.
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
  const own = isOwnDatabase(db);
  if (postgres && !own) return db.transaction().execute((trx) => work(trx, false));
  // Our own SQLite database runs statements with its statement cache; a host's as its driver does.
  const sqliteRunner = sqliteRunnerOf(db);
  const config = postgres ? POSTGRES_CONFIG : SQLITE_CONFIG;
  // provideConnection holds the connection until the transaction has ended: SQLite's driver lock (no checkpoint of
  // the thread of wal-checkpoints.ts starts meanwhile), a client taken from PostgreSQL's pool.
  return executor.provideConnection(async (connection) => {
    const run: HeldRunner['run'] =
      sqliteRunner ?? ((query, parameters) => connection.executeQuery(CompiledQuery.raw(query, parameters)));
    const runner: HeldRunner = {
      run,
      later: sqliteRunner ?? ((query, parameters) => run(markedWithNextStatement(query), parameters)),
    };
    let open = true;
    const trx = new Transaction<Database>({
      config,
      dialect: config.dialect,
      driver: NO_DRIVER,
      executor: executor.withConnectionProvider({
        provideConnection: (consume) => (open ? consume(connection) : Promise.reject(new Error(ENDED))),
      }),
    });
    await run(postgres ? 'begin' : 'begin immediate', []);
    // Our own database's hot queries skip Kysely's executor (a host's plugins would not see their results otherwise).
    const held = own ? runOnHeldConnection(trx, runner) : undefined;
    const end = () => {
      open = false;
      held?.release();
    };
    let result: T;
    try {
      result = await work(trx, !postgres);
    } catch (error) {
      end();
      // The work's error is the one to report. A ROLLBACK that fails leaves the connection in an unknown state: our
      // PostgreSQL pool drops the client on release (database.ts).
      await settled(() => run('rollback', []));
      throw error;
    }
    end();
    let committed: QueryResult<unknown>;
    try {
      committed = await run('commit', []);
    } catch (error) {
      // A COMMIT that failed may leave the transaction open (SQLite: SQLITE_BUSY, a reader in the way of a rollback
      // journal's exclusive lock): rolled back, so that the connection goes back clean.
      await settled(() => run('rollback', []));
      throw error;
    }
    // PostgreSQL ends a transaction whose statement failed (a step caught the error and went on) with ROLLBACK.
    if (postgres && (committed.rows[0] as { command?: string } | undefined)?.command === 'ROLLBACK')
      throw new AbortedTransactionError();
    return result;
  });
}

/** Runs `statement`, whatever it throws (at once, as SQLite's runner does, or later). */
async function settled(statement: () => unknown): Promise<void> {
  try {
    await statement();
  } catch {
    // the caller reports its own error
  }
}

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
