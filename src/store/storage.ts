import type { Kysely } from 'kysely';
import { AppleTransfers } from './apple-transfers.js';
import { AuditLog } from './audit.js';
import { Imports } from './imports.js';
import { MergeTokens } from './merge-tokens.js';
import { Outbox } from './outbox.js';
import { LinkTokens } from './link-tokens.js';
import { Links } from './links.js';
import { Proofs } from './proofs.js';
import type { Database } from './schema.js';
import { Sessions } from './sessions.js';
import { Users } from './users.js';
import { Directory } from './directory.js';
import { ServiceKeys } from './service-keys.js';
import { Staff } from './staff.js';
import { DatabaseHealth } from './database-health.js';
import { runTransaction } from './transaction.js';

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
    const result = await runTransaction(this.db, (trx, writeLocked) =>
      work(new Storage(trx, writeLocked, this.webhookEndpoints, this.health)),
    );
    this.health.answered();
    return result;
  }
}
