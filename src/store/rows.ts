import type { Selectable } from 'kysely';
import type { Database } from './schema.js';

/** What the aggregates share: timestamps as ISO strings, and how rows become the records callers see. */

export const now = () => new Date().toISOString();
export const iso = (value: Date | string) => new Date(value).toISOString();
export const isoOrNull = (value: Date | string | null) => (value === null ? null : iso(value));

export interface User {
  id: number;
  username: string;
  hasPassword: boolean;
  passwordHash: string | null;
  createdAt: string;
  lastLoginAt: string | null;
}

export function toUser(row: Omit<Selectable<Database['users']>, 'external_id' | 'username_key'>): User {
  return {
    id: row.id,
    username: row.username,
    hasPassword: row.password_hash !== null,
    passwordHash: row.password_hash,
    createdAt: iso(row.created_at),
    lastLoginAt: isoOrNull(row.last_login_at),
  };
}
