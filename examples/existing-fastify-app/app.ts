/**
 * An existing Fastify app with users of its own, adding social-link to let its users link Facebook,
 * Google, Apple… and sign in with them on a new phone. The app keeps its users, its sessions and its
 * database; social-link adds routes under /social and keeps its own tables in a database of its own.
 */
import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyRequest } from 'fastify';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { migrateSocialLink, socialLink } from '../../src/index.js';

interface HostDatabase {
  members: { id: string; name: string };
  member_sessions: { token: string; member_id: string };
}

export async function buildHostApp(options: {
  databasePath: string;
  socialLinkDatabase: string;
  env: Record<string, string | undefined>;
}) {
  const db = new Kysely<HostDatabase>({ dialect: new SqliteDialect({ database: new SQLite(options.databasePath) }) });
  // The host's own tables and migrations (here: created on the spot).
  await db.schema
    .createTable('members')
    .ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .execute();
  await db.schema
    .createTable('member_sessions')
    .ifNotExists()
    .addColumn('token', 'text', (c) => c.primaryKey())
    .addColumn('member_id', 'text')
    .execute();
  // social-link's tables, in its own database.
  await migrateSocialLink(options.socialLinkDatabase);

  const app = Fastify();
  app.addHook('onClose', () => db.destroy());

  const startSession = async (memberId: string) => {
    const token = randomBytes(24).toString('base64url');
    await db.insertInto('member_sessions').values({ token, member_id: memberId }).execute();
    return token;
  };
  const memberOf = async (request: FastifyRequest) => {
    const token = /^Session (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
    if (!token) return null;
    const session = await db
      .selectFrom('member_sessions')
      .select('member_id')
      .where('token', '=', token)
      .executeTakeFirst();
    return session?.member_id ?? null;
  };

  // The host's own routes.
  app.post<{ Body: { name: string } }>('/members', async (request) => {
    const id = `m_${randomBytes(6).toString('hex')}`;
    await db.insertInto('members').values({ id, name: request.body.name }).execute();
    return { id, session: await startSession(id) };
  });
  app.get('/whoami', async (request, reply) => {
    const id = await memberOf(request);
    return id ? { id } : reply.code(401).send({ error: 'sign in' });
  });

  // social-link, for the host's members.
  await app.register(socialLink, {
    prefix: '/social',
    database: options.socialLinkDatabase,
    env: options.env,
    resolveUser: memberOf,
    signIn: async (memberId) => ({ id: memberId, session: await startSession(memberId) }),
  });
  return app;
}
