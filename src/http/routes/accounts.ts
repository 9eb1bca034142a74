import type { FastifyInstance } from 'fastify';
import { invalidRequest } from '../../lib/errors.js';
import {
  answers,
  bearer,
  described,
  dateTime,
  integer,
  nullable,
  SIGNED_IN,
  signedInNoContent,
  text,
} from '../schemas.js';
import { authenticator, clientOf } from '../request.js';
import { associationBody, tokenBody, type RouteContext } from './context.js';

const username = { type: 'string', minLength: 3, maxLength: 150, pattern: '^[\\w.@+-]+$' } as const;
const password = { type: 'string', minLength: 8, maxLength: 1024 } as const;
const credentials = {
  type: 'object',
  properties: { username: { type: 'string', maxLength: 150 }, password: { type: 'string', maxLength: 1024 } },
  required: ['username', 'password'],
  additionalProperties: false,
} as const;

const me = {
  type: 'object',
  required: ['id', 'username', 'has_password', 'date_joined', 'last_login', 'associations', 'claims'],
  properties: {
    id: integer,
    username: text,
    has_password: { type: 'boolean' },
    date_joined: dateTime,
    last_login: nullable(dateTime),
    associations: { type: 'array', items: { $ref: 'Association#' } },
    claims: {
      type: 'object',
      additionalProperties: true,
      description:
        "The custom claims this session's next access token carries: the user's own as they are now (set by an operator), and those its sign-in added (a blocking hook, a pipeline step) over them; {}: none",
    },
  },
} as const;

const auditEvent = {
  type: 'object',
  required: ['id', 'event', 'provider', 'uid', 'detail', 'ip', 'user_agent', 'created_at'],
  properties: {
    id: integer,
    event: text,
    provider: nullable(text),
    uid: nullable(text),
    detail: nullable(text),
    ip: nullable(text),
    user_agent: nullable(text),
    created_at: dateTime,
  },
} as const;

/** What the examples of the document show (openapi.ts): values of the real shapes. */
export const TOKEN_EXAMPLE = {
  id: 42,
  username: 'ada',
  access_token:
    'eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl',
  refresh_token: 'p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o',
  token_type: 'Bearer',
  expires_in: 900,
};

export const ASSOCIATION_EXAMPLE = {
  provider: 'facebook',
  uid: '10150000000000001',
  extra_data: { id: '10150000000000001', name: 'Ada Lovelace', email: 'ada@example.com', expires_at: 1767225600 },
  created_at: '2026-11-30T08:16:02.000Z',
  updated_at: '2026-12-01T09:02:11.000Z',
};

/** Our own users and sessions: guest and password users, token refresh, logout, me, history, JWKS. */
export function accountRoutes(
  app: FastifyInstance,
  { accounts, services, tokens, signingKeys, limits }: RouteContext,
): void {
  const authenticate = authenticator(tokens, services.storage);

  app.post<{ Body: { username?: string; password?: string } }>(
    '/api/users/',
    {
      config: limits.perIp,
      schema: {
        operationId: 'createUser',
        summary: 'Create a user',
        description:
          'An empty body makes a guest user (a phone at first launch); {username, password} makes a password user (both or neither). ' +
          'Usernames are unique whatever their case.',
        tags: ['users'],
        body: { type: 'object', properties: { username, password }, additionalProperties: false },
        'x-body-optional': true,
        ...answers({ 201: described({ $ref: 'TokenResponse#' }, 'The new user, signed in') }, [
          'invalid_request',
          'username_taken',
          'rate_limited',
        ]),
        'x-example': {
          request: { username: 'ada', password: 'correct horse battery staple' },
          response: TOKEN_EXAMPLE,
        },
      },
    },
    async (request, reply) => {
      const client = clientOf(request);
      if ((request.body.username === undefined) !== (request.body.password === undefined))
        throw invalidRequest('username and password go together: send both, or neither for a guest');
      if (request.body.password !== undefined) await limits.checkPassword(request);
      return reply.code(201).send(tokenBody(await accounts.create(request.body, client)));
    },
  );

  app.post<{ Body: { username: string; password: string } }>(
    '/api/token/',
    {
      config: limits.perIp,
      schema: {
        operationId: 'signInWithPassword',
        summary: 'Sign in with username and password',
        description: 'Any case of the username signs in. Every failure answers the same 401 invalid_credentials.',
        tags: ['sessions'],
        body: credentials,
        ...answers({ 200: described({ $ref: 'TokenResponse#' }, 'Signed in: a new session') }, [
          'invalid_credentials',
          'user_disabled',
          'rate_limited',
        ]),
        'x-example': {
          request: { username: 'ada', password: 'correct horse battery staple' },
          response: TOKEN_EXAMPLE,
        },
      },
    },
    async (request) => {
      const client = clientOf(request); // first: once the client hangs up, Node forgets its address
      await limits.checkPassword(request);
      return tokenBody(await accounts.signInWithPassword(request.body.username, request.body.password, client));
    },
  );

  app.post<{ Body: { refresh_token: string } }>(
    '/api/token/refresh/',
    {
      config: limits.perIp,
      schema: {
        operationId: 'refreshToken',
        summary: 'Exchange a refresh token for a new pair',
        description: 'Refresh tokens are single use. Presenting a used one again revokes its whole session.',
        tags: ['sessions'],
        body: {
          type: 'object',
          properties: { refresh_token: { type: 'string', minLength: 1, maxLength: 512 } },
          required: ['refresh_token'],
          additionalProperties: false,
        },
        ...answers({ 200: described({ $ref: 'TokenResponse#' }, 'A new pair in the same session') }, [
          'invalid_refresh_token',
          'refresh_token_reused',
          'user_disabled',
          'rate_limited',
        ]),
        'x-example': { request: { refresh_token: TOKEN_EXAMPLE.refresh_token }, response: TOKEN_EXAMPLE },
      },
    },
    async (request) => tokenBody(await accounts.refresh(request.body.refresh_token, clientOf(request))),
  );

  app.post(
    '/api/logout/',
    {
      schema: signedInNoContent({
        operationId: 'logout',
        summary: 'End the session of this access token',
        description: 'Its access and refresh tokens stop working at once.',
        tags: ['sessions'],
      }),
    },
    async (request, reply) => {
      await accounts.logout(await authenticate(request), clientOf(request));
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/me/',
    {
      schema: {
        operationId: 'getMe',
        summary: 'The signed-in user and its linked social accounts',
        tags: ['users'],
        security: bearer,
        ...answers({ 200: described(me, 'The signed-in user') }, SIGNED_IN),
        'x-example': {
          response: {
            id: 42,
            username: 'guest_5f2b9c1d0e7a4b36',
            has_password: false,
            date_joined: '2026-11-30T08:15:00.000Z',
            last_login: '2026-12-01T09:02:11.000Z',
            associations: [ASSOCIATION_EXAMPLE],
            claims: { role: 'editor', plan: 'pro' },
          },
        },
      },
    },
    async (request) => {
      const { user, claims } = await authenticate(request);
      const links = await services.storage.links.ofUser(user.id);
      return {
        id: user.id,
        username: user.username,
        has_password: user.hasPassword,
        date_joined: user.createdAt,
        last_login: user.lastLoginAt,
        associations: links.map(associationBody),
        claims,
      };
    },
  );

  app.delete(
    '/api/me/',
    {
      schema: signedInNoContent({
        operationId: 'deleteMe',
        summary: 'Delete the signed-in user',
        description:
          'Removes the user, its links and sessions at once; provider tokens kept for a link (Apple) are revoked.',
        tags: ['users'],
      }),
    },
    async (request, reply) => {
      const client = clientOf(request);
      await accounts.delete((await authenticate(request)).userId, client);
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: { before?: string; limit?: string } }>(
    '/api/audit/',
    {
      schema: {
        operationId: 'listAuditEvents',
        summary: "The signed-in user's security history",
        description:
          'Links, unlinks, sign-ins, refused attempts, revoked sessions: newest first. Page with ?before=<id>.',
        tags: ['users'],
        security: bearer,
        querystring: {
          type: 'object',
          // Strings of digits: JSON bodies are validated without type coercion, and so is the query.
          // At most 15 digits: every id is below 2^53, and bigint on PostgreSQL.
          properties: {
            before: { type: 'string', pattern: '^[1-9]\\d{0,14}$' },
            limit: { type: 'string', pattern: '^([1-9]\\d?|1\\d\\d|200)$', description: '1 to 200, default 50' },
          },
          additionalProperties: false,
        },
        ...answers({ 200: described({ type: 'array', items: auditEvent }, 'Security events, newest first') }, [
          'invalid_request',
          ...SIGNED_IN,
        ]),
        'x-example': {
          response: [
            {
              id: 1207,
              event: 'link_refused_other_user',
              provider: 'facebook',
              uid: '10150000000000001',
              detail: 'another user tried to link this account',
              ip: '203.0.113.7',
              user_agent: 'MyApp/2.1 (iPhone)',
              created_at: '2026-12-01T09:00:00.000Z',
            },
            {
              id: 1190,
              event: 'associated',
              provider: 'facebook',
              uid: '10150000000000001',
              detail: null,
              ip: '198.51.100.4',
              user_agent: 'MyApp/2.1 (Android)',
              created_at: '2026-11-30T08:16:02.000Z',
            },
          ],
        },
      },
    },
    async (request) => {
      const { userId } = await authenticate(request);
      const { before, limit } = request.query;
      const events = await accounts.history(userId, {
        before: before ? Number(before) : undefined,
        limit: limit ? Number(limit) : 50,
      });
      return events.map((event) => ({ ...event, user_agent: event.userAgent, created_at: event.createdAt }));
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'getJwks',
        summary: 'Public keys that verify our access tokens',
        description: 'For a backend that verifies our access tokens itself. Cached for 5 minutes.',
        tags: ['sessions'],
        ...answers({ 200: described({ $ref: 'Jwks#' }, 'The public JWK set') }, []),
        'x-example': {
          response: {
            keys: [
              {
                kty: 'EC',
                crv: 'P-256',
                x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
                y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
                kid: 'b2f0c9d4',
                alg: 'ES256',
                use: 'sig',
              },
            ],
          },
        },
      },
    },
    async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(signingKeys.publicJwks),
  );
}
