import { sql, type Kysely, type SelectQueryBuilder } from 'kysely';
import { isPostgres } from './migrations.js';
import { iso, isoOrNull } from './rows.js';
import type { Database } from './schema.js';
import { usernameKey } from './username-key.js';

/** A user as a search lists it. */
export interface UserSummary {
  id: number;
  username: string;
  hasPassword: boolean;
  createdAt: string;
  lastLoginAt: string | null;
  providers: string[];
  /** A name and an e-mail its providers gave (the newest link's that has one): who this is, at a glance. */
  name: string | null;
  email: string | null;
  disabledAt: string | null;
  /** What of the query it matched: id, uid, email or username (browsing: undefined). */
  matchedBy?: 'id' | 'uid' | 'email' | 'username';
}

export interface UserSearch {
  /** A user id, a social account's uid, an e-mail, or the start of a username. Empty: browse, newest first. */
  q?: string;
  /** Only users with a link of this provider (and with q: a uid of this provider). */
  provider?: string;
  /** Only users created in [createdFrom, createdTo). ISO dates. */
  createdFrom?: string;
  createdTo?: string;
  /** From the previous page's `next`. */
  cursor?: string;
  limit: number;
}

export interface SessionSummary {
  id: string;
  createdAt: string;
  /** The last time its refresh token was used (or its start). */
  lastUsedAt: string;
  ip: string | null;
  userAgent: string | null;
}

type UsersQuery<O> = SelectQueryBuilder<Database, 'users', O>;

// Past every character a username key may continue with (bytewise, as both databases compare here).
const PAST_PREFIX = '\u{10FFFF}';

/**
 * Reading users for operators (the admin API and the console): search with keyset pages, a user's active
 * sessions, and the dashboard's counts. Every page is a range of an index, never an offset: fast with a
 * million users.
 */
export class Directory {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Browsing (no q): newest first, paged by (creation time, id). Searching: on the first page the exact matches (user id, a
   * uid in any provider or the one given, an e-mail the provider gave or verified), then the usernames that
   * start with q in their order, paged by username.
   */
  async searchUsers(search: UserSearch): Promise<{ users: UserSummary[]; next: string | undefined }> {
    const q = search.q?.trim() ?? '';
    const cursor = decodeCursor(search.cursor);
    const filtered = <O>(query: UsersQuery<O>) => this.filters(query, search);
    if (!q) {
      // Newest first by creation (its index serves a date filter too), the id breaking ties; the cursor holds
      // the last row's exact created_at (on PostgreSQL with its microseconds, whatever its DateStyle) and id.
      const createdKey = isPostgres(this.db)
        ? sql<string>`to_char(users.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
        : sql<string>`users.created_at`;
      let query = filtered(this.db.selectFrom('users').selectAll().select(createdKey.as('created_key')))
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .limit(search.limit + 1);
      if (cursor?.kind === 'created') {
        const [at, id] = cursor.value as [string, number];
        query = query.where(
          sql<boolean>`(users.created_at, users.id) < (${isPostgres(this.db) ? sql`${at}::timestamptz` : at}, ${id})`,
        );
      }
      const rows = await query.execute();
      const page = rows.slice(0, search.limit);
      const last = page.at(-1);
      return {
        users: await this.summaries(page),
        next:
          rows.length > search.limit && last
            ? encodeCursor({ kind: 'created', value: [last.created_key, last.id] })
            : undefined,
      };
    }

    // The exact matches are looked up on every page (each is one index lookup) but shown on the first only:
    // later pages leave them out of the usernames too, so that no user shows twice.
    const exact: Array<{ id: number; matchedBy: UserSummary['matchedBy'] }> = [];
    // Ids are 32-bit: a longer number (a uid) is no id.
    if (/^[1-9]\d{0,9}$/.test(q) && isId(Number(q)))
      exact.push(
        ...(await this.db.selectFrom('users').select('id').where('id', '=', Number(q)).execute()).map(({ id }) => ({
          id,
          matchedBy: 'id' as const,
        })),
      );
    let byUid = this.db.selectFrom('social_associations').select('user_id').where('uid', '=', q);
    if (search.provider) byUid = byUid.where('provider', '=', search.provider);
    exact.push(
      ...(await byUid.limit(search.limit).execute()).map((row) => ({ id: row.user_id, matchedBy: 'uid' as const })),
    );
    if (q.includes('@')) {
      const email = q.toLowerCase();
      const rows = await this.db
        .selectFrom('social_associations')
        .select('user_id')
        .where((where) => where.or([where('verified_email', '=', email), where(this.extraEmail(), '=', email)]))
        .limit(search.limit)
        .execute();
      exact.push(...rows.map((row) => ({ id: row.user_id, matchedBy: 'email' as const })));
    }
    const exactIds = [...new Set(exact.map((match) => match.id))];
    const exactRows =
      exactIds.length && !cursor
        ? await filtered(this.db.selectFrom('users').selectAll().where('id', 'in', exactIds)).execute()
        : [];

    const low = usernameKey(q);
    const key = this.byteOrder(sql.ref('username_key'));
    let prefix = filtered(this.db.selectFrom('users').selectAll())
      .where(key, '>=', low)
      .where(key, '<', low + PAST_PREFIX)
      .orderBy(key)
      .limit(search.limit + 1);
    if (cursor?.kind === 'username') prefix = prefix.where(key, '>', cursor.value as string);
    // The page and the cursor come from the usernames as the index lists them; exact matches are then left out.
    const prefixRows = await prefix.execute();
    const page = prefixRows.slice(0, search.limit);
    const matchedBy = new Map(exact.map((match) => [match.id, match.matchedBy]));
    const users = await this.summaries([...exactRows, ...page.filter((row) => !exactIds.includes(row.id))]);
    for (const user of users) user.matchedBy = matchedBy.get(user.id) ?? 'username';
    const last = page.at(-1);
    return {
      users,
      next:
        prefixRows.length > search.limit && last
          ? encodeCursor({ kind: 'username', value: last.username_key ?? '' })
          : undefined,
    };
  }

  /** The user's sessions not revoked and still refreshable, newest first. */
  async activeSessions(userId: number): Promise<SessionSummary[]> {
    const rows = await this.db
      .selectFrom('sessions')
      .innerJoin('refresh_tokens', 'refresh_tokens.session_id', 'sessions.id')
      .select(['sessions.id', 'sessions.created_at', 'sessions.ip', 'sessions.user_agent'])
      .select((eb) => [
        eb.fn.max('refresh_tokens.created_at').as('last_used_at'),
        eb.fn.max('refresh_tokens.expires_at').as('expires_at'),
      ])
      .where('sessions.user_id', '=', userId)
      .where('sessions.revoked_at', 'is', null)
      .groupBy(['sessions.id', 'sessions.created_at', 'sessions.ip', 'sessions.user_agent'])
      .orderBy('sessions.created_at', 'desc')
      .execute();
    const at = Date.now();
    return rows
      .filter((row) => Date.parse(iso(row.expires_at as string | Date)) > at)
      .map((row) => ({
        id: row.id,
        createdAt: iso(row.created_at),
        lastUsedAt: iso(row.last_used_at as string | Date),
        ip: row.ip,
        userAgent: row.user_agent,
      }));
  }

  /** How many links each provider has. */
  async linksPerProvider(): Promise<Array<{ provider: string; links: number }>> {
    const rows = await this.db
      .selectFrom('social_associations')
      .select(['provider', (eb) => eb.fn.countAll<number | string>().as('links')])
      .groupBy('provider')
      .orderBy('provider')
      .execute();
    return rows.map((row) => ({ provider: row.provider, links: Number(row.links) }));
  }

  /** The app's audit events (not operators') of these kinds since `since`, counted by day (UTC) and by provider or by detail. */
  async eventsPerDay(
    events: readonly string[],
    since: string,
    by: 'provider' | 'detail',
  ): Promise<Array<{ day: string; key: string; count: number }>> {
    const day = isPostgres(this.db)
      ? sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD')`
      : sql<string>`substr(created_at, 1, 10)`;
    const rows = await this.db
      .selectFrom('audit_events')
      .select([
        day.as('day'),
        sql<string | null>`${sql.ref(by)}`.as('key'),
        (eb) => eb.fn.countAll<number | string>().as('count'),
      ])
      .where('event', 'in', events)
      .where('created_at', '>=', since)
      .where('actor', 'is', null)
      .groupBy([day, sql.ref(by)])
      .orderBy('day')
      .execute();
    return rows.map((row) => ({ day: row.day, key: row.key ?? '-', count: Number(row.count) }));
  }

  private filters<O>(query: UsersQuery<O>, search: UserSearch): UsersQuery<O> {
    let filtered = query;
    if (search.provider) {
      const provider = search.provider;
      filtered = filtered.where(({ exists, selectFrom }) =>
        exists(
          selectFrom('social_associations')
            .select(sql.lit(1).as('one'))
            .whereRef('social_associations.user_id', '=', 'users.id')
            .where('social_associations.provider', '=', provider),
        ),
      );
    }
    if (search.createdFrom) filtered = filtered.where('created_at', '>=', search.createdFrom);
    if (search.createdTo) filtered = filtered.where('created_at', '<', search.createdTo);
    return filtered;
  }

  /** The link's e-mail in its kept facts, as its index has it (migration 0018). */
  private extraEmail() {
    return isPostgres(this.db)
      ? sql<string>`lower(extra_data->>'email')`
      : sql<string>`lower(json_extract(extra_data, '$.email'))`;
  }

  /** Bytewise order on PostgreSQL (its index is `collate "C"`), whatever the database's collation; SQLite's is bytewise. */
  private byteOrder(column: ReturnType<typeof sql.ref>) {
    return isPostgres(this.db) ? sql<string>`${column} collate "C"` : sql<string>`${column}`;
  }

  private async summaries(
    rows: Array<{
      id: number;
      username: string;
      password_hash: string | null;
      created_at: Date | string;
      last_login_at: Date | string | null;
      disabled_at: Date | string | null;
    }>,
  ): Promise<UserSummary[]> {
    if (rows.length === 0) return [];
    // A fact's text, or null when it is not text (PostgreSQL's ->> would turn true or {…} into text).
    const text = (key: string) =>
      isPostgres(this.db)
        ? sql<string | null>`case when jsonb_typeof(extra_data->${key}) = 'string' then extra_data->>${key} end`
        : sql<
            string | null
          >`case when json_type(extra_data, ${`$.${key}`}) = 'text' then json_extract(extra_data, ${`$.${key}`}) end`;
    const links = await this.db
      .selectFrom('social_associations')
      .select([
        'user_id',
        'provider',
        'verified_email',
        text('name').as('name'),
        text('first_name').as('first_name'),
        text('last_name').as('last_name'),
        text('email').as('email'),
      ])
      .where(
        'user_id',
        'in',
        rows.map((row) => row.id),
      )
      .orderBy('id')
      .execute();
    return rows.map((row) => {
      const own = links.filter((link) => link.user_id === row.id);
      // Newest link first; a name or e-mail that is not text (a provider's odd answer) is none.
      const first = (pick: (link: (typeof own)[number]) => unknown) =>
        own
          .map(pick)
          .reverse()
          .find((value): value is string => typeof value === 'string' && value !== '') ?? null;
      return {
        id: row.id,
        username: row.username,
        hasPassword: row.password_hash !== null,
        createdAt: iso(row.created_at),
        lastLoginAt: isoOrNull(row.last_login_at),
        providers: [...new Set(own.map((link) => link.provider))],
        // Apple keeps the name it gives once as first and last name.
        name: first((link) => link.name ?? ([link.first_name, link.last_name].filter(Boolean).join(' ') || null)),
        email: first((link) => link.verified_email) ?? first((link) => link.email),
        disabledAt: isoOrNull(row.disabled_at),
      };
    });
  }
}

interface Cursor {
  kind: 'created' | 'username';
  value: [string, number] | string;
}

/** A created_at as either database writes it (PostgreSQL's text, our ISO strings): nothing else reaches a cast. */
const TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(\.\d{1,6})?(Z|[+-](\d\d)(:(\d\d))?)$/;

/**
 * A moment PostgreSQL's cast takes: a real day of years 0001 to 9999 (Date.parse rolls 2024-02-30 over to
 * March, the cast refuses it with an error), a real time, an offset within ±15:59.
 */
function isTimestamp(text: string): boolean {
  const [, year, month, day, hour, minute, second, , , offsetHours, , offsetMinutes] = TIMESTAMP.exec(text) ?? [];
  if (year === undefined) return false;
  const date = new Date(Date.UTC(2000, Number(month) - 1, Number(day)));
  date.setUTCFullYear(Number(year));
  const realDay =
    Number(year) >= 1 &&
    date.getUTCFullYear() === Number(year) &&
    date.getUTCMonth() === Number(month) - 1 &&
    date.getUTCDate() === Number(day);
  return (
    realDay &&
    Number(hour) <= 23 &&
    Number(minute) <= 59 &&
    Number(second) <= 59 &&
    Number(offsetHours ?? 0) <= 15 &&
    Number(offsetMinutes ?? 0) <= 59
  );
}

/** A 32-bit id (PostgreSQL's integer), as a cursor or a search may hold one. */
const isId = (value: unknown): value is number =>
  Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 2_147_483_647;

const encodeCursor = (cursor: Cursor) => Buffer.from(JSON.stringify([cursor.kind, cursor.value])).toString('base64url');

/** A cursor from the previous page; anything else (forged, impossible) is a first page, never a database error. */
function decodeCursor(text: string | undefined): Cursor | undefined {
  if (!text) return undefined;
  try {
    const [kind, value] = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as [unknown, unknown];
    if (
      kind === 'created' &&
      Array.isArray(value) &&
      typeof value[0] === 'string' &&
      isTimestamp(value[0]) &&
      isId(value[1])
    ) {
      return { kind, value: [value[0], value[1]] };
    }
    if (kind === 'username' && typeof value === 'string' && !value.includes('\u0000') && value.length <= 400)
      return { kind, value };
  } catch {
    // Not ours: start over.
  }
  return undefined;
}
