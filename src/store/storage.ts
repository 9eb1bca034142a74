import {
  CompiledQuery,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Driver,
} from 'kysely';
import { AppleTransfers } from './apple-transfers.js';
import { AuditLog } from './audit.js';
import { Imports } from './imports.js';
import { MergeTokens } from './merge-tokens.js';
import { Outbox } from './outbox.js';
import { LinkTokens } from './link-tokens.js';
import { Links } from './links.js';
import { Proofs } from './proofs.js';
import { isPostgres } from './migrations.js';
import type { Database } from './schema.js';
import { Sessions } from './sessions.js';
import { Users } from './users.js';
import { Directory } from './directory.js';
import { ServiceKeys } from './service-keys.js';
import { Staff } from './staff.js';
import { DatabaseHealth } from './database-health.js';
import { sqliteRunnerOf } from './database.js';
import { heldRunnerOf, runOnHeldConnection, type HeldRunner } from './prepared.js';

// Transaction control, as Kysely's drivers write it (database.ts recognises PostgreSQL's `begin`).
const BEGIN = 'begin';
const BEGIN_IMMEDIATE = 'begin immediate';
const COMMIT = 'commit';
const ROLLBACK = 'rollback';

export type { ActedBy, AuditEntry, AuditEvent, AuditEventName, Client } from './audit.js';
export type { Association } from './links.js';
export type { PendingLink } from './link-tokens.js';
export type { NewSession, RefreshTokenRecord } from './sessions.js';
export type { User } from './users.js';

/**
 * Every query social-link makes, on SQLite or PostgreSQL alike, by aggregate: users, links, sessions
 * (with their refresh tokens) and the audit log. `transaction` gives a Storage bound to one transaction,
 * so a pipeline writes all or nothing.
 */
export class Storage {
  readonly users: Users;
  readonly links: Links;
  readonly sessions: Sessions;
  readonly audit: AuditLog;
  readonly proofs: Proofs;
  readonly linkTokens: LinkTokens;
  readonly appleTransfers: AppleTransfers;
  readonly imports: Imports;
  readonly mergeTokens: MergeTokens;
  /** The admin API's and console's reads, and their credentials. */
  readonly directory: Directory;
  readonly serviceKeys: ServiceKeys;
  readonly staff: Staff;

  /**
   * @param writeLocked inside a SQLite transaction (BEGIN IMMEDIATE): this connection holds the database's
   * write lock until it ends, so what it reads cannot change meanwhile (no row locks are needed to keep it).
   */
  readonly outbox: Outbox;

  constructor(
    readonly db: Kysely<Database>,
    readonly writeLocked = false,
    /** The webhook endpoints' URLs (SOCIAL_LINK_WEBHOOK_URL): events are written for each; none, none are. */
    readonly webhookEndpoints: readonly string[] = [],
    /** Whether the database answers (an outage logged once); shared by every Storage of one database. */
    readonly health = new DatabaseHealth({ warn: () => {} }),
  ) {
    this.outbox = new Outbox(db, webhookEndpoints);
    this.users = new Users(db);
    this.appleTransfers = new AppleTransfers(db);
    this.imports = new Imports(db);
    this.mergeTokens = new MergeTokens(db);
    this.links = new Links(db, this.outbox);
    this.sessions = new Sessions(db, this.outbox);
    this.audit = new AuditLog(db, this.outbox);
    this.proofs = new Proofs(db);
    this.linkTokens = new LinkTokens(db);
    this.directory = new Directory(db);
    this.serviceKeys = new ServiceKeys(db);
    this.staff = new Staff(db);
  }

  async transaction<T>(work: (storage: Storage) => Promise<T>): Promise<T> {
    const result = await this.inTransaction(work);
    this.health.answered();
    return result;
  }

  private inTransaction<T>(work: (storage: Storage) => Promise<T>): Promise<T> {
    const bound = (db: Kysely<Database>, writeLocked: boolean) =>
      new Storage(db, writeLocked, this.webhookEndpoints, this.health);
    /** The transaction on `connection`, through `db` bound to it; `run` runs one statement on it directly. */
    const runOn = async (db: Kysely<Database>, run: HeldRunner, begin: string, writeLocked: boolean): Promise<T> => {
      await run(begin, []);
      const held = runOnHeldConnection(db, run);
      try {
        const result = await work(bound(db, writeLocked));
        await run(COMMIT, []);
        return result;
      } catch (error) {
        await run(ROLLBACK, []);
        throw error;
      } finally {
        held.release();
      }
    };
    if (heldRunnerOf(this.db)) throw new Error('Storage.transaction: already inside a transaction');
    if (isPostgres(this.db))
      return this.db.getExecutor().provideConnection((connection) => {
        const run: HeldRunner = (query, parameters) => connection.executeQuery(CompiledQuery.raw(query, parameters));
        return runOn(postgresBoundTo(connection), run, BEGIN, false);
      });
    // SQLite: take the write lock at BEGIN. A plain (deferred) transaction that reads, then writes, fails
    // at once with "database is locked" when another process (a second worker) wrote meanwhile, instead
    // of waiting for busy_timeout.
    const runner = sqliteRunnerOf(this.db);
    // A host's Kysely (embedded): its own connections, as Kysely hands them out.
    if (!runner)
      return this.db.connection().execute((connection) => {
        const run: HeldRunner = (query, parameters) => connection.executeQuery(CompiledQuery.raw(query, parameters));
        return runOn(connection, run, BEGIN_IMMEDIATE, true);
      });
    return sqliteConnectionOf(this.db).then((single) =>
      this.db.getExecutor().provideConnection(async (connection) => {
        if (connection !== single.connection) throw new Error('SQLite: the driver handed out another connection');
        return runOn(single.db, runner, BEGIN_IMMEDIATE, true);
      }),
    );
  }
}

/**
 * PostgreSQL: each pooled connection's Kysely, made once (the pool's connections live long) and usable only while a
 * transaction holds its connection (runOnHeldConnection), so that a Storage kept past its transaction fails instead of
 * writing into whichever transaction has the connection next. Kysely's transaction() would make a new Kysely for each:
 * copies and Object.freeze of objects made by spreads (on Node 20 each gets a hidden class of its own).
 */
const postgresBound = new WeakMap<DatabaseConnection, Kysely<Database>>();
function postgresBoundTo(connection: DatabaseConnection): Kysely<Database> {
  let db = postgresBound.get(connection);
  if (!db) {
    const refuse = () => Promise.reject(new Error('Storage.transaction: already inside a transaction'));
    const driver: Driver = {
      init: async () => {},
      acquireConnection: async () => {
        if (!heldRunnerOf(bound)) throw new Error("a transaction's storage was used after the transaction ended");
        return connection;
      },
      beginTransaction: refuse,
      commitTransaction: refuse,
      rollbackTransaction: refuse,
      releaseConnection: async () => {},
      destroy: async () => {},
    };
    const bound: Kysely<Database> = new Kysely<Database>({
      dialect: {
        createAdapter: () => new PostgresAdapter(),
        createDriver: () => driver,
        createIntrospector: (introspected) => new PostgresIntrospector(introspected),
        createQueryCompiler: () => new PostgresQueryCompiler(),
      },
    });
    db = bound;
    postgresBound.set(connection, db);
  }
  return db;
}

/**
 * Our SQLite database (openDatabase) has one connection, the same object for the driver's life: the Kysely bound to it
 * is made once, and used while the driver's lock is held (provideConnection: the lock, and the checkpoint thread's
 * pause). Kysely's connection().execute() would make a new one for each transaction: copies and Object.freeze of
 * objects made by spreads, ~5 µs (on Node 20 each gets a hidden class of its own).
 */
const singleConnections = new WeakMap<
  Kysely<Database>,
  Promise<{ db: Kysely<Database>; connection: DatabaseConnection }>
>();
function sqliteConnectionOf(db: Kysely<Database>) {
  let single = singleConnections.get(db);
  if (!single) {
    single = db
      .connection()
      .execute(async (bound) => ({
        db: bound,
        connection: await bound.getExecutor().provideConnection(async (connection) => connection),
      }))
      .catch((error: unknown) => {
        singleConnections.delete(db); // the next transaction tries again
        throw error;
      });
    singleConnections.set(db, single);
  }
  return single;
}
