import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { apiError } from '../../core/errors.js';
import { dummyPasswordHash, hashPassword, verifyPassword } from '../../auth/passwords.js';
import type { Services } from '../../core/services.js';
import { bearer, errors } from '../schemas.js';
import { authenticator, clientOf } from '../request.js';

const username = { type: 'string', minLength: 3, maxLength: 150, pattern: '^[\\w.@+-]+$' } as const;
const password = { type: 'string', minLength: 8, maxLength: 1024 } as const;

/** Our own users and sessions: guest and password users, token refresh, logout, me, JWKS. */
export function accountRoutes(app: FastifyInstance, { storage, tokens, signingKeys, limits, revokeProviderTokens }: Services): void {
  const authenticate = authenticator(tokens, storage);
  app.post<{ Body: { username?: string; password?: string } }>(
    '/api/users/',
    {
      config: limits.perIp,
      schema: {
        summary: 'Create a user',
        description: 'An empty body makes a guest user (a phone at first launch); {username, password} makes a password user.',
        tags: ['users'],
        body: {
          type: 'object',
          properties: { username, password },
          dependencies: { username: ['password'], password: ['username'] },
          additionalProperties: false,
        },
        response: { 201: { $ref: 'TokenResponse#' }, ...errors(400, 409, 429) },
      },
    },
    async (request, reply) => {
      const { username: name, password: secret } = request.body;
      if (name && (await storage.findUserByUsername(name))) {
        throw apiError('username_taken');
      }
      const user = await storage
        .createUser(name ?? `guest_${randomBytes(8).toString('hex')}`, secret ? await hashPassword(secret) : null)
        .catch((error: unknown) => {
          // Two sign-ups raced for one username: the unique constraint decided.
          if (name && isUniqueViolation(error)) throw apiError('username_taken');
          throw error;
        });
      const pair = await tokens.startSession(storage, user.id);
      await storage.recordAudit({ event: 'user_created', userId: user.id, detail: secret ? 'password' : 'guest' }, clientOf(request));
      return reply.code(201).send({ id: user.id, username: user.username, ...pair });
    },
  );

  app.post<{ Body: { username: string; password: string } }>(
    '/api/token/',
    {
      config: limits.perIp,
      schema: {
        summary: 'Sign in with username and password',
        tags: ['sessions'],
        body: {
          type: 'object',
          properties: { username: { type: 'string', maxLength: 150 }, password: { type: 'string', maxLength: 1024 } },
          required: ['username', 'password'],
          additionalProperties: false,
        },
        response: { 200: { $ref: 'TokenResponse#' }, ...errors(400, 401, 429) },
      },
    },
    async (request) => {
      const client = clientOf(request); // now: once the client hangs up, its address is gone
      const user = await storage.findUserByUsername(request.body.username);
      // Unknown user or guest user: still spend one scrypt, so timing does not tell which usernames exist.
      const ok = await verifyPassword(request.body.password, user?.passwordHash ?? (await dummyPasswordHash()));
      if (!user || !user.passwordHash || !ok) {
        // The owner of the username sees the failed attempt in its audit log.
        if (user) await storage.recordAudit({ event: 'refused', userId: user.id, detail: 'invalid_credentials' }, client);
        throw apiError('invalid_credentials');
      }
      const session = tokens.newSession();
      await storage.transaction((trx) => trx.recordSignIn(user.id, session, { event: 'password_sign_in', userId: user.id }, client));
      return { id: user.id, username: user.username, ...tokens.pairOf(user.id, session) };
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
        body: {
          type: 'object',
          properties: { refresh_token: { type: 'string', minLength: 1, maxLength: 512 } },
          required: ['refresh_token'],
          additionalProperties: false,
        },
        response: { 200: { $ref: 'TokenResponse#' }, ...errors(400, 401, 429) },
      },
    },
    async (request) => {
      const { userId, pair } = await tokens.refresh(storage, request.body.refresh_token, clientOf(request));
      const user = await storage.findUserById(userId);
      if (!user) throw apiError('invalid_refresh_token');
      return { id: user.id, username: user.username, ...pair };
    },
  );

  app.post(
    '/api/logout/',
    {
      schema: {
        summary: 'End the session of this access token',
        description: 'Its access and refresh tokens stop working at once.',
        tags: ['sessions'],
        security: bearer,
        response: { 204: { type: 'null' }, ...errors(401) },
      },
    },
    async (request, reply) => {
      const claims = await authenticate(request);
      await storage.revokeSession(claims.sessionId, 'logout');
      await storage.recordAudit({ event: 'logout', userId: claims.userId }, clientOf(request));
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/me/',
    {
      schema: {
        summary: 'The signed-in user and its linked social accounts',
        tags: ['users'],
        security: bearer,
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'integer' },
              username: { type: 'string' },
              has_password: { type: 'boolean' },
              date_joined: { type: 'string', format: 'date-time' },
              last_login: { type: ['string', 'null'], format: 'date-time' },
              associations: { type: 'array', items: { $ref: 'Association#' } },
            },
          },
          ...errors(401),
        },
      },
    },
    async (request) => {
      const { user } = await authenticate(request);
      return {
        id: user.id,
        username: user.username,
        has_password: user.hasPassword,
        date_joined: user.createdAt,
        last_login: user.lastLoginAt,
        associations: (await storage.listAssociations(user.id)).map(associationBody),
      };
    },
  );

  app.delete(
    '/api/me/',
    {
      schema: {
        summary: 'Delete the signed-in user',
        description: 'Removes the user, its links and sessions at once; provider tokens kept for a link (Apple) are revoked.',
        tags: ['users'],
        security: bearer,
        response: { 204: { type: 'null' }, ...errors(401) },
      },
    },
    async (request, reply) => {
      const claims = await authenticate(request);
      const links = await storage.transaction(async (trx) => {
        const removed = await trx.listAssociations(claims.userId);
        await trx.deleteUser(claims.userId);
        await trx.recordAudit({ event: 'user_deleted', userId: claims.userId, detail: `${removed.length} links` }, clientOf(request));
        return removed;
      });
      for (const link of links) await revokeProviderTokens(link);
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
          properties: { before: { type: 'string', pattern: '^[1-9]\\d{0,15}$' }, limit: { type: 'string', pattern: '^([1-9]\\d?|1\\d\\d|200)$', description: '1 to 200, default 50' } },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                id: { type: 'integer' },
                event: { type: 'string' },
                provider: { type: ['string', 'null'] },
                uid: { type: ['string', 'null'] },
                detail: { type: ['string', 'null'] },
                ip: { type: ['string', 'null'] },
                user_agent: { type: ['string', 'null'] },
                created_at: { type: 'string', format: 'date-time' },
              },
            },
          },
          ...errors(400, 401),
        },
      },
    },
    async (request) => {
      const claims = await authenticate(request);
      const { before, limit } = request.query;
      const events = await storage.listAudit({ userId: claims.userId, before: before ? Number(before) : undefined, limit: limit ? Number(limit) : 50 });
      return events.map((event) => ({ ...event, user_agent: event.userAgent, created_at: event.createdAt }));
    },
  );

  app.get(
    '/.well-known/jwks.json',
    { schema: { summary: 'Public keys that verify our access tokens', tags: ['sessions'] } },
    async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(signingKeys.publicJwks),
  );
}

export function associationBody(association: {
  provider: string;
  uid: string;
  extraData: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}) {
  return {
    provider: association.provider,
    uid: association.uid,
    extra_data: association.extraData,
    created_at: association.createdAt,
    updated_at: association.updatedAt,
  };
}

/** PostgreSQL's 23505 or SQLite's SQLITE_CONSTRAINT_UNIQUE. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}
