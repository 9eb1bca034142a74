import type { Selectable } from 'kysely';
import type { Database } from './schema.js';

/** What the aggregates share: timestamps as ISO strings, and how rows become the records callers see. */

export const now = () => new Date().toISOString();
/** An ISO 8601 UTC timestamp; SQLite rows hold them already (as now() wrote them), PostgreSQL's are Dates. */
export const iso = (value: Date | string) =>
  typeof value === 'string' && ISO_UTC.test(value) ? value : new Date(value).toISOString();
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
export const isoOrNull = (value: Date | string | null) => (value === null ? null : iso(value));

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
