import { prepared } from './prepared.js';
import { sql, type Kysely } from 'kysely';
import { auditRow, emitWebhookOf, insertAuditEvent, type AuditEntry, type Client } from './audit.js';
import type { Outbox } from './outbox.js';
import { idAmong, plannedEachRun } from './database.js';
import { isPostgres } from './migrations.js';
import {
  claimsOf,
  claimsText,
  iso,
  isoOrNull,
  now,
  qualified,
  toUser,
  USER_COLUMNS,
  type Claims,
  type User,
} from './rows.js';
import type { Database } from './schema.js';

/** A session about to be stored: its id and its first refresh token (hashed). */
export interface NewSession {
  id: string;
  refreshTokenHash: string;
  refreshExpiresAt: string;
  /** Claims added for this sign-in (a blocking hook, a pipeline step): in each access token of the session. */
  claims?: Claims;
}

/** The session of a refresh token, as found when it is presented. */
export interface RefreshTokenRecord {
  sessionId: string;
  userId: number;
  usedAt: string | null;
  expiresAt: string;
  sessionRevokedAt: string | null;
  /** Why it ended (logout, admin, refresh_token_reused, user_disabled, …). */
  sessionRevokedReason: string | null;
  /** The claims added at its sign-in. */
  sessionClaims: Claims;
}

/** Our sign-in sessions and their refresh tokens (one family each). */

// A session starts with every sign-in, and every authenticated request reads one: compiled once (prepared.ts).
type AuditValues = [
  userId: number | null,
  event: AuditEntry['event'],
  provider: string | null,
  uid: string | null,
  detail: string | null,
  ip: string | null,
  userAgent: string | null,
];
const touchUser = prepared((db, id: number, at: string) =>
  db.updateTable('users').set({ last_login_at: at }).where('id', '=', id),
);
const insertSession = prepared(
  (
    db,
    id: string,
    userId: number,
    at: string,
    ip: string | null,
    userAgent: string | null,
    claims: string | null,
    expiresAt: string,
  ) =>
    db
      .insertInto('sessions')
      .values({ id, user_id: userId, created_at: at, ip, user_agent: userAgent, claims, expires_at: expiresAt }),
);
const insertRefreshToken = prepared((db, sessionId: string, hash: string, at: string, expiresAt: string) =>
  db
    .insertInto('refresh_tokens')
    .values({ session_id: sessionId, token_hash: hash, created_at: at, expires_at: expiresAt }),
);
// PostgreSQL: one statement of data-modifying CTEs; the refresh token's foreign key is checked at its end.
// Last login: written only when it moves forward, and only if no other transaction is writing the user's row — a
// hot user's concurrent sign-ins (several devices, a retrying app) then skip it rather than queue, each behind the
// one before until its commit (the other is writing a last login of the same moment). (lastLogin null: a new user,
// whose last login stays null: no write, no lock.)
const startSessionPostgres = prepared(
  (
    db,
    userId: number,
    lastLogin: string | null,
    sessionId: string,
    at: string,
    hash: string,
    expiresAt: string,
    claims: string | null,
    ...[auditUser, event, provider, uid, detail, ip, userAgent]: AuditValues
  ) =>
    db
      .with('touch', (cte) =>
        cte
          .updateTable('users')
          .set({ last_login_at: sql<string>`${lastLogin}::timestamptz` })
          .where('id', 'in', (eb) =>
            eb
              .selectFrom('users')
              .select('id')
              .where('id', '=', userId)
              .where((where) =>
                where.or([
                  where('last_login_at', 'is', null),
                  where('last_login_at', '<', sql<string>`${lastLogin}::timestamptz`),
                ]),
              )
              .forNoKeyUpdate()
              .skipLocked(),
          ),
      )
      .with('session', (cte) =>
        cte.insertInto('sessions').values({
          id: sessionId,
          user_id: userId,
          created_at: at,
          ip,
          user_agent: userAgent,
          claims,
          expires_at: expiresAt,
        }),
      )
      .with('refresh', (cte) =>
        cte
          .insertInto('refresh_tokens')
          .values({ session_id: sessionId, token_hash: hash, created_at: at, expires_at: expiresAt }),
      )
      .insertInto('audit_events')
      .values({ user_id: auditUser, event, provider, uid, detail, ip, user_agent: userAgent, created_at: at }),
);
/**
 * How far a rotation must move its session's end for the session's row to be written: an end known to within this
 * is enough to forget the session about SOCIAL_LINK_SESSION_RETENTION_DAYS (a day at least) after it, and an app that
 * refreshes every few minutes then writes the row once an hour, not at each refresh.
 */
const SESSION_END_STEP_MS = 3_600_000;
// A session's new end at a rotation, unless it is revoked (its end is its revocation) or the end moves less than a step.
const sessionEndMoved = (db: Kysely<Database>, sessionId: string, expiresAt: string, movedIfBefore: string) =>
  db
    .updateTable('sessions')
    .set({ expires_at: expiresAt })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '<', movedIfBefore)]));
const moveSessionEnd = prepared(sessionEndMoved);
// PostgreSQL: a rotation's new refresh token and its session's new end, one statement.
const addRefreshTokenPostgres = prepared(
  (db, sessionId: string, hash: string, at: string, expiresAt: string, movedIfBefore: string) =>
    db
      .with('session', () => sessionEndMoved(db, sessionId, expiresAt, movedIfBefore))
      .insertInto('refresh_tokens')
      .values({ session_id: sessionId, token_hash: hash, created_at: at, expires_at: expiresAt }),
);
/**
 * The oldest `limit` rows of `table` that ended before `before` (exported for the test that reads its plan). Ordered
 * by their end, so that both databases walk its index, never the table: with no statistics, a scan that stops at
 * `limit` looks as cheap, and reads the whole table once none is left to forget.
 */
export function endedBefore(table: 'sessions' | 'refresh_tokens', before: string, limit: number) {
  return sql<{ id: string | number }>`
    select id from ${sql.table(table)} where expires_at < ${before} order by expires_at limit ${limit}`;
}
/** Batches of a purge per sweep (a minute apart): up to 100,000 sessions a minute, each batch a short statement. */
const MAX_PURGE_BATCHES = 100;
// By the session's key alone, the user compared after: given the user's id too, PostgreSQL may plan the lookup (once
// per connection, on a table still small) through the user's sessions, and read all of them at every request.
const findSessionUser = prepared((db, sessionId: string) =>
  db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select(qualified('users', USER_COLUMNS))
    .select('sessions.claims as session_claims')
    .where('sessions.id', '=', sessionId)
    .where('sessions.revoked_at', 'is', null),
);

export class Sessions {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly outbox: Outbox,
  ) {}

  /**
   * A sign-in's writes: last login (not for the session a new user starts with), the new session and its
   * first refresh token, the audit event. On PostgreSQL one statement (one round trip instead of four), written
   * with the transaction's COMMIT; on SQLite, in-process, four statements.
   */
  async start(userId: number, session: NewSession, audit: AuditEntry, client: Client | null): Promise<void> {
    const at = now();
    const lastLogin = audit.event === 'user_created' ? null : at;
    const row = auditRow(audit, client, at);
    const auditValues = [row.user_id, row.event, row.provider, row.uid, row.detail, row.ip, row.user_agent] as const;
    if (isPostgres(this.db)) {
      // A sign-in's last write, its answer read by nobody: written with the COMMIT (or the transaction's next
      // statement), one round trip for both (prepared.ts `later`).
      await startSessionPostgres.later(
        this.db,
        userId,
        lastLogin,
        session.id,
        at,
        session.refreshTokenHash,
        session.refreshExpiresAt,
        claimsText(session.claims),
        ...auditValues,
      );
    } else {
      if (lastLogin) await touchUser(this.db, userId, lastLogin);
      await insertSession(
        this.db,
        session.id,
        userId,
        at,
        row.ip,
        row.user_agent,
        claimsText(session.claims),
        session.refreshExpiresAt,
      );
      await insertRefreshToken(this.db, session.id, session.refreshTokenHash, at, session.refreshExpiresAt);
      await insertAuditEvent(this.db, ...auditValues, at);
    }
    // The webhook of the sign-in (or of the new user), in the same transaction: on PostgreSQL with the COMMIT too.
    await emitWebhookOf(this.outbox, row, { last: true });
  }

  /**
   * The user of an active (not revoked) session and the claims added at its sign-in, or undefined: one query per
   * authenticated request.
   */
  async findUser(sessionId: string, userId: number): Promise<{ user: User; sessionClaims: Claims } | undefined> {
    const row = (await findSessionUser(this.db, sessionId)).rows[0];
    return row?.id === userId ? { user: toUser(row), sessionClaims: claimsOf(row.session_claims) } : undefined;
  }

  /** Revokes every active session of the user (a provider says the account may be in other hands): how many. */
  async revokeAllOfUser(userId: number, reason: string): Promise<number> {
    const result = await this.db
      .updateTable('sessions')
      .set(this.revokedNow(reason))
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** Revokes one active session of this user; false when it has no such session. */
  async revokeOfUser(userId: number, sessionId: string, reason: string): Promise<boolean> {
    const result = await this.db
      .updateTable('sessions')
      .set(this.revokedNow(reason))
      .where('id', '=', sessionId)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async revoke(sessionId: string, reason: string): Promise<void> {
    await this.db
      .updateTable('sessions')
      .set(this.revokedNow(reason))
      .where('id', '=', sessionId)
      .where('revoked_at', 'is', null)
      .execute();
  }

  /**
   * A revocation's columns: the session ends now (forgotten SOCIAL_LINK_SESSION_RETENTION_DAYS later), or when it
   * ended already, if earlier (a disabled user's expired sessions are not kept longer for it).
   */
  private revokedNow(reason: string) {
    const at = now();
    const moment = isPostgres(this.db) ? sql<string>`${at}::timestamptz` : sql<string>`${at}`;
    return {
      revoked_at: at,
      revoked_reason: reason,
      expires_at: sql<string>`case when expires_at < ${moment} then expires_at else ${moment} end`,
    };
  }

  /** A session's new refresh token (a rotation): the session now ends when it expires. */
  async addRefreshToken(sessionId: string, tokenHash: string, expiresAt: string): Promise<void> {
    const at = now();
    const movedIfBefore = new Date(Date.parse(expiresAt) - SESSION_END_STEP_MS).toISOString();
    if (isPostgres(this.db)) {
      await addRefreshTokenPostgres(this.db, sessionId, tokenHash, at, expiresAt, movedIfBefore);
      return;
    }
    await insertRefreshToken(this.db, sessionId, tokenHash, at, expiresAt);
    await moveSessionEnd(this.db, sessionId, expiresAt, movedIfBefore);
  }

  /**
   * Forgets what ended before `before`: sessions (expired or revoked) with their refresh tokens, and the refresh
   * tokens of live sessions that expired before it (a rotated token is kept until then, so that its reuse still ends
   * the session). Each by batches of `limit`, the oldest first through its expiry's index; sessions from before migration
   * 0027 get their end first (a batch per call). Answers how many sessions and tokens were forgotten.
   */
  async purgeEnded(before: string, limit = 1000): Promise<{ sessions: number; refreshTokens: number }> {
    const postgres = isPostgres(this.db);
    await plannedEachRun(
      this.db,
      sql`
        update sessions set expires_at = case when revoked_at is not null then revoked_at else coalesce(
          (select max(r.expires_at) from refresh_tokens r where r.session_id = sessions.id), created_at) end
        where expires_at is null and ${idAmong(postgres, sql`select id from sessions where expires_at is null limit ${limit}`)}`.compile(
        this.db,
      ),
    );
    const batches = async (table: 'sessions' | 'refresh_tokens') => {
      let forgotten = 0;
      for (let batch = 0; batch < MAX_PURGE_BATCHES; batch++) {
        const result = await plannedEachRun(
          this.db,
          sql`delete from ${sql.table(table)} where ${idAmong(postgres, endedBefore(table, before, limit))}`.compile(
            this.db,
          ),
        );
        const count = Number(result.numAffectedRows ?? 0);
        forgotten += count;
        if (count < limit) break;
      }
      return forgotten;
    };
    // The tokens first: the sessions then take few along (each batch's work stays near its limit).
    const refreshTokens = await batches('refresh_tokens');
    return { sessions: await batches('sessions'), refreshTokens };
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
      .select([
        'refresh_tokens.session_id',
        'refresh_tokens.used_at',
        'refresh_tokens.expires_at',
        'sessions.user_id',
        'sessions.revoked_at',
        'sessions.revoked_reason',
        'sessions.claims',
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
        sessionRevokedReason: row.revoked_reason,
        sessionClaims: claimsOf(row.claims),
      }
    );
  }
}
