import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { devSecretsDirFor, loadConfig } from './config/config.js';
import { ConfigError } from './lib/settings.js';
import type { Env } from './lib/settings.js';
import { apiError } from './lib/errors.js';
import { issueNonce } from './core/replay.js';
import type { PipelineStep } from './core/pipeline-step.js';
import { createServices } from './core/services.js';
import { SocialAccounts } from './core/social.js';
import { installErrorHandling } from './http/errors.js';
import { auditRefusals } from './http/hooks.js';
import { clientOf } from './http/request.js';
import { linkTokenBody, providerParam, socialTokenBody } from './http/schemas.js';
import type { SocialIdentity, TokenInput } from './providers/types.js';
import { migrateToLatest, openDatabase, type Database } from './store/database.js';
import { Storage } from './store/storage.js';

/**
 * social-link inside an existing Fastify app: the linking routes, mounted where the host wants them, for
 * the host's OWN users. The host says who is signed in (`resolveUser`) and starts its own session when a
 * social account signs in (`signIn`). Everything else is the server's: the same services, providers (with
 * their circuit breakers and settings), pipeline, storage, errors and audit log. Each host user is one
 * social-link user known by the host's id, made when it first links an account. social-link keeps its
 * tables in a database of its own (`database`), never among the host's; it reads only its own settings
 * (SOCIAL_AUTH_*, SOCIAL_LINK_*), never the host's DATABASE_URL or PORT. No host code runs inside its
 * transactions.
 *
 *   await migrateSocialLink('sqlite:./data/social-link.sqlite');
 *   await app.register(socialLink, { prefix: '/social', database: 'sqlite:./data/social-link.sqlite', resolveUser, signIn });
 */
export interface SocialLinkPluginOptions {
  /** social-link's own database: a URL (sqlite:PATH, postgres://…) or an open Kysely of its own. */
  database: string | Kysely<Database>;
  /** The host's signed-in user id for this request, or null (the routes then answer 401). */
  resolveUser(request: FastifyRequest): Promise<string | number | null> | string | number | null;
  /**
   * A social account of this user signed in: start the host's session and return the response body. `claims`: what
   * the blocking hooks and pipeline steps added for this sign-in ({} when none), for the host's own session.
   */
  signIn(
    userId: string,
    request: FastifyRequest,
    reply: FastifyReply,
    claims: Record<string, unknown>,
  ): Promise<unknown> | unknown;
  /** Optional: make a host user for an unknown social account; without it, auth answers 404 user_not_found. */
  createUser?(identity: SocialIdentity, request: FastifyRequest): Promise<string | number> | string | number;
  /** May this user remove its last link (does it have another way in)? Default: yes. */
  canRemoveLastLink?(userId: string): Promise<boolean> | boolean;
  /** Settings (SOCIAL_AUTH_*, SOCIAL_LINK_*), as the server reads them; default process.env. Others are ignored. */
  env?: Env;
  /** Pipeline steps, as the server's `buildApp({ pipeline })`. */
  pipeline?: readonly PipelineStep[];
  /**
   * Outside production, where the encryption key generated when SOCIAL_LINK_ENCRYPTION_KEYS is not set is
   * kept (default ./data, as the server's), so that Apple tokens sealed before a restart can still be revoked.
   */
  devSecretsDir?: string;
}

/** A link as the plugin answers it: `user_id` is the host's id. */
export interface EmbeddedLink {
  provider: string;
  uid: string;
  user_id: string;
  extra_data: Record<string, unknown>;
  created_at: string;
}

/** social-link's own settings of an environment: the host's (DATABASE_URL, PORT…) are not ours to read. */
const ownSettings = (env: Env): Env =>
  Object.fromEntries(Object.entries(env).filter(([name]) => /^(SOCIAL_AUTH_|SOCIAL_LINK_|NODE_ENV$)/.test(name)));

function databaseOf(database: string | Kysely<Database> | undefined): Kysely<Database> {
  if (database === undefined)
    throw new ConfigError(
      "socialLink: `database` must name social-link's own database (sqlite:PATH or postgres://…), apart from your tables",
    );
  return typeof database === 'object' ? database : openDatabase(database, { checkpointThread: true });
}

/**
 * Creates (or updates) social-link's tables in its own database: the server's migrations. `legacyFrom`: the
 * host's database of an earlier version of this plugin, which kept its links in the host's own
 * `social_link_associations` table: they are copied over (again and again harmlessly: a link already there
 * stays as it is), so that no user loses a link.
 */
export async function migrateSocialLink(
  database: string | Kysely<Database>,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the host's database: a schema we do not know
  options: { legacyFrom?: Kysely<any> } = {},
): Promise<string[]> {
  const db = databaseOf(database);
  try {
    // The earlier plugin was given the host's database: refuse to spread our tables among the host's.
    if (await hasTable(db, 'social_link_associations')) {
      throw new ConfigError(
        "migrateSocialLink: this database holds social_link_associations, so it is your app's: give social-link a database of its own, and this one as { legacyFrom }",
      );
    }
    const applied = await migrateToLatest(db);
    if (options.legacyFrom) await importLegacyLinks(options.legacyFrom, new Storage(db));
    return applied;
  } finally {
    if (typeof database !== 'object') await db.destroy();
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const hasTable = async (db: Kysely<any>, name: string) =>
  (await db.introspection.getTables()).some((table) => table.name === name);

/** The earlier plugin's links (provider, uid, the host's user id, extra data as JSON text, sealed tokens, created_at). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the host's database: a schema we do not know
async function importLegacyLinks(host: Kysely<any>, storage: Storage): Promise<void> {
  if (!(await hasTable(host, 'social_link_associations'))) return;
  const rows = (await host.selectFrom('social_link_associations').selectAll().execute()) as Array<
    Record<string, string | null>
  >;
  for (const row of rows) {
    const user = await storage.users.ofExternal(String(row.user_id));
    const extraData = typeof row.extra_data === 'string' ? (JSON.parse(row.extra_data) as Record<string, unknown>) : {};
    await storage.links.insert(
      user.id,
      String(row.provider),
      String(row.uid),
      extraData,
      row.provider_tokens ?? null,
      row.created_at ?? undefined,
    );
  }
}

async function plugin(app: FastifyInstance, options: SocialLinkPluginOptions): Promise<void> {
  if ('db' in options)
    throw new ConfigError(
      "socialLink: the `db` option is gone: pass `database`, social-link's own database (see migrateSocialLink and its legacyFrom)",
    );
  const config = loadConfig(ownSettings(options.env ?? process.env), { role: 'embedded' });
  const db = databaseOf(options.database);
  const services = createServices({
    config,
    db,
    log: app.log,
    pipeline: options.pipeline,
    devSecretsDir: options.devSecretsDir ?? devSecretsDirFor(config),
  });
  const { createUser } = options;
  // The host's own record of a sign-in: social-link records it and answers the host's id; the host starts its session.
  const social = new SocialAccounts<{ hostId: string; claims: Record<string, unknown> }, FastifyRequest>(services, {
    async startSession(trx, user, audit, client, claims = {}) {
      const external = await trx.users.externalIdOf(user.id);
      if (external === undefined) throw apiError('user_not_found');
      await trx.audit.record(audit, client);
      return { hostId: external, claims };
    },
    newUser: createUser
      ? { external: async (identity, request) => String(await createUser(identity, request)) }
      : 'none',
  });
  app.addHook('onClose', async () => {
    await services.close();
    if (typeof options.database !== 'object') await db.destroy();
  });
  installErrorHandling(app, services.storage.health);
  auditRefusals(app, services);

  /** The host's signed-in user id (401 without one). */
  const hostIdOf = async (request: FastifyRequest) => {
    const hostId = await options.resolveUser(request);
    if (hostId === null || hostId === undefined || hostId === '')
      throw apiError('not_authenticated', { detail: 'sign in to the app first' });
    return String(hostId);
  };
  const schema = { params: providerParam, body: socialTokenBody };
  type SocialRequest = { Params: { provider: string }; Body: TokenInput };

  // A single-use nonce for the provider SDK (see the server's POST /api/nonce/).
  app.post('/nonce/', async () => issueNonce(services.storage));

  app.post<SocialRequest>('/associate/:provider/', { schema }, async (request) => {
    const client = clientOf(request);
    const user = await services.storage.users.ofExternal(await hostIdOf(request));
    request.userId = user.id;
    return {
      success: true,
      association: await social.associate(user, request.params.provider, request.body, client, { offerMerge: false }),
    };
  });

  // Links the account a 409 link_required proposed (see the server's POST /api/associate/link-token/).
  app.post<{ Body: { link_token: string } }>(
    '/associate/link-token/',
    { schema: { body: linkTokenBody } },
    async (request) => {
      const client = clientOf(request);
      const user = await services.storage.users.ofExternal(await hostIdOf(request));
      request.userId = user.id;
      return { success: true, association: await social.linkWithToken(user, request.body.link_token, client) };
    },
  );

  app.post<SocialRequest>('/auth/:provider/', { schema }, async (request, reply) => {
    const { session } = await social.signIn(request.params.provider, request.body, clientOf(request), request);
    return options.signIn(session.hostId, request, reply, session.claims);
  });

  app.get('/associations/', async (request) => {
    const hostId = await hostIdOf(request);
    const user = await services.storage.users.findExternal(hostId);
    const links = user ? await social.links(user.id) : [];
    return links.map((link): EmbeddedLink => ({
      provider: link.provider,
      uid: link.uid,
      user_id: hostId,
      extra_data: link.extraData,
      created_at: link.createdAt,
    }));
  });

  app.delete<{ Params: { provider: string; uid: string } }>('/associations/:provider/:uid/', async (request, reply) => {
    const client = clientOf(request);
    const hostId = await hostIdOf(request);
    const user = await services.storage.users.findExternal(hostId);
    if (!user) throw apiError('association_not_found');
    // The host is asked before our transaction: no host code runs under our locks.
    const hasOtherWayIn = (await options.canRemoveLastLink?.(hostId)) ?? true;
    await social.unlink(user.id, request.params.provider, request.params.uid, {
      client,
      hasOtherWayIn: () => hasOtherWayIn,
    });
    return reply.code(204).send();
  });
}

/** The Fastify plugin; register it with a `prefix` of your choice. */
export const socialLink = fp(plugin, { name: 'social-link', fastify: '5.x', encapsulate: true });
