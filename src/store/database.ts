import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import type pg from 'pg';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  sql,
  type CompiledQuery,
  type PostgresPool,
  type PostgresPoolClient,
  type QueryResult,
  type RawBuilder,
} from 'kysely';
import { ConfigError } from '../lib/settings.js';
import { isPostgres, migrationProvider } from './migrations.js';
import { timestamptzReader } from './rows.js';
import { fromDatabase } from './database-health.js';
import { CheckpointedSqliteDialect, WalCheckpoints } from './wal-checkpoints.js';

/** Connections each process keeps to PostgreSQL at most. */
const POOL_SIZE = 20;
import type { Database } from './schema.js';

export type { Database } from './schema.js';
export { isPostgres } from './migrations.js';

/**
 * Opens the database named by a URL: `sqlite:PATH` (embedded, the default) or `postgres://...`.
 * `queryTimeoutMs` (PostgreSQL): a query with no answer after this fails (a network cut that resets nothing);
 * the server sets it, migrations and the CLI do not (an index built on a big table may take long).
 * `checkpointThread` (SQLite): a long-lived connection's WAL checkpoints run in a thread of their own.
 */
export function openDatabase(
  url: string,
  { queryTimeoutMs, checkpointThread }: { queryTimeoutMs?: number; checkpointThread?: boolean } = {},
): Kysely<Database> {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    let sqlite: SQLite.Database;
    try {
      if (path !== ':memory:') createPrivately(path);
      sqlite = new SQLite(path);
    } catch (error) {
      throw new ConfigError(`DATABASE_URL: cannot open the SQLite database ${path} (${(error as Error).message})`);
    }
    // WAL lets readers work while one writer writes; busy_timeout waits instead of failing when
    // another process (a second worker, the CLI) holds the write lock.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 5000');
    // In WAL mode NORMAL never corrupts the database and survives a process crash (kill -9); only a
    // power loss may drop the last commits. It saves an fsync per commit.
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    const statements = withStatementCache(sqlite);
    const config = { database: statements };
    // A server's connection (checkpointThread): the log is copied back by a thread of its own (wal-checkpoints.ts).
    const db = new Kysely<Database>({
      dialect:
        checkpointThread && path !== ':memory:'
          ? new CheckpointedSqliteDialect(config, () => new WalCheckpoints(sqlite, path))
          : new SqliteDialect(config),
    });
    sqliteRunners.set(db, runnerOf(statements));
    ownDatabases.add(db);
    return db;
  }
  // pg is loaded on first use: a server on SQLite never pays for it.
  const pool = async () => {
    const { default: postgres } = await import('pg');
    const readTimestamptz = timestamptzReader(postgres.types.getTypeParser(TIMESTAMPTZ, 'text'));
    // A server that does not answer at all (a network cut, a failover under way) fails a request after 5 s
    // (503 database_unavailable) instead of holding it until the client gives up; so does a query left
    // without an answer past queryTimeoutMs.
    const pool = new postgres.Pool({
      connectionString: url,
      max: POOL_SIZE,
      connectionTimeoutMillis: 5_000,
      query_timeout: queryTimeoutMs,
      // A query is written as soon as it is asked, without waiting for the answer to the one before: lets BEGIN go
      // out with a transaction's first statement (withNamedStatements). PostgreSQL answers them in order; our code
      // mostly asks one query at a time per connection (https://node-postgres.com/features/pipelining).
      pipeline: true,
      // This pool's own type parsers (a host's other pg pools keep theirs): a timestamptz read as the ISO string rows
      // keep (rows.ts timestamptzReader), not a Date turned back into one.
      types: {
        getTypeParser: ((oid: number, format?: string) =>
          oid === TIMESTAMPTZ && format !== 'binary'
            ? readTimestamptz
            : postgres.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
      },
    });
    // A pg client emits 'error' when its connection breaks (the server restarted, a failover, a network cut).
    // An 'error' event nobody listens to ends the process: the pool listens for its idle clients, each client
    // for itself for its whole life (https://node-postgres.com/apis/pool#error, …/apis/client#error). The query that
    // was using it fails on its own and answers 503; a broken client is dropped by the pool on release.
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    return withNamedStatements(pool);
  };
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  ownDatabases.add(db);
  return db;
}

/**
 * The database holds password hashes, e-mails and addresses: a directory we create is the owner's only
 * (0700), and the file is 0600 (SQLite gives its -wal and -shm files the same mode).
 */
function createPrivately(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
}

/** Applies every pending migration; throws with the failing migration's error. */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest().catch((error: unknown) => {
    throw unreachable(error) ?? error;
  });
  if (error) throw unreachable(error) ?? error;
  return (results ?? []).map((result) => result.migrationName);
}

/**
 * Refuses, in one line, to work on a database whose migrations are pending: the commands (but migrate and serve,
 * which apply them) expect its tables.
 */
export async function requireMigrated(db: Kysely<Database>): Promise<void> {
  const migrations = await new Migrator({ db, provider: migrationProvider }).getMigrations().catch((error: unknown) => {
    throw unreachable(error) ?? error;
  });
  const pending = migrations.filter((migration) => !migration.executedAt).length;
  if (pending === 0) return;
  const state =
    pending === migrations.length ? 'has no tables yet' : `has ${pending} pending migration${pending > 1 ? 's' : ''}`;
  throw new ConfigError(
    `the database of DATABASE_URL ${state}: run \`social-link migrate\` first (serve applies them too)`,
  );
}

// A server that cannot be reached, or refuses our login or database: a setup problem, said in one line.
const NETWORK_ERRORS = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
]);

/** The start-up error to print instead of a stack trace when the database cannot be reached (else undefined). */
function unreachable(error: unknown): ConfigError | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  // PostgreSQL: 08… connection exceptions, 28… a refused login, 3D000 no such database, 57P03 starting up.
  const postgres = /^(08|28)/.test(code) || code === '3D000' || code === '57P03';
  if (!NETWORK_ERRORS.has(code) && !postgres) return undefined;
  return new ConfigError(
    `DATABASE_URL: cannot reach the database (${message}): is it running, and are the URL and its credentials right?`,
  );
}

/** PostgreSQL's type oid of timestamptz (pg_type). */
const TIMESTAMPTZ = 1184;

/** What Kysely is answered for a BEGIN not yet answered (it reads no more of it). */
const BEGUN = Object.freeze({ command: 'BEGIN', rowCount: null, rows: Object.freeze([]) });
/** What is answered for a statement held to be written with the next one (nobody reads its answer). */
const HELD = Object.freeze({ command: '', rowCount: null, rows: Object.freeze([]) });
/** What is answered for the ROLLBACK of a transaction none of which was written (its BEGIN was still held). */
const NOTHING_TO_ROLL_BACK = Object.freeze({ command: 'ROLLBACK', rowCount: null, rows: Object.freeze([]) });

/**
 * The mark of a statement whose answer nobody reads, a transaction's last writes (a sign-in's session): held, and
 * written with the transaction's next statement or its COMMIT, in one write, their answers awaited together — the
 * held one's error is the next one's (a failed statement aborts the transaction: its COMMIT answers ROLLBACK). A
 * marked statement outside a transaction runs at once. Only transaction.ts marks one (HeldRunner.later, prepared.ts),
 * with `markedWithNextStatement`.
 */
export const WITH_NEXT_STATEMENT = '/* written with the next statement */ ';

// A statement's marked text and back, made once per text: a sign-in marks its session's statement (~800 characters),
// and a text made anew at each run is copied, sliced and hashed again (for its name) at each run.
/** How many marked texts are kept (as many statements as get a name: a fixed set, far fewer). */
export const MARKED_TEXTS_KEPT = 500;
const markedTexts = new Map<string, string>();
const unmarkedTexts = new Map<string, string>();

/** `text` marked WITH_NEXT_STATEMENT; the same string each time for the same text (a fixed set of statements). */
export function markedWithNextStatement(text: string): string {
  let marked = markedTexts.get(text);
  if (marked === undefined) {
    marked = WITH_NEXT_STATEMENT + text;
    // Bounded as the statements' names are: a text built with its values inlined would be new at each run.
    if (markedTexts.size < MARKED_TEXTS_KEPT) {
      markedTexts.set(text, marked);
      unmarkedTexts.set(marked, text);
    }
  }
  return marked;
}

/**
 * The mark of a statement PostgreSQL is to plan again at every run, for its parameters and the tables' size then
 * (sent without a name): the webhook dispatcher's and the sessions' purge, whose best plan depends on how large their
 * table has grown. After
 * five runs PostgreSQL may settle on a named statement's generic plan, which it keeps until the table is analyzed
 * (autovacuum may do it late, or never): settled on while the outbox was small, reading a claim's deliveries by their
 * ids walked the whole table (bench/README "Memory"). Planning costs a fraction of a millisecond; the dispatcher runs
 * a few such statements per round of 50.
 */
export const PLANNED_EACH_RUN = '/* planned each run */ ';

/** Runs a compiled query as a statement planned at each run (PLANNED_EACH_RUN); SQLite keeps it prepared. */
export function plannedEachRun<Row>(db: Kysely<Database>, query: CompiledQuery<Row>): Promise<QueryResult<Row>> {
  return db.executeQuery<Row>(isPostgres(db) ? { ...query, sql: PLANNED_EACH_RUN + query.sql } : query);
}

/**
 * `id` among the ids a subquery picks, for a statement that writes the batch it picks (planned at each run): on
 * PostgreSQL `id = any(array(…))`, the subquery run first and its rows then found by the primary key. Written
 * `id in (…)`, PostgreSQL may join the two by a hash and read the whole table for it when, with no statistics, it
 * takes the table for small (seen: deleting 1,000 ended sessions of 100,000).
 */
export function idAmong(postgres: boolean, ids: RawBuilder<unknown>): RawBuilder<unknown> {
  return postgres ? sql`id = any(array(${ids}))` : sql`id in (${ids})`;
}

/**
 * PostgreSQL parses and plans an unnamed statement on every execution. Our queries are a fixed set of SQL
 * texts, so each gets a name: each connection parses it once, then only binds and executes it (but those marked
 * PLANNED_EACH_RUN). (Behind PgBouncer in transaction mode this needs its max_prepared_statements setting.)
 */
function withNamedStatements(pool: pg.Pool): PostgresPool {
  const names = new Map<string, string>();
  const nameOf = (text: string): string | undefined => {
    let name = names.get(text);
    // Not `*`: another instance's migration could change its columns, and PostgreSQL refuses to run a
    // prepared statement whose result type changed ("cached plan must not change result type"). The hot queries
    // name their columns for this (store/rows.ts USER_COLUMNS, LINK_COLUMNS).
    if (
      name === undefined &&
      names.size < 500 &&
      !text.startsWith(PLANNED_EACH_RUN) &&
      /^\s*(select|insert|update|delete|with)\b/i.test(text) &&
      !text.includes('*')
    ) {
      name = `social_link_${names.size + 1}`;
      names.set(text, name);
    }
    return name;
  };
  // One wrapper per pg client, so Kysely (which keys its connections by client) sees the same object each time.
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  // Every error of the client is marked as the database's (isDatabaseUnavailable reads the mark).
  const marked = (error: unknown) => {
    throw fromDatabase(error);
  };
  return {
    async connect() {
      const client = await pool.connect().catch((error: unknown) => {
        // A timeout with every connection in use: the wait was for a free one, not for the server.
        throw fromDatabase(error, pool.totalCount >= POOL_SIZE);
      });
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        const send = (text: string, values?: unknown[]): Promise<pg.QueryResult> => {
          const name = nameOf(text);
          return name ? client.query({ name, text, values }) : client.query(text, values);
        };
        // Statements written with the next one: a transaction's `begin` (it waits for its answer: a round trip of its
        // own, for a statement that fails only with the connection, and then so does the next one), and the statements
        // marked WITH_NEXT_STATEMENT. They go out in the next statement's write (the socket corked around them all: pg
        // corks each statement's own messages, and corks nest), and their answers are awaited with its answer: one
        // round trip and one system call for all.
        let held: Array<{ text: string; values?: unknown[] }> = [];
        // Between a `begin` and its COMMIT or ROLLBACK: only there is a marked statement held (a next one will come).
        let inTransaction = false;
        // A COMMIT or ROLLBACK that failed (a timeout, a broken connection) leaves the connection in an unknown state:
        // it is dropped on release, not handed to the next borrower (as Kysely's own driver does).
        let discard = false;
        wrapper = {
          query: ((text: string, values?: unknown[]) => {
            if (text === 'begin') {
              inTransaction = true;
              held.push({ text });
              return Promise.resolve(BEGUN);
            }
            if (text.startsWith(WITH_NEXT_STATEMENT)) {
              text = unmarkedTexts.get(text) ?? text.slice(WITH_NEXT_STATEMENT.length);
              if (inTransaction) {
                held.push({ text, values });
                return Promise.resolve(HELD);
              }
            }
            const ending = text === 'commit' || text === 'rollback';
            if (ending) inTransaction = false;
            const before = held;
            held = [];
            if (text === 'rollback' && before.length > 0) {
              // Nothing held is worth writing to be rolled back; a transaction none of which was written (its BEGIN
              // still held) has nothing to roll back.
              if (before[0]!.text === 'begin') return Promise.resolve(NOTHING_TO_ROLL_BACK);
              before.length = 0;
            }
            let result: Promise<pg.QueryResult>, answered: Promise<pg.QueryResult>;
            if (before.length === 0) answered = result = send(text, values);
            else {
              const socket = (client as unknown as pg.Client).connection?.stream;
              socket?.cork();
              let earlier: Array<Promise<unknown>>;
              try {
                earlier = before.map((statement) => send(statement.text, statement.values));
                result = send(text, values);
              } finally {
                socket?.uncork();
              }
              // PostgreSQL answers in order: a held statement's error comes first, and is the one reported.
              answered = Promise.all([...earlier, result]).then(() => result);
            }
            // Only the COMMIT's (ROLLBACK's) own failure: a held statement that failed made it answer ROLLBACK.
            if (ending) result.catch(() => (discard = true));
            return answered.catch(marked);
          }) as unknown as PostgresPoolClient['query'],
          release: (destroy?: boolean) => {
            // Never carried to the client's next borrower (Kysely and transaction.ts always end what they began).
            held = [];
            inTransaction = false;
            const drop = destroy === true || discard;
            discard = false;
            client.release(drop);
          },
        };
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

/**
 * Runs one statement on a SQLite connection at once, as Kysely's SQLite driver does (the same statement cache and
 * result), without its queue: only for the transaction that holds the connection (transaction.ts, prepared.ts).
 */
export type SqliteRunner = (query: string, parameters: readonly unknown[]) => QueryResult<unknown>;

const sqliteRunners = new WeakMap<Kysely<Database>, SqliteRunner>();
const ownDatabases = new WeakSet<Kysely<Database>>();

/** Whether openDatabase opened `db` (not a host's own Kysely, embed.ts): its driver and pool are ours. */
export const isOwnDatabase = (db: Kysely<Database>): boolean => ownDatabases.has(db);

/** The statement runner of a SQLite database opened by openDatabase (undefined: PostgreSQL, or a host's Kysely). */
export const sqliteRunnerOf = (db: Kysely<Database>): SqliteRunner | undefined => sqliteRunners.get(db);

function runnerOf(statements: ReturnType<typeof withStatementCache>): SqliteRunner {
  return (query, parameters) => {
    const statement = statements.prepare(query);
    if (statement.reader) return { rows: statement.all(parameters) };
    const { changes, lastInsertRowid } = statement.run(parameters);
    return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
  };
}

/**
 * Kysely prepares every query anew; preparing costs as much as running a small one. Our queries are a
 * fixed set of SQL texts with parameters, so each is prepared once and reused (one connection, and
 * better-sqlite3 runs a statement to completion synchronously, so sharing one is safe).
 */
function withStatementCache(sqlite: SQLite.Database) {
  const statements = new Map<string, SQLite.Statement>();
  return {
    prepare(query: string) {
      let statement = statements.get(query);
      if (!statement) {
        statement = sqlite.prepare(query);
        // DDL stays uncached (migrations run it once and change the schema); transaction control is cached.
        if (statements.size < 500 && /^\s*(select|insert|update|delete|begin|commit|rollback)\b/i.test(query))
          statements.set(query, statement);
      }
      return statement;
    },
    close() {
      statements.clear();
      sqlite.close();
    },
  };
}
