import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { isPostgres } from './migrations.js';
import { prepared } from './prepared.js';
import { collidedUsernameKey, usernameKey } from './username-key.js';
import { claimsText, now, toUser, USER_COLUMNS, type Claims, type User } from './rows.js';
import type { Database } from './schema.js';

export type { User } from './rows.js';

/** The users held back from their name's key (collidedUsernameKey); a literal, so that its partial index serves it. */
const HELD_BACK = sql<boolean>`username_key like '#%'`;

// Every sign-in and link runs it: compiled once (prepared.ts).
const holdUser = prepared((db, id: number) => {
  const query = db.selectFrom('users').select(USER_COLUMNS).where('id', '=', id);
  return isPostgres(db) ? query.forKeyShare() : query;
});

/** Our users: guests, password users, and (embedded) the host app's users, known by their external id. */
export class Users {
  constructor(private readonly db: Kysely<Database>) {}

  /** A new user; a name already taken but for case breaks the unique username_key (isUniqueViolation). */
  async create(username: string, passwordHash: string | null): Promise<User> {
    const at = now();
    const row = await this.db
      .insertInto('users')
      .values({
        username,
        username_key: usernameKey(username),
        password_hash: passwordHash,
        created_at: at,
        updated_at: at,
      })
      .returning(USER_COLUMNS)
      .executeTakeFirstOrThrow();
    return toUser(row);
  }

  /** Replaces the password hash if it is still `current`; false when it changed meanwhile. */
  async replacePasswordHash(id: number, current: string, next: string): Promise<boolean> {
    const result = await this.db
      .updateTable('users')
      .set({ password_hash: next, updated_at: now() })
      .where('id', '=', id)
      .where('password_hash', '=', current)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async findById(id: number): Promise<User | undefined> {
    const row = await this.db.selectFrom('users').select(USER_COLUMNS).where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  }

  /**
   * The user of this name, whatever its case; the exact spelling first (two users made before usernames were
   * compared without case may differ only in case: each signs in with its own spelling).
   */
  async findByUsername(username: string): Promise<User | undefined> {
    const key = usernameKey(username);
    const rows = await this.db
      .selectFrom('users')
      .select(USER_COLUMNS)
      // A held-back key (collidedUsernameKey) is no name: looked up by its exact spelling only.
      .where((where) =>
        key.startsWith('#')
          ? where('username', '=', username)
          : where.or([where('username', '=', username), where('username_key', '=', key)]),
      )
      .limit(2)
      .execute();
    const row = rows.find((candidate) => candidate.username === username) ?? rows[0];
    return row && toUser(row);
  }

  /** A new name (an operator's): refused by the unique key when taken, whatever its case (isUniqueViolation). */
  async rename(id: number, username: string): Promise<boolean> {
    const before = await this.db.selectFrom('users').select('username_key').where('id', '=', id).executeTakeFirst();
    const result = await this.db
      .updateTable('users')
      .set({ username, username_key: usernameKey(username), updated_at: now() })
      .where('id', '=', id)
      .where('external_id', 'is', null)
      .executeTakeFirst();
    if (result.numUpdatedRows === 0n) return false;
    if (before?.username_key && before.username_key !== usernameKey(username)) await this.handOver(before.username_key);
    return true;
  }

  /**
   * A name's key is free again (its user renamed or deleted): the oldest user held back from it by migration
   * 0006 (collidedUsernameKey) takes it, so that no one can sign up beside that user in another case.
   */
  private async handOver(key: string): Promise<void> {
    const waiting = (await this.caseCollisions()).find((user) => usernameKey(user.username) === key);
    if (waiting) await this.db.updateTable('users').set({ username_key: key }).where('id', '=', waiting.id).execute();
  }

  /** Users whose name was the same as an older user's but for case when keys came (see collidedUsernameKey). */
  async caseCollisions(): Promise<
    Array<{ id: number; username: string; sameAs: { id: number; username: string } | undefined }>
  > {
    const rows = await this.db
      .selectFrom('users')
      .select(['id', 'username', 'username_key'])
      .where(HELD_BACK)
      .orderBy('id')
      .execute();
    const collided = rows.filter((row) => row.username_key === collidedUsernameKey(row.id, row.username));
    return Promise.all(
      collided.map(async (row) => {
        const older = await this.db
          .selectFrom('users')
          .select(['id', 'username'])
          .where('username_key', '=', usernameKey(row.username))
          .executeTakeFirst();
        return { id: row.id, username: row.username, sameAs: older };
      }),
    );
  }

  /** The user standing for the host app's user `externalId` (embedded), if it has one yet. */
  async findExternal(externalId: string): Promise<User | undefined> {
    const row = await this.db
      .selectFrom('users')
      .select(USER_COLUMNS)
      .where('external_id', '=', externalId)
      .executeTakeFirst();
    return row && toUser(row);
  }

  /** The user standing for the host app's user `externalId` (embedded), made on first use. */
  async ofExternal(externalId: string): Promise<User> {
    const found = await this.findExternal(externalId);
    if (found) return found;
    const at = now();
    // A long id is named by its hash: usernames are at most 150 characters and must stay unique.
    const username =
      externalId.length <= 140 ? `app:${externalId}` : `app:${createHash('sha256').update(externalId).digest('hex')}`;
    // Two first requests of one host user may race: the unique external id decides, then both read the winner.
    await this.db
      .insertInto('users')
      .values({
        username,
        username_key: username,
        password_hash: null,
        external_id: externalId,
        created_at: at,
        updated_at: at,
      })
      .onConflict((conflict) => conflict.column('external_id').doNothing())
      .execute();
    return (await this.findExternal(externalId))!;
  }

  /** The host app's id of an embedded user. */
  async externalIdOf(id: number): Promise<string | undefined> {
    const row = await this.db.selectFrom('users').select('external_id').where('id', '=', id).executeTakeFirst();
    return row?.external_id ?? undefined;
  }

  /** Newest first (operators). */
  async list(limit: number): Promise<User[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('id', 'desc').limit(limit).execute();
    return rows.map(toUser);
  }

  /**
   * Reads the user and, on PostgreSQL, locks its row until the transaction ends, for changes that must take
   * turns (unlinking its last links, deleting it). SQLite transactions are serial.
   */
  async lock(id: number): Promise<User | undefined> {
    const query = this.db.selectFrom('users').selectAll().where('id', '=', id);
    const row = await (isPostgres(this.db) ? query.forUpdate() : query).executeTakeFirst();
    return row && toUser(row);
  }

  /**
   * Reads the user and, on PostgreSQL, holds its row (a key-share lock, which other writes of the same user
   * share) until the transaction ends. Every transaction that writes a user's rows takes its user's row
   * FIRST: a deletion (which takes it first too) then waits for it, or it waits for the deletion and finds
   * no user — one order, so no deadlock, and never a row added under a deleted user (a foreign-key error).
   */
  async hold(id: number): Promise<User | undefined> {
    const row = (await holdUser(this.db, id)).rows[0];
    return row && toUser(row);
  }

  /**
   * Disables the user (when and why) or enables it (null); false when it was so already. Its sessions are the
   * caller's to end, in the same transaction (core/admin.ts).
   */
  async setDisabled(id: number, disabled: { reason: string } | null): Promise<boolean> {
    const change = this.db.updateTable('users').where('id', '=', id);
    const result = await (
      disabled
        ? change
            .set({ disabled_at: now(), disabled_reason: disabled.reason, updated_at: now() })
            .where('disabled_at', 'is', null)
        : change
            .set({ disabled_at: null, disabled_reason: null, updated_at: now() })
            .where('disabled_at', 'is not', null)
    ).executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Replaces the user's custom claims (checked by core/claims.ts); {}: none. */
  async setClaims(id: number, claims: Claims): Promise<void> {
    await this.db
      .updateTable('users')
      .set({ claims: claimsText(claims), updated_at: now() })
      .where('id', '=', id)
      .execute();
  }

  /** Removes the user; its links, sessions and refresh tokens go with it (foreign keys cascade). */
  async delete(id: number): Promise<boolean> {
    const deleted = await this.db.deleteFrom('users').where('id', '=', id).returning('username_key').executeTakeFirst();
    if (deleted?.username_key) await this.handOver(deleted.username_key);
    return deleted !== undefined;
  }
}
