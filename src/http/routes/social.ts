import type { FastifyInstance } from 'fastify';
import { issueNonce } from '../../core/replay.js';
import type { TokenInput } from '../../providers/types.js';
import { authenticator, clientOf } from '../request.js';
import { bearer, errors, providerParam, socialTokenBody } from '../schemas.js';
import { associationBody, tokenBody, type RouteContext } from './context.js';

type SocialRequest = { Params: { provider: string }; Body: TokenInput };

const associated = {
  type: 'object',
  properties: {
    success: { type: 'boolean' },
    association: { type: 'object', properties: { provider: { type: 'string' }, uid: { type: 'string' }, created: { type: 'boolean' } } },
  },
} as const;

const nonceAnswer = {
  type: 'object',
  required: ['nonce', 'expires_in'],
  properties: { nonce: { type: 'string' }, expires_in: { type: 'integer' } },
} as const;

const linkParams = {
  type: 'object',
  properties: { provider: { type: 'string', maxLength: 64 }, uid: { type: 'string', maxLength: 255 } },
  required: ['provider', 'uid'],
} as const;

/** Link a social account, sign in with one, list and unlink them. No route knows any provider. */
export function socialRoutes(app: FastifyInstance, { social, services, tokens, limits }: RouteContext): void {
  const authenticate = authenticator(tokens, services.storage);

  app.post<{ Body: Record<string, never> }>(
    '/api/nonce/',
    {
      config: limits.perIp,
      schema: {
        summary: 'A single-use nonce for the provider SDK',
        description:
          'Give it to the SDK as the sign-in request\'s nonce (Apple: its SHA-256 in hex, as Apple asks), then send it back as `nonce` with the ID token. ' +
          'It is good for one sign-in or link within expires_in seconds. SOCIAL_AUTH_<P>_REQUIRE_NONCE=issued accepts no other nonce.',
        tags: ['social'],
        response: { 200: nonceAnswer, ...errors(429) },
      },
    },
    async () => issueNonce(services.storage),
  );

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
        response: { 200: associated, ...errors(400, 401, 404, 409, 429, 502, 503) },
      },
    },
    async (request) => {
      const client = clientOf(request); // now: once the client hangs up, its address is gone
      const { user } = await authenticate(request);
      await limits.checkUser(request);
      const association = await social.associate(user, request.params.provider, request.body, client);
      request.log.info({ ...association, userId: user.id }, 'associated');
      return { success: true, association };
    },
  );

  app.post<SocialRequest>(
    '/api/auth/:provider/',
    {
      config: limits.perIp,
      schema: {
        summary: 'Sign in with a linked social account (account takeover on a new phone)',
        description: 'Answers the linked user with a new session, or 404 user_not_found. With SOCIAL_AUTH_CREATE_USER=true an unknown account gets a new user (201).',
        tags: ['social'],
        params: providerParam,
        body: socialTokenBody,
        response: { 200: { $ref: 'TokenResponse#' }, 201: { $ref: 'TokenResponse#' }, ...errors(400, 404, 429, 502, 503) },
      },
    },
    async (request, reply) => {
      const client = clientOf(request);
      const { user, isNewUser, uid, session } = await social.signIn(request.params.provider, request.body, client, {
        startSession: (trx, signedIn, audit) => tokens.startSession(trx, signedIn.id, audit, client),
        newUser: services.config.createUser ? 'ours' : 'none',
      });
      request.log.info({ provider: request.params.provider, uid, userId: user.id, newUser: isNewUser }, 'signed in');
      // Signed once the transaction is over: no database lock or connection waits on the signature.
      return reply.code(isNewUser ? 201 : 200).send(tokenBody({ user, pair: tokens.pairOf(user.id, session) }));
    },
  );

  app.get(
    '/api/associations/',
    { schema: { summary: "The signed-in user's linked social accounts", tags: ['social'], security: bearer, response: { 200: { type: 'array', items: { $ref: 'Association#' } }, ...errors(401) } } },
    async (request) => (await social.links((await authenticate(request)).userId)).map(associationBody),
  );

  app.delete<{ Params: { provider: string; uid: string } }>(
    '/api/associations/:provider/:uid/',
    {
      schema: {
        summary: 'Unlink a social account',
        description: 'Refused (409 last_login_method) when it is the last way a user without a password can sign in.',
        tags: ['social'],
        security: bearer,
        params: linkParams,
        response: { 204: { type: 'null' }, ...errors(401, 404, 409) },
      },
    },
    async (request, reply) => {
      const client = clientOf(request);
      const { userId } = await authenticate(request);
      await social.unlink(userId, request.params.provider, request.params.uid, { client, hasOtherWayIn: (user) => user.hasPassword });
      return reply.code(204).send();
    },
  );
}
