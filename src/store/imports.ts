import { sql, type Kysely } from 'kysely';
import { isPostgres } from './migrations.js';
import { toUser, type User } from './rows.js';
import type { Database } from './schema.js';
import { usernameKey } from './username-key.js';

/** An account of another system, as an import writes it (src/import/). */
export interface ImportedAccount {
  /** Our id to give it (the source's own, kept when the target was empty), or undefined for a new one. */
  id?: number;
  username: string;
  passwordHash: string | null;
  createdAt: string;
  lastLoginAt: string | null;
}

/** What social-link import writes: users with their source's id, and which user each source account became. */
export class Imports {
  constructor(private readonly db: Kysely<Database>) {}

  /** The user this source account became (null: deleted since), or undefined when it was never imported. */
  async userOf(source: string, sourceId: string): Promise<number | null | undefined> {
    const row = await this.db
      .selectFrom('imported_users')
      .select('user_id')
      .where('source', '=', source)
      .where('source_id', '=', sourceId)
      .executeTakeFirst();
    return row?.user_id;
  }

  async idTaken(id: number): Promise<boolean> {
    return (await this.db.selectFrom('users').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }

  /** Whether the target holds a user that is not an import of this source (then source ids are not kept). */
  async hasUsersNotFrom(source: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('users')
      .select('users.id')
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('imported_users')
              .select('user_id')
              .whereRef('imported_users.user_id', '=', 'users.id')
              .where('imported_users.source', '=', source),
          ),
        ),
      )
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** A new user from another system, recorded as that source account's. */
  async createUser(source: string, sourceId: string, account: ImportedAccount): Promise<User> {
    const row = await this.db
      .insertInto('users')
      .values({
        ...(account.id !== undefined ? { id: account.id } : {}),
        username: account.username,
        username_key: usernameKey(account.username),
        password_hash: account.passwordHash,
        created_at: account.createdAt,
        updated_at: account.createdAt,
        last_login_at: account.lastLoginAt,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await this.db.insertInto('imported_users').values({ source, source_id: sourceId, user_id: row.id }).execute();
    return toUser(row);
  }

  /**
   * After users were given their source's ids: new users are numbered after the highest (PostgreSQL's identity;
   * SQLite's autoincrement follows the highest id by itself). Ids past `maxKept` are not counted: no import keeps
   * them now, and a sequence an earlier version left at 2147483647 (every sign-up failed) is brought back below.
   */
  async renumberAfterKeptIds(maxKept: number): Promise<void> {
    if (!isPostgres(this.db)) return;
    // Never backwards below `maxKept`: ids handed out meanwhile (a sign-up not committed yet, a user deleted since)
    // must not be handed out again. Past it, an earlier version's damage: brought back to the kept ids.
    const sequence = (
      await sql<{ name: string }>`select pg_get_serial_sequence('users', 'id') as name`.execute(this.db)
    ).rows[0]!.name;
    const state = (
      await sql<{
        last_value: string;
        is_called: boolean;
      }>`select last_value, is_called from ${sql.raw(sequence)}`.execute(this.db)
    ).rows[0]!;
    const handedOut = Number(state.last_value) - (state.is_called ? 0 : 1);
    const kept = Number(
      (
        await this.db
          .selectFrom('users')
          .select((eb) => eb.fn.max('id').as('max'))
          .where('id', '<=', maxKept)
          .executeTakeFirst()
      )?.max ?? 0,
    );
    const next = Math.max(kept, handedOut <= maxKept ? handedOut : 0);
    // No id handed out yet: the next is 1 (is_called false).
    await sql`select setval(${sequence}, ${Math.max(next, 1)}, ${next > 0})`.execute(this.db);
  }

  /** The id the next new user would get after the kept ids, without moving the sequence (a dry run's). */
  async nextIdAfterKeptIds(maxKept: number): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.max('id').as('max'))
      .where('id', '<=', maxKept)
      .executeTakeFirst();
    return Number(row?.max ?? 0) + 1;
  }
}
