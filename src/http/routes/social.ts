import type { FastifyInstance } from 'fastify';
import { apiError, unknownProvider } from '../../core/errors.js';
import { runPipeline } from '../../core/pipeline.js';
import { profileIsStale, withKeptProfile, withProfile } from '../../providers/profile.js';
import type { Provider, TokenInput } from '../../providers/types.js';
import type { Services } from '../../core/services.js';
import { authenticator, clientOf } from '../request.js';
import { associationBody } from './accounts.js';
import { bearer, errors, providerParam, socialTokenBody } from '../schemas.js';

type SocialRequest = { Params: { provider: string }; Body: TokenInput };

/** Link a social account, sign in with one, list and unlink them. No route knows any provider. */
export function socialRoutes(app: FastifyInstance, services: Services): void {
  const { storage, tokens, providers, pipeline, config, secrets, limits, revokeProviderTokens } = services;

  const authenticate = authenticator(tokens, storage);
  /** Proves the token; reads the profile only when this sign-in needs it (a new user, or a stale kept profile). */
  const signInIdentity = async (provider: Provider, input: TokenInput) => {
    const identity = await provider.verify(input, { profile: false });
    if (!identity.loadProfile) return identity;
    const link = await storage.findAssociation(provider.name, identity.uid);
    const needed = link ? profileIsStale(link.extraData, config.profileMaxAgeSeconds) : config.createUser;
    return needed ? withProfile(identity) : withKeptProfile(identity, link?.extraData ?? {});
  };
  const providerOf = (name: string) => {
    const provider = providers.get(name);
    if (!provider) throw unknownProvider(name);
    return provider;
  };

  app.post<SocialRequest>(
    '/api/associate/:provider/',
    {
      config: limits.perIp,
      schema: {
        summary: 'Link a social account to the signed-in user',
        description: 'Idempotent: linking the same account to the same user again answers 200 with created=false.',
        tags: ['social'],
        security: bearer,
        params: providerParam,
        body: socialTokenBody,
        response: {
          200: {
            type: 'object',
            properties: {
              success: { type: 'boolean' },
              association: {
                type: 'object',
                properties: { provider: { type: 'string' }, uid: { type: 'string' }, created: { type: 'boolean' } },
              },
            },
          },
          ...errors(400, 401, 404, 409, 429, 502),
        },
      },
    },
    async (request) => {
      const client = clientOf(request); // now: once the client hangs up, its address is gone
      const { user } = await authenticate(request);
      await limits.checkUser(request);
      const provider = providerOf(request.params.provider);
      // The provider call happens before any transaction: no database connection waits on the network.
      const identity = await withProfile(await provider.verify(request.body));
      const { context: result } = await runPipeline(pipeline, storage, {
        mode: 'associate',
        provider: provider.name,
        identity,
        user,
        options: { createUser: false },
        secrets,
        client,
      });
      request.log.info({ provider: provider.name, uid: identity.uid, userId: user.id, created: result.isNewAssociation }, 'associated');
      return { success: true, association: { provider: provider.name, uid: identity.uid, created: result.isNewAssociation } };
    },
  );

  app.post<SocialRequest>(
    '/api/auth/:provider/',
    {
      config: limits.perIp,
      schema: {
        summary: 'Sign in with a linked social account (account takeover on a new phone)',
        description:
          'Answers the linked user with a new session, or 404 user_not_found. With SOCIAL_AUTH_CREATE_USER=true an unknown account gets a new user (201).',
        tags: ['social'],
        params: providerParam,
        body: socialTokenBody,
        response: {
          200: { $ref: 'TokenResponse#' },
          201: { $ref: 'TokenResponse#' },
          ...errors(400, 404, 429, 502),
        },
      },
    },
    async (request, reply) => {
      const provider = providerOf(request.params.provider);
      const client = clientOf(request); // now: once the client hangs up, its address is gone
      const identity = await signInIdentity(provider, request.body);
      const { context: result, result: session } = await runPipeline(
        pipeline,
        storage,
        { mode: 'auth', provider: provider.name, identity, options: { createUser: config.createUser }, secrets, client },
        async (context) => {
          if (!context.user) throw apiError('user_not_found');
          const started = tokens.newSession();
          const audit = { event: 'social_sign_in' as const, userId: context.user.id, provider: provider.name, uid: identity.uid };
          await context.storage.recordSignIn(context.user.id, started, audit, client);
          return started;
        },
      );
      const user = result.user!;
      // Signed once the transaction is over: no database lock or connection waits on the signature.
      const pair = tokens.pairOf(user.id, session!);
      request.log.info({ provider: provider.name, uid: identity.uid, userId: user.id, newUser: result.isNewUser }, 'signed in');
      return reply.code(result.isNewUser ? 201 : 200).send({ id: user.id, username: user.username, ...pair });
    },
  );

  app.get(
    '/api/associations/',
    {
      schema: {
        summary: "The signed-in user's linked social accounts",
        tags: ['social'],
        security: bearer,
        response: { 200: { type: 'array', items: { $ref: 'Association#' } }, ...errors(401) },
      },
    },
    async (request) => {
      const claims = await authenticate(request);
      return (await storage.listAssociations(claims.userId)).map(associationBody);
    },
  );

  app.delete<{ Params: { provider: string; uid: string } }>(
    '/api/associations/:provider/:uid/',
    {
      schema: {
        summary: 'Unlink a social account',
        description: 'Refused (409 last_login_method) when it is the last way a user without a password can sign in.',
        tags: ['social'],
        security: bearer,
        params: {
          type: 'object',
          properties: { provider: { type: 'string', maxLength: 64 }, uid: { type: 'string', maxLength: 255 } },
          required: ['provider', 'uid'],
        },
        response: { 204: { type: 'null' }, ...errors(401, 404, 409) },
      },
    },
    async (request, reply) => {
      const claims = await authenticate(request);
      const { provider, uid } = request.params;
      const removed = await storage.transaction(async (trx) => {
        // The lock makes concurrent unlinks of one user's last two links take turns.
        const user = await trx.lockUser(claims.userId);
        const links = await trx.listAssociations(claims.userId);
        if (!user || !links.some((link) => link.provider === provider && link.uid === uid)) {
          throw apiError('association_not_found');
        }
        if (!user.hasPassword && links.length === 1) {
          throw apiError('last_login_method');
        }
        const link = await trx.deleteAssociation(claims.userId, provider, uid);
        await trx.recordAudit({ event: 'unlinked', userId: claims.userId, provider, uid }, clientOf(request));
        return link;
      });
      await revokeProviderTokens(removed);
      return reply.code(204).send();
    },
  );
}
