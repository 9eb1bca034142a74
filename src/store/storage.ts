import { sql, type Kysely, type Selectable } from 'kysely';
import type { Database } from './schema.js';
import { isPostgres } from './migrations.js';

export interface User {
  id: number;
  username: string;
  hasPassword: boolean;
  passwordHash: string | null;
  createdAt: string;
  lastLoginAt: string | null;
}

export interface Association {
  id: number;
  userId: number;
  provider: string;
  uid: string;
  extraData: Record<string, unknown>;
  /** Sealed provider tokens, or null. */
  sealedTokens: string | null;
  createdAt: string;
  updatedAt: string;
}

export type AuditEventName =
  | 'user_created'
  | 'password_sign_in'
  | 'social_sign_in'
  | 'associated'
  | 'unlinked'
  | 'logout'
  | 'refresh_token_reused'
  | 'refused'
  | 'user_deleted';

/** Who asked: recorded with every audit event. */
export interface Client {
  ip: string;
  userAgent: string;
}

export interface AuditEntry {
  event: AuditEventName;
  userId?: number | null;
  provider?: string | null;
  uid?: string | null;
  /** A stable code or short reason; never a secret. */
  detail?: string | null;
}

export interface AuditEvent extends Required<AuditEntry> {
  id: number;
  ip: string | null;
  userAgent: string | null;
  createdAt: string;
}

/** The session of a refresh token, as found when it is presented. */
export interface RefreshTokenRecord {
  sessionId: string;
  userId: number;
  usedAt: string | null;
  expiresAt: string;
  sessionRevokedAt: string | null;
}

const now = () => new Date().toISOString();

function auditRow(entry: AuditEntry, client: Client | null, at = now()) {
  return {
    user_id: entry.userId ?? null,
    event: entry.event,
    provider: entry.provider ?? null,
    uid: entry.uid ?? null,
    detail: entry.detail?.slice(0, 255) ?? null,
    ip: client?.ip.slice(0, 64) || null,
    user_agent: client?.userAgent.slice(0, 256) || null,
    created_at: at,
  };
}

/** A session about to be stored: its id and its first refresh token (hashed). */
export interface NewSession {
  id: string;
  refreshTokenHash: string;
  refreshExpiresAt: string;
}

const iso = (value: Date | string) => new Date(value).toISOString();
const isoOrNull = (value: Date | string | null) => (value === null ? null : iso(value));

function toUser(row: Selectable<Database['users']>): User {
  return {
    id: row.id,
    username: row.username,
    hasPassword: row.password_hash !== null,
    passwordHash: row.password_hash,
    createdAt: iso(row.created_at),
    lastLoginAt: isoOrNull(row.last_login_at),
  };
}

function toAssociation(row: Selectable<Database['social_associations']>): Association {
  const extra = typeof row.extra_data === 'string' ? (JSON.parse(row.extra_data) as unknown) : row.extra_data;
  return {
    id: row.id,
    userId: row.user_id,
    provider: row.provider,
    uid: row.uid,
    extraData: (extra ?? {}) as Record<string, unknown>,
    sealedTokens: row.provider_tokens,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

/**
 * The storage layer: every query social-link makes, on SQLite or PostgreSQL alike.
 * `transaction` gives a Storage bound to one transaction, so a pipeline writes all or nothing.
 */
export class Storage {
  constructor(readonly db: Kysely<Database>) {}

  transaction<T>(work: (storage: Storage) => Promise<T>): Promise<T> {
    if (isPostgres(this.db)) return this.db.transaction().execute((trx) => work(new Storage(trx)));
    // SQLite: take the write lock at BEGIN. A plain (deferred) transaction that reads, then writes, fails
    // at once with "database is locked" when another process (a second worker) wrote meanwhile, instead
    // of waiting for busy_timeout.
    return this.db.connection().execute(async (connection) => {
      await sql`begin immediate`.execute(connection);
      try {
        const result = await work(new Storage(connection));
        await sql`commit`.execute(connection);
        return result;
      } catch (error) {
        await sql`rollback`.execute(connection);
        throw error;
      }
    });
  }

  // Users

  async createUser(username: string, passwordHash: string | null): Promise<User> {
    const at = now();
    const row = await this.db
      .insertInto('users')
      .values({ username, password_hash: passwordHash, created_at: at, updated_at: at })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toUser(row);
  }

  async findUserById(id: number): Promise<User | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  }

  /** Reads the user and, on PostgreSQL, locks its row until the transaction ends (SQLite transactions are serial). */
  async lockUser(id: number): Promise<User | undefined> {
    const query = this.db.selectFrom('users').selectAll().where('id', '=', id);
    const row = await (isPostgres(this.db) ? query.forUpdate() : query).executeTakeFirst();
    return row && toUser(row);
  }

  async findUserByUsername(username: string): Promise<User | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
    return row && toUser(row);
  }

  // Social associations

  async findAssociation(provider: string, uid: string): Promise<Association | undefined> {
    const row = await this.db
      .selectFrom('social_associations')
      .selectAll()
      .where('provider', '=', provider)
      .where('uid', '=', uid)
      .executeTakeFirst();
    return row && toAssociation(row);
  }

  /** The link of this social account and its user, in one query (every sign-in asks this). */
  async findAssociationWithUser(provider: string, uid: string): Promise<{ association: Association; user: User } | undefined> {
    const row = await this.db
      .selectFrom('social_associations as link')
      .innerJoin('users', 'users.id', 'link.user_id')
      .selectAll('link')
      .select([
        'users.username as user_username',
        'users.password_hash as user_password_hash',
        'users.created_at as user_created_at',
        'users.updated_at as user_updated_at',
        'users.last_login_at as user_last_login_at',
      ])
      .where('link.provider', '=', provider)
      .where('link.uid', '=', uid)
      .executeTakeFirst();
    if (!row) return undefined;
    const user = toUser({
      id: row.user_id,
      username: row.user_username,
      password_hash: row.user_password_hash,
      created_at: row.user_created_at,
      updated_at: row.user_updated_at,
      last_login_at: row.user_last_login_at,
    });
    return { association: toAssociation(row), user };
  }

  async listAssociations(userId: number): Promise<Association[]> {
    const rows = await this.db
      .selectFrom('social_associations')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('id')
      .execute();
    return rows.map(toAssociation);
  }

  /**
   * Links (provider, uid) to the user unless it is linked already. Returns undefined when another
   * transaction linked it first: the unique constraint, not a prior read, decides who wins a race.
   */
  async insertAssociation(
    userId: number,
    provider: string,
    uid: string,
    extraData: Record<string, unknown>,
    sealedTokens: string | null,
  ): Promise<Association | undefined> {
    const at = now();
    const row = await this.db
      .insertInto('social_associations')
      .values({ user_id: userId, provider, uid, extra_data: JSON.stringify(extraData), provider_tokens: sealedTokens, created_at: at, updated_at: at })
      .onConflict((conflict) => conflict.columns(['provider', 'uid']).doNothing())
      .returningAll()
      .executeTakeFirst();
    return row && toAssociation(row);
  }

  /** New extra data; new sealed tokens too when the provider gave new ones (else the old ones stay). */
  async updateExtraData(associationId: number, extraData: Record<string, unknown>, sealedTokens: string | null): Promise<void> {
    await this.db
      .updateTable('social_associations')
      .set({ extra_data: JSON.stringify(extraData), updated_at: now(), ...(sealedTokens === null ? {} : { provider_tokens: sealedTokens }) })
      .where('id', '=', associationId)
      .execute();
  }

  /** Removes the link and answers it (with its sealed tokens, to revoke them), or undefined. */
  async deleteAssociation(userId: number, provider: string, uid: string): Promise<Association | undefined> {
    const row = await this.db
      .deleteFrom('social_associations')
      .where('user_id', '=', userId)
      .where('provider', '=', provider)
      .where('uid', '=', uid)
      .returningAll()
      .executeTakeFirst();
    return row && toAssociation(row);
  }

  /** Removes the user; its links, sessions and refresh tokens go with it (foreign keys cascade). */
  async deleteUser(userId: number): Promise<boolean> {
    const result = await this.db.deleteFrom('users').where('id', '=', userId).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  // Audit log

  async recordAudit(entry: AuditEntry, client: Client | null): Promise<void> {
    await this.db.insertInto('audit_events').values(auditRow(entry, client)).execute();
  }

  /** Newest first; `before` pages backwards by id. Without a user id: every user's events (operators). */
  async listAudit(options: { userId?: number; before?: number; limit: number }): Promise<AuditEvent[]> {
    let query = this.db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(options.limit);
    if (options.userId !== undefined) query = query.where('user_id', '=', options.userId);
    if (options.before !== undefined) query = query.where('id', '<', options.before);
    const rows = await query.execute();
    return rows.map((row) => ({
      id: row.id,
      event: row.event as AuditEventName,
      userId: row.user_id,
      provider: row.provider,
      uid: row.uid,
      detail: row.detail,
      ip: row.ip,
      userAgent: row.user_agent,
      createdAt: iso(row.created_at),
    }));
  }

  // Sessions and refresh tokens

  async createSession(id: string, userId: number): Promise<void> {
    await this.db.insertInto('sessions').values({ id, user_id: userId, created_at: now() }).execute();
  }

  /**
   * A sign-in's writes: last login, the new session and its first refresh token, the audit event. On
   * PostgreSQL one statement (one round trip instead of four); on SQLite, in-process, four statements.
   */
  async recordSignIn(userId: number, session: NewSession, audit: AuditEntry, client: Client | null): Promise<void> {
    const at = now();
    const sessionRow = { id: session.id, user_id: userId, created_at: at };
    const refreshRow = { session_id: session.id, token_hash: session.refreshTokenHash, created_at: at, expires_at: session.refreshExpiresAt };
    if (isPostgres(this.db)) {
      // Data-modifying CTEs; the foreign key of the refresh token is checked at the end of the statement.
      await this.db
        .with('touch', (db) => db.updateTable('users').set({ last_login_at: at }).where('id', '=', userId))
        .with('session', (db) => db.insertInto('sessions').values(sessionRow))
        .with('refresh', (db) => db.insertInto('refresh_tokens').values(refreshRow))
        .insertInto('audit_events')
        .values(auditRow(audit, client, at))
        .execute();
      return;
    }
    await this.db.updateTable('users').set({ last_login_at: at }).where('id', '=', userId).execute();
    await this.db.insertInto('sessions').values(sessionRow).execute();
    await this.db.insertInto('refresh_tokens').values(refreshRow).execute();
    await this.db.insertInto('audit_events').values(auditRow(audit, client, at)).execute();
  }

  /** The user of an active (not revoked) session, or undefined: one query per authenticated request. */
  async findSessionUser(sessionId: string, userId: number): Promise<User | undefined> {
    const row = await this.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .selectAll('users')
      .where('sessions.id', '=', sessionId)
      .where('sessions.user_id', '=', userId)
      .where('sessions.revoked_at', 'is', null)
      .executeTakeFirst();
    return row && toUser(row);
  }

  async revokeSession(sessionId: string, reason: string): Promise<void> {
    await this.db
      .updateTable('sessions')
      .set({ revoked_at: now(), revoked_reason: reason })
      .where('id', '=', sessionId)
      .where('revoked_at', 'is', null)
      .execute();
  }

  async insertRefreshToken(sessionId: string, tokenHash: string, expiresAt: string): Promise<void> {
    await this.db
      .insertInto('refresh_tokens')
      .values({ session_id: sessionId, token_hash: tokenHash, created_at: now(), expires_at: expiresAt })
      .execute();
  }

  /**
   * Marks an unused, unexpired refresh token as used, atomically: of any number of concurrent
   * calls with one token, exactly one gets `true`.
   */
  async markRefreshTokenUsed(tokenHash: string): Promise<boolean> {
    const at = now();
    const result = await this.db
      .updateTable('refresh_tokens')
      .set({ used_at: at })
      .where('token_hash', '=', tokenHash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async findRefreshToken(tokenHash: string): Promise<RefreshTokenRecord | undefined> {
    const row = await this.db
      .selectFrom('refresh_tokens')
      .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
      .select([
        'refresh_tokens.session_id',
        'refresh_tokens.used_at',
        'refresh_tokens.expires_at',
        'sessions.user_id',
        'sessions.revoked_at',
      ])
      .where('refresh_tokens.token_hash', '=', tokenHash)
      .executeTakeFirst();
    return (
      row && {
        sessionId: row.session_id,
        userId: row.user_id,
        usedAt: isoOrNull(row.used_at),
        expiresAt: iso(row.expires_at),
        sessionRevokedAt: isoOrNull(row.revoked_at),
      }
    );
  }
}
