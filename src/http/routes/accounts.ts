import type { FastifyInstance } from 'fastify';
import { bearer, dateTime, errors, integer, nullable, signedInNoContent, text } from '../schemas.js';
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
  properties: { id: integer, username: text, has_password: { type: 'boolean' }, date_joined: dateTime, last_login: nullable(dateTime), associations: { type: 'array', items: { $ref: 'Association#' } } },
} as const;

const auditEvent = {
  type: 'object',
  properties: { id: integer, event: text, provider: nullable(text), uid: nullable(text), detail: nullable(text), ip: nullable(text), user_agent: nullable(text), created_at: dateTime },
} as const;

/** Our own users and sessions: guest and password users, token refresh, logout, me, history, JWKS. */
export function accountRoutes(app: FastifyInstance, { accounts, services, tokens, signingKeys, limits }: RouteContext): void {
  const authenticate = authenticator(tokens, services.storage);

  app.post<{ Body: { username?: string; password?: string } }>(
    '/api/users/',
    {
      config: limits.perIp,
      schema: {
        summary: 'Create a user',
        description: 'An empty body makes a guest user (a phone at first launch); {username, password} makes a password user.',
        tags: ['users'],
        body: { type: 'object', properties: { username, password }, dependencies: { username: ['password'], password: ['username'] }, additionalProperties: false },
        response: { 201: { $ref: 'TokenResponse#' }, ...errors(400, 409, 429) },
      },
    },
    async (request, reply) => {
      const client = clientOf(request);
      if (request.body.password !== undefined) await limits.checkPassword(request);
      return reply.code(201).send(tokenBody(await accounts.create(request.body, client)));
    },
  );

  app.post<{ Body: { username: string; password: string } }>(
    '/api/token/',
    {
      config: limits.perIp,
      schema: { summary: 'Sign in with username and password', tags: ['sessions'], body: credentials, response: { 200: { $ref: 'TokenResponse#' }, ...errors(400, 401, 429) } },
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
        summary: 'Exchange a refresh token for a new pair',
        description: 'Refresh tokens are single use. Presenting a used one again revokes its whole session.',
        tags: ['sessions'],
        body: { type: 'object', properties: { refresh_token: { type: 'string', minLength: 1, maxLength: 512 } }, required: ['refresh_token'], additionalProperties: false },
        response: { 200: { $ref: 'TokenResponse#' }, ...errors(400, 401, 429) },
      },
    },
    async (request) => tokenBody(await accounts.refresh(request.body.refresh_token, clientOf(request))),
  );

  app.post(
    '/api/logout/',
    { schema: signedInNoContent({ summary: 'End the session of this access token', description: 'Its access and refresh tokens stop working at once.', tags: ['sessions'] }) },
    async (request, reply) => {
      await accounts.logout(await authenticate(request), clientOf(request));
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/me/',
    { schema: { summary: 'The signed-in user and its linked social accounts', tags: ['users'], security: bearer, response: { 200: me, ...errors(401) } } },
    async (request) => {
      const { user } = await authenticate(request);
      const links = await services.storage.links.ofUser(user.id);
      return { id: user.id, username: user.username, has_password: user.hasPassword, date_joined: user.createdAt, last_login: user.lastLoginAt, associations: links.map(associationBody) };
    },
  );

  app.delete(
    '/api/me/',
    {
      schema: signedInNoContent({
        summary: 'Delete the signed-in user',
        description: 'Removes the user, its links and sessions at once; provider tokens kept for a link (Apple) are revoked.',
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
        summary: "The signed-in user's security history",
        description: 'Links, unlinks, sign-ins, refused attempts, revoked sessions: newest first. Page with ?before=<id>.',
        tags: ['users'],
        security: bearer,
        querystring: {
          type: 'object',
          // Strings of digits: JSON bodies are validated without type coercion, and so is the query.
          // At most 15 digits: every id is below 2^53, and bigint on PostgreSQL.
          properties: { before: { type: 'string', pattern: '^[1-9]\\d{0,14}$' }, limit: { type: 'string', pattern: '^([1-9]\\d?|1\\d\\d|200)$', description: '1 to 200, default 50' } },
          additionalProperties: false,
        },
        response: { 200: { type: 'array', items: auditEvent }, ...errors(400, 401) },
      },
    },
    async (request) => {
      const { userId } = await authenticate(request);
      const { before, limit } = request.query;
      const events = await accounts.history(userId, { before: before ? Number(before) : undefined, limit: limit ? Number(limit) : 50 });
      return events.map((event) => ({ ...event, user_agent: event.userAgent, created_at: event.createdAt }));
    },
  );

  app.get('/.well-known/jwks.json', { schema: { summary: 'Public keys that verify our access tokens', tags: ['sessions'] } }, async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=300').send(signingKeys.publicJwks),
  );
}
