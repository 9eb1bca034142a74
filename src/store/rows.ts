import type { Selectable } from 'kysely';
import type { Database, SocialAssociationsTable, UsersTable } from './schema.js';

/** What the aggregates share: timestamps as ISO strings, and how rows become the records callers see. */

/**
 * Every column of a table, by name: what the hot queries select instead of `*`. On PostgreSQL a statement is prepared
 * once per connection only when it names its columns (store/database.ts): one that reads `*` would change its result
 * type when a migration adds a column, and PostgreSQL refuses to run it then; so a `*` query is parsed and planned
 * again at every run (bench:pg-driver: a third of PostgreSQL's work per sign-in). A column added to the table's
 * interface and not to its list is a type error.
 */
function allColumnsOf<Table>() {
  return <const Columns extends ReadonlyArray<keyof Table & string>>(
    columns: Columns &
      ([Exclude<keyof Table, Columns[number]>] extends [never]
        ? unknown
        : { missing: Exclude<keyof Table, Columns[number]> }),
  ) => columns;
}
export const USER_COLUMNS = allColumnsOf<UsersTable>()([
  'id',
  'username',
  'username_key',
  'password_hash',
  'external_id',
  'created_at',
  'updated_at',
  'last_login_at',
  'disabled_at',
  'disabled_reason',
  'claims',
]);
export const LINK_COLUMNS = allColumnsOf<SocialAssociationsTable>()([
  'id',
  'user_id',
  'provider',
  'uid',
  'extra_data',
  'provider_tokens',
  'verified_email',
  'sign_in_after',
  'created_at',
  'updated_at',
]);
/** The columns of `table` (or of its alias), qualified: `users.id`, … */
export const qualified = <const Alias extends string, const Column extends string>(
  alias: Alias,
  columns: readonly Column[],
) => columns.map((column) => `${alias}.${column}` as const);

export const now = () => new Date().toISOString();
/**
 * An ISO 8601 UTC timestamp. SQLite rows hold them already (as now() wrote them), and so do PostgreSQL's read by our
 * pool in UTC (timestamptzReader); a Date (PostgreSQL in another zone, a host's own pool) is turned into one.
 */
export const iso = (value: Date | string) =>
  typeof value === 'string' && ISO_UTC.test(value) ? value : new Date(value).toISOString();
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
export const isoOrNull = (value: Date | string | null) => (value === null ? null : iso(value));

/**
 * How our PostgreSQL pool reads a timestamptz: PostgreSQL writes one in the session's TimeZone, with DateStyle ISO
 * `2026-12-07 16:40:44.123456+00` when that is UTC; read as the ISO string `iso` keeps, cut to the
 * millisecond as a Date would be, without making a Date to turn back into the string. Any other form (another zone,
 * infinity, a year past 9999 or BC) goes to `fallback`, pg's own parser (a Date, or ±Infinity).
 */
export const timestamptzReader =
  (fallback: (text: string) => unknown) =>
  (text: string): unknown => {
    const utc = PG_UTC.exec(text);
    return utc ? `${utc[1]}T${utc[2]}.${`${utc[3] ?? ''}000`.slice(0, 3)}Z` : fallback(text);
  };
const PG_UTC = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/;

export interface User {
  id: number;
  username: string;
  hasPassword: boolean;
  passwordHash: string | null;
  createdAt: string;
  lastLoginAt: string | null;
  /** When an operator disabled the user (it opens no session), and why; null while it may sign in. */
  disabledAt: string | null;
  disabledReason: string | null;
  /** Custom claims an operator set (core/claims.ts): in each of its access tokens. */
  claims: Claims;
}

/** Custom claims: a JSON object of names and values (core/claims.ts checks them before they are stored). */
export type Claims = Record<string, unknown>;

/** Claims as stored: JSON text, null for none. */
export const claimsOf = (text: string | null): Claims => (text ? (JSON.parse(text) as Claims) : {});
export const claimsText = (claims: Claims | undefined): string | null =>
  claims && Object.keys(claims).length > 0 ? JSON.stringify(claims) : null;

export function toUser(row: Omit<Selectable<Database['users']>, 'external_id' | 'username_key'>): User {
  return {
    id: row.id,
    username: row.username,
    hasPassword: row.password_hash !== null,
    passwordHash: row.password_hash,
    createdAt: iso(row.created_at),
    lastLoginAt: isoOrNull(row.last_login_at),
    disabledAt: isoOrNull(row.disabled_at),
    disabledReason: row.disabled_reason,
    claims: claimsOf(row.claims),
  };
}
