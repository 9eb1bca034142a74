import pg from 'pg';
import { ConfigError } from '../lib/settings.js';
import { iso, isoOrNull } from '../store/rows.js';
import type { ImportSource, SourceUser } from './importer.js';

/**
 * Supabase Auth's tables over a PostgreSQL connection: `auth.users` (bcrypt `encrypted_password`) and
 * `auth.identities` (`provider`, `provider_id` — before November 2023, `id` held the provider's id).
 * Sources: test/fixtures/imports/supabase/sources.json.
 */
const PROVIDERS: Record<string, string> = {
  google: 'google',
  apple: 'apple',
  facebook: 'facebook',
  twitter: 'twitter',
  github: 'github',
};

interface SupabaseUser {
  id: string;
  email: string | null;
  phone: string | null;
  encrypted_password: string | null;
  created_at: Date;
  last_sign_in_at: Date | null;
  banned_until: Date | null;
  deleted_at: Date | null;
}

interface SupabaseIdentity {
  user_id: string;
  provider: string;
  provider_id: string;
  identity_data: Record<string, unknown> | null;
  created_at: Date | null;
}

export function supabaseSource(url: string): ImportSource {
  if (!/^postgres(ql)?:\/\//.test(url))
    throw new ConfigError(`import supabase: the source is the project's PostgreSQL URL (postgres://…), got "${url}"`);
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  return {
    name: 'supabase',
    provider: (name) => (Object.hasOwn(PROVIDERS, name) ? PROVIDERS[name] : undefined),
    // The e-mail and phone "identities" are the password sign-in itself, not social accounts.
    notLinks: ['email', 'phone'],
    notKept: ['raw_user_meta_data, raw_app_meta_data, phone (the username is the e-mail, or the phone without one)'],
    async *batches(size) {
      try {
        const columns = await pool.query<{ column_name: string }>(
          "select column_name from information_schema.columns where table_schema = 'auth' and table_name = 'identities'",
        );
        if (columns.rows.length === 0) throw new ConfigError('import supabase: no auth.identities table at that URL');
        const providerId = columns.rows.some((row) => row.column_name === 'provider_id') ? 'provider_id' : 'id';
        let after = '';
        for (;;) {
          const users = (
            await pool.query<SupabaseUser>(
              'select id::text, email, phone, encrypted_password, created_at, last_sign_in_at, banned_until, deleted_at from auth.users where id::text > $1 order by id::text limit $2',
              [after, size],
            )
          ).rows;
          if (users.length === 0) return;
          const identities = (
            await pool.query<SupabaseIdentity>(
              `select user_id::text, provider, ${providerId}::text as provider_id, identity_data, created_at from auth.identities where user_id::text = any($1)`,
              [users.map((user) => user.id)],
            )
          ).rows;
          yield users.map((user): SourceUser => ({
            sourceId: user.id,
            username: user.email?.toLowerCase() || user.phone || `supabase_${user.id}`,
            passwordHash: user.encrypted_password || null,
            createdAt: iso(user.created_at),
            lastLoginAt: isoOrNull(user.last_sign_in_at),
            active:
              user.deleted_at === null && (user.banned_until === null || user.banned_until.getTime() < Date.now()),
            links: identities
              .filter((identity) => identity.user_id === user.id)
              .map((identity) => ({
                provider: identity.provider,
                uid: identity.provider_id,
                extraData: identity.identity_data ?? {},
                createdAt: identity.created_at ? iso(identity.created_at) : undefined,
              })),
          }));
          after = users.at(-1)!.id;
        }
      } finally {
        await pool.end();
      }
    },
  };
}
