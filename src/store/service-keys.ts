import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { iso, isoOrNull, now } from './rows.js';
import type { Database } from './schema.js';

export type ServiceScope = 'read' | 'write';

export interface ServiceKey {
  id: number;
  name: string;
  scopes: ServiceScope[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

const PREFIX = 'slk_';
const hashOf = (key: string) => createHash('sha256').update(key).digest('hex');

/** Keys of the app's backends for the admin API: the key is shown once, only its SHA-256 is kept. */
export class ServiceKeys {
  constructor(private readonly db: Kysely<Database>) {}

  /** A new key named `name` (unique); the key itself is returned once and never stored. */
  async create(name: string, scopes: ServiceScope[]): Promise<{ key: string; record: ServiceKey }> {
    const key = `${PREFIX}${randomBytes(32).toString('base64url')}`;
    const row = await this.db
      .insertInto('service_keys')
      .values({ name, key_hash: hashOf(key), scopes: scopes.join(' '), created_at: now() })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { key, record: toServiceKey(row) };
  }

  /** The active key this secret is, its last use noted (to the minute: one write per key per minute at most). */
  async use(key: string): Promise<ServiceKey | undefined> {
    if (!key.startsWith(PREFIX) || key.length > 100) return undefined;
    const row = await this.db
      .selectFrom('service_keys')
      .selectAll()
      .where('key_hash', '=', hashOf(key))
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (!row) return undefined;
    const at = now();
    if (!row.last_used_at || Date.parse(iso(row.last_used_at)) < Date.now() - 60_000) {
      await this.db.updateTable('service_keys').set({ last_used_at: at }).where('id', '=', row.id).execute();
      row.last_used_at = at;
    }
    return toServiceKey(row);
  }

  async list(): Promise<ServiceKey[]> {
    return (await this.db.selectFrom('service_keys').selectAll().orderBy('id').execute()).map(toServiceKey);
  }

  /** Revokes the key of this name at once; false when there is no active one. */
  async revoke(name: string): Promise<boolean> {
    const result = await this.db
      .updateTable('service_keys')
      .set({ revoked_at: now() })
      .where('name', '=', name)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }
}

function toServiceKey(row: {
  id: number;
  name: string;
  scopes: string;
  created_at: Date | string;
  last_used_at: Date | string | null;
  revoked_at: Date | string | null;
}): ServiceKey {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes.split(' ') as ServiceScope[],
    createdAt: iso(row.created_at),
    lastUsedAt: isoOrNull(row.last_used_at),
    revokedAt: isoOrNull(row.revoked_at),
  };
}
