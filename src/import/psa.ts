import { readFileSync } from 'node:fs';
import Sqlite from 'better-sqlite3';
import pg from 'pg';
import { ConfigError } from '../lib/settings.js';
import type { ImportSource, SourceLink, SourceUser } from './importer.js';
import { psaProviderName } from './psa-backends.js';

/**
 * python-social-auth's database (the original design's Django app): Django's `auth_user` and social_django's
 * `social_auth_usersocialauth`, from its SQLite file, its PostgreSQL database, or `manage.py dumpdata auth.user
 * social_django.usersocialauth` JSON. Sample: ../shared/fixtures/python-social-auth (see test/import.test.ts).
 */
interface DjangoUser {
  id: number;
  username: string;
  password: string;
  is_active: boolean | number;
  date_joined: string | Date;
  last_login: string | Date | null;
}

interface DjangoLink {
  user_id: number;
  provider: string;
  uid: string;
  extra_data: unknown;
  created: string | Date;
}

export function psaSource(location: string): ImportSource {
  const read = readerOf(location);
  return {
    name: 'psa',
    provider: psaProviderName,
    notKept: [
      'auth_user.email, first_name, last_name (social-link users have a username only; profile facts stay on their links)',
      'is_staff, is_superuser, groups, permissions',
    ],
    async *batches(size) {
      try {
        let after = 0;
        for (;;) {
          const { users, links } = await read.page(after, size);
          if (users.length === 0) return;
          yield users.map((user) =>
            toSourceUser(
              user,
              links.filter((link) => Number(link.user_id) === Number(user.id)),
            ),
          );
          after = Number(users.at(-1)!.id);
        }
      } finally {
        await read.close();
      }
    },
  };
}

function toSourceUser(user: DjangoUser, links: DjangoLink[]): SourceUser {
  return {
    sourceId: String(user.id),
    numericId: Number(user.id),
    username: user.username,
    passwordHash: typeof user.password === 'string' && user.password !== '' ? user.password : null,
    createdAt: djangoTime(user.date_joined),
    lastLoginAt: djangoTime(user.last_login),
    active: Boolean(user.is_active),
    links: links.map((link): SourceLink => ({
      provider: link.provider,
      uid: String(link.uid),
      extraData: extraDataOf(link.extra_data),
      createdAt: djangoTime(link.created) ?? undefined,
    })),
  };
}

/** Django writes "2026-12-01 05:22:24.747000" (SQLite, UTC) or a timestamptz (PostgreSQL), dumpdata ISO 8601. */
function djangoTime(value: string | Date | null): string | null {
  if (value === null) return null;
  const date =
    value instanceof Date
      ? value
      : new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value.replace(' ', 'T')}Z`);
  return Number.isNaN(date.getTime()) ? null : date.toISOString(); // unreadable: no date
}

function extraDataOf(value: unknown): Record<string, unknown> {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      return {};
    }
  }
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
    ? (parsed as Record<string, unknown>)
    : {};
}

interface Reader {
  page(afterId: number, limit: number): Promise<{ users: DjangoUser[]; links: DjangoLink[] }>;
  close(): Promise<void>;
}

const USERS =
  'select id, username, password, is_active, date_joined, last_login from auth_user where id > $1 order by id limit $2';
const LINKS =
  'select user_id, provider, uid, extra_data, created from social_auth_usersocialauth where user_id > $1 and user_id <= $2 order by id';

function readerOf(location: string): Reader {
  if (location.endsWith('.json')) return dumpdataReader(location);
  if (location.startsWith('sqlite:')) {
    const db = new Sqlite(location.slice('sqlite:'.length), { readonly: true, fileMustExist: true });
    const users = db.prepare(USERS.replace('$1', '?').replace('$2', '?'));
    const links = db.prepare(LINKS.replace('$1', '?').replace('$2', '?'));
    return {
      async page(after, limit) {
        const page = users.all(after, limit) as DjangoUser[];
        return { users: page, links: page.length ? (links.all(after, page.at(-1)!.id) as DjangoLink[]) : [] };
      },
      close: async () => void db.close(),
    };
  }
  if (/^postgres(ql)?:\/\//.test(location)) {
    const pool = new pg.Pool({ connectionString: location, max: 1 });
    return {
      async page(after, limit) {
        const page = (await pool.query<DjangoUser>(USERS, [after, limit])).rows;
        return {
          users: page,
          links: page.length ? (await pool.query<DjangoLink>(LINKS, [after, page.at(-1)!.id])).rows : [],
        };
      },
      close: () => pool.end(),
    };
  }
  if (/^(mysql|mariadb):\/\//.test(location)) {
    throw new ConfigError(
      'import psa: MySQL and MariaDB are not read directly; export with `manage.py dumpdata auth.user social_django.usersocialauth > psa.json` and import that file',
    );
  }
  throw new ConfigError(
    `import psa: the source must be sqlite:PATH, postgres://…, or a dumpdata .json file, got "${location}"`,
  );
}

function dumpdataReader(file: string): Reader {
  const rows = JSON.parse(readFileSync(file, 'utf8')) as Array<{
    model: string;
    pk: number;
    fields: Record<string, unknown>;
  }>;
  if (!Array.isArray(rows)) throw new ConfigError(`${file} is not a dumpdata JSON list`);
  const users = rows
    .filter((row) => row.model === 'auth.user')
    .map((row) => ({ id: row.pk, ...row.fields }) as unknown as DjangoUser)
    .sort((a, b) => a.id - b.id);
  const links = rows
    .filter((row) => row.model === 'social_django.usersocialauth')
    .map((row) => ({ ...row.fields, user_id: row.fields.user }) as unknown as DjangoLink);
  return {
    async page(after, limit) {
      const page = users.filter((user) => user.id > after).slice(0, limit);
      return { users: page, links: links.filter((link) => page.some((user) => user.id === Number(link.user_id))) };
    },
    close: async () => {},
  };
}
