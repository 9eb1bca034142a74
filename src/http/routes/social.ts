import type { FastifyInstance } from 'fastify';
import { issueNonce } from '../../core/replay.js';
import type { TokenInput } from '../../providers/types.js';
import type { ProviderOfParams } from '../metrics.js';
import { authenticator, clientOf } from '../request.js';
import {
  answers,
  bearer,
  described,
  linkTokenBody,
  mergeTokenBody,
  providerParam,
  SIGNED_IN,
  socialTokenBody,
} from '../schemas.js';
import { ASSOCIATION_EXAMPLE, TOKEN_EXAMPLE } from './accounts.js';
import { associationBody, tokenBody, type RouteContext } from './context.js';

type SocialRequest = { Params: { provider: string }; Body: TokenInput };

/** The provider an associate or auth request names, for its metrics (social_link_social_requests_total). */
const providerOfPath: ProviderOfParams = (params) => params.provider;

const associated = {
  type: 'object',
  required: ['success', 'association'],
  properties: {
    success: { type: 'boolean' },
    association: {
      type: 'object',
      required: ['provider', 'uid', 'created'],
      properties: {
        provider: { type: 'string' },
        uid: { type: 'string' },
        created: { type: 'boolean', description: 'false when this account was linked to this user already' },
      },
    },
  },
} as const;

/** What the provider errors of a token look like to the app. */
const PROVIDER_ERRORS = [
  'invalid_request',
  'invalid_token',
  'unknown_provider',
  'provider_unavailable',
  'rate_limited',
] as const;
/** The app's blocking hooks (core/blocking-hooks.ts) refuse with their own message, or were not reached. */
const HOOK_ERRORS = ['hook_refused', 'hook_unavailable'] as const;

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
        operationId: 'createNonce',
        summary: 'A single-use nonce for the provider SDK',
        description:
          "Give it to the SDK as the sign-in request's nonce (Apple: its SHA-256 in hex, as Apple asks), then send it back as `nonce` with the ID token. " +
          'It is good for one sign-in or link within expires_in seconds. SOCIAL_AUTH_<P>_REQUIRE_NONCE=issued accepts no other nonce.',
        tags: ['social'],
        ...answers({ 200: described(nonceAnswer, 'A nonce, good for one sign-in or link') }, ['rate_limited']),
        'x-example': { response: { nonce: 'sln_Jm3kP0qV7xW2bY9tR4eL1sN8dA6cF5gH', expires_in: 600 } },
      },
    },
    async () => issueNonce(services.storage),
  );

  app.post<SocialRequest>(
    '/api/associate/:provider/',
    {
      config: { ...limits.perIp, socialRequest: { action: 'associate', provider: providerOfPath } },
      schema: {
        operationId: 'linkProvider',
        summary: 'Link a social account to the signed-in user',
        description: 'Idempotent: linking the same account to the same user again answers 200 with created=false.',
        tags: ['social'],
        security: bearer,
        params: providerParam,
        body: socialTokenBody,
        ...answers({ 200: described(associated, 'Linked (or linked already to this user)') }, [
          ...PROVIDER_ERRORS,
          ...SIGNED_IN,
          'already_associated',
          'user_disabled',
          ...HOOK_ERRORS,
        ]),
        'x-runs-pipeline': true,
        'x-example': {
          request: { access_token: 'EAAGm0PX4ZCpsBAKZCZD' },
          response: { success: true, association: { provider: 'facebook', uid: '10150000000000001', created: true } },
        },
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

  app.post<{ Body: { link_token: string } }>(
    '/api/associate/link-token/',
    {
      config: limits.perIp,
      schema: {
        operationId: 'linkWithToken',
        summary: 'Link the account a 409 link_required answer proposed, to the signed-in user',
        description:
          "After `auth` answered 409 link_required (an unknown account whose verified e-mail is a user's), the person signs in with one of its `providers`; " +
          'this then links the proposed account to them, without asking its provider again. The token is single use, good for link_token_expires_in seconds, and only for the user it was issued for.',
        tags: ['social'],
        security: bearer,
        body: linkTokenBody,
        ...answers({ 200: described(associated, 'Linked (or linked already to this user)') }, [
          ...SIGNED_IN,
          'invalid_link_token',
          'unknown_provider',
          'already_associated',
          'user_disabled',
          'rate_limited',
          ...HOOK_ERRORS,
        ]),
        'x-runs-pipeline': true,
        'x-example': {
          request: { link_token: 'slk_q8Zr2mVx0bLk4TjN7wPc1sYe5HdA9fGu3oKi6RnBtEw' },
          response: {
            success: true,
            association: { provider: 'apple', uid: '001234.5e201aec537347aeb79d23cbc345170a.1321', created: true },
          },
        },
      },
    },
    async (request) => {
      const client = clientOf(request);
      const { user } = await authenticate(request);
      await limits.checkUser(request);
      const association = await social.linkWithToken(user, request.body.link_token, client);
      request.log.info({ ...association, userId: user.id }, 'associated with a link token');
      return { success: true, association };
    },
  );

  app.post<{ Body: { merge_token: string } }>(
    '/api/users/merge/',
    {
      config: limits.perIp,
      schema: {
        operationId: 'mergeIntoOwner',
        summary: 'Merge this guest into the user whose social account it proved, and sign in as that user',
        description:
          'After linking answered 409 already_associated with a merge_token (the signed-in user is a guest: no password, no linked account): signs in as the owner of that social account, ' +
          "deletes this user, and emits user.merged {from, into} so that the app's backend moves its data. " +
          "The token is single use, good for merge_token_expires_in seconds, and only with this user's session.",
        tags: ['social'],
        security: bearer,
        body: mergeTokenBody,
        ...answers({ 200: described({ $ref: 'TokenResponse#' }, 'Signed in as the owner; this user is gone') }, [
          ...SIGNED_IN,
          'invalid_merge_token',
          'user_disabled',
          'rate_limited',
          ...HOOK_ERRORS,
        ]),
        'x-example': {
          request: { merge_token: 'slm_Q2x0ZXJuYXRpdmVNZXJnZVRva2VuRXhhbXBsZQ' },
          response: TOKEN_EXAMPLE,
        },
      },
    },
    async (request) => {
      const client = clientOf(request);
      const { user } = await authenticate(request);
      const merged = await social.mergeGuest(user, request.body.merge_token, client);
      request.log.info({ from: user.id, into: merged.user.id }, 'guest merged');
      return tokenBody({ user: merged.user, pair: tokens.pairOf(merged.user, merged.session) });
    },
  );

  app.post<SocialRequest>(
    '/api/auth/:provider/',
    {
      config: { ...limits.perIp, socialRequest: { action: 'auth', provider: providerOfPath } },
      schema: {
        operationId: 'signInWithProvider',
        summary: 'Sign in with a linked social account (account takeover on a new phone)',
        description:
          'Answers the linked user with a new session, or 404 user_not_found. With SOCIAL_AUTH_CREATE_USER=true an unknown account gets a new user (201). ' +
          "An unknown account whose provider verified an e-mail that a user's link also verified answers 409 link_required instead (SOCIAL_AUTH_EMAIL_LINKING): " +
          'sign in with one of `providers`, then POST /api/associate/link-token/.',
        tags: ['social'],
        params: providerParam,
        body: socialTokenBody,
        ...answers(
          {
            200: described({ $ref: 'TokenResponse#' }, 'The linked user, signed in'),
            201: described(
              { $ref: 'TokenResponse#' },
              'A new user for an unknown account (SOCIAL_AUTH_CREATE_USER=true), signed in',
            ),
          },
          [...PROVIDER_ERRORS, 'user_not_found', 'user_disabled', 'link_required', ...HOOK_ERRORS],
        ),
        'x-runs-pipeline': true,
        'x-example': {
          request: {
            id_token: 'eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiIxMTAxNjkxMDAwMDAwMDAwMDAwMDEifQ.c2ln',
            nonce: 'sln_Jm3kP0qV7xW2bY9tR4eL1sN8dA6cF5gH',
          },
          response: TOKEN_EXAMPLE,
        },
      },
    },
    async (request, reply) => {
      const client = clientOf(request);
      const { user, isNewUser, uid, session } = await social.signIn(request.params.provider, request.body, client);
      request.log.info({ provider: request.params.provider, uid, userId: user.id, newUser: isNewUser }, 'signed in');
      // Signed once the transaction is over: no database lock or connection waits on the signature.
      return reply.code(isNewUser ? 201 : 200).send(tokenBody({ user, pair: tokens.pairOf(user, session) }));
    },
  );

  app.get(
    '/api/associations/',
    {
      schema: {
        operationId: 'listLinks',
        summary: "The signed-in user's linked social accounts",
        tags: ['social'],
        security: bearer,
        ...answers(
          { 200: described({ type: 'array', items: { $ref: 'Association#' } }, 'The linked accounts, oldest first') },
          SIGNED_IN,
        ),
        'x-example': { response: [ASSOCIATION_EXAMPLE] },
      },
    },
    async (request) => (await social.links((await authenticate(request)).userId)).map(associationBody),
  );

  app.delete<{ Params: { provider: string; uid: string } }>(
    '/api/associations/:provider/:uid/',
    {
      schema: {
        operationId: 'unlinkProvider',
        summary: 'Unlink a social account',
        description: 'Refused (409 last_login_method) when it is the last way a user without a password can sign in.',
        tags: ['social'],
        security: bearer,
        params: linkParams,
        ...answers({ 204: { type: 'null', description: 'Unlinked' } }, [
          'invalid_request',
          ...SIGNED_IN,
          'association_not_found',
          'last_login_method',
        ]),
      },
    },
    async (request, reply) => {
      const client = clientOf(request);
      const { userId } = await authenticate(request);
      await social.unlink(userId, request.params.provider, request.params.uid, {
        client,
        hasOtherWayIn: (user) => user.hasPassword,
      });
      return reply.code(204).send();
    },
  );
}
