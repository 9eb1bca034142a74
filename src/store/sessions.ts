import { sql, type Kysely } from 'kysely';
import { auditRow, type AuditEntry, type Client } from './audit.js';
import { isPostgres } from './migrations.js';
import { iso, isoOrNull, now, toUser, type User } from './rows.js';
import type { Database } from './schema.js';

/** A session about to be stored: its id and its first refresh token (hashed). */
export interface NewSession {
  id: string;
  refreshTokenHash: string;
  refreshExpiresAt: string;
}

/** The session of a refresh token, as found when it is presented. */
export interface RefreshTokenRecord {
  sessionId: string;
  userId: number;
  usedAt: string | null;
  expiresAt: string;
  sessionRevokedAt: string | null;
}

/** Our sign-in sessions and their refresh tokens (one family each). */
export class Sessions {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * A sign-in's writes: last login (not for the session a new user starts with), the new session and its
   * first refresh token, the audit event. On PostgreSQL one statement (one round trip instead of four); on
   * SQLite, in-process, four statements.
   */
  async start(userId: number, session: NewSession, audit: AuditEntry, client: Client | null): Promise<void> {
    const at = now();
    const lastLogin = audit.event === 'user_created' ? null : at;
    const sessionRow = { id: session.id, user_id: userId, created_at: at };
    const refreshRow = { session_id: session.id, token_hash: session.refreshTokenHash, created_at: at, expires_at: session.refreshExpiresAt };
    if (isPostgres(this.db)) {
      // Data-modifying CTEs; the foreign key of the refresh token is checked at the end of the statement.
      await this.db
        .with('touch', (db) => db.updateTable('users').set({ last_login_at: lastLogin ?? sql<string>`last_login_at` }).where('id', '=', userId))
        .with('session', (db) => db.insertInto('sessions').values(sessionRow))
        .with('refresh', (db) => db.insertInto('refresh_tokens').values(refreshRow))
        .insertInto('audit_events')
        .values(auditRow(audit, client, at))
        .execute();
      return;
    }
    if (lastLogin) await this.db.updateTable('users').set({ last_login_at: lastLogin }).where('id', '=', userId).execute();
    await this.db.insertInto('sessions').values(sessionRow).execute();
    await this.db.insertInto('refresh_tokens').values(refreshRow).execute();
    await this.db.insertInto('audit_events').values(auditRow(audit, client, at)).execute();
  }

  /** The user of an active (not revoked) session, or undefined: one query per authenticated request. */
  async findUser(sessionId: string, userId: number): Promise<User | undefined> {
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

  async revoke(sessionId: string, reason: string): Promise<void> {
    await this.db.updateTable('sessions').set({ revoked_at: now(), revoked_reason: reason }).where('id', '=', sessionId).where('revoked_at', 'is', null).execute();
  }

  async addRefreshToken(sessionId: string, tokenHash: string, expiresAt: string): Promise<void> {
    await this.db.insertInto('refresh_tokens').values({ session_id: sessionId, token_hash: tokenHash, created_at: now(), expires_at: expiresAt }).execute();
  }

  /**
   * Marks an unused, unexpired refresh token as used, atomically: of any number of concurrent
   * calls with one token, exactly one gets `true`.
   */
  async useRefreshToken(tokenHash: string): Promise<boolean> {
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
      .select(['refresh_tokens.session_id', 'refresh_tokens.used_at', 'refresh_tokens.expires_at', 'sessions.user_id', 'sessions.revoked_at'])
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
