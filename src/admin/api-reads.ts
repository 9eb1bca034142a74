import type { FastifyInstance } from 'fastify';
import { userIdOf } from '../core/admin.js';
import { clientOf } from '../http/request.js';
import { answers, described, nullable, text } from '../http/schemas.js';
import { apiError } from '../lib/errors.js';
import {
  auditBody,
  auditSchema,
  detailBody,
  KEYED,
  linkBody,
  linkSchema,
  serviceKey,
  TAG,
  userBody,
  userDetail,
  userId,
  userSchema,
} from './api-schemas.js';
import type { ApiContext } from './context.js';

/** The admin API's reads: find users, a user with its links and sessions, the user of a link, the audit log. */
export function apiReadRoutes(app: FastifyInstance, context: ApiContext): void {
  searchUsers(app, context);
  getUser(app, context);
  getUserByUsername(app, context);
  getLink(app, context);
  getUserAudit(app, context);
}

function searchUsers(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
  app.get<{
    Querystring: {
      q?: string;
      provider?: string;
      created_from?: string;
      created_to?: string;
      cursor?: string;
      limit?: string;
    };
  }>(
    '/admin/api/users',
    {
      schema: {
        operationId: 'adminSearchUsers',
        summary: 'Find users',
        description:
          'q: a user id, a social account uid (of any provider, or of `provider`), an e-mail a provider gave, or the start of a username; ' +
          'without q, every user newest first. Filters: provider (has a link of it), created_from / created_to (dates). Pages: pass `next` as cursor.',
        tags: TAG,
        security: serviceKey,
        querystring: {
          type: 'object',
          properties: {
            q: { type: 'string', maxLength: 320 },
            provider: { type: 'string', maxLength: 64 },
            created_from: { type: 'string', format: 'date' },
            created_to: { type: 'string', format: 'date' },
            cursor: { type: 'string', maxLength: 1024 },
            limit: { type: 'string', pattern: '^([1-9]\\d?|100)$', description: '1 to 100, default 50' },
          },
          additionalProperties: false,
        },
        ...answers(
          {
            200: described(
              {
                type: 'object',
                required: ['users', 'next'],
                properties: { users: { type: 'array', items: userSchema }, next: nullable(text) },
              },
              'A page of users',
            ),
          },
          [...KEYED, 'invalid_request'],
        ),
      },
    },
    async (request) => {
      const actor = await serviceKeyOf(request);
      const { q, provider, created_from: from, created_to: to, cursor, limit } = request.query;
      const page = await admin.search(
        actor,
        {
          q,
          provider: provider || undefined,
          createdFrom: from,
          createdTo: to,
          cursor,
          limit: limit ? Number(limit) : 50,
        },
        clientOf(request),
      );
      return { users: page.users.map(userBody), next: page.next ?? null };
    },
  );
}

function getUser(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
  app.get<{ Params: { id: string } }>(
    '/admin/api/users/:id',
    {
      schema: {
        operationId: 'adminGetUser',
        summary: 'A user, its links (with the provider facts kept) and its active sessions',
        tags: TAG,
        security: serviceKey,
        params: userId,
        ...answers({ 200: described(userDetail, 'The user') }, [...KEYED, 'invalid_request', 'user_not_found']),
      },
    },
    async (request) => {
      const actor = await serviceKeyOf(request);
      return detailBody(await admin.user(actor, userIdOf(request.params.id), clientOf(request)));
    },
  );
}

/**
 * The user of a username: GET /admin/api/usernames/{username}. DEPRECATED path, GET
 * /admin/api/users/by-username/{username}: it reads as /admin/api/users/{id}/… (a user id "by-username"; redocly's
 * no-ambiguous-paths), so it is served, the same, for the callers written against it, and left out of the document
 * (hide). Remove it once they have moved.
 */
function getUserByUsername(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
  for (const deprecated of [false, true])
    app.get<{ Params: { username: string } }>(
      deprecated ? '/admin/api/users/by-username/:username' : '/admin/api/usernames/:username',
      {
        schema: {
          ...(deprecated ? { hide: true } : { operationId: 'adminGetUserByUsername' }),
          summary: 'A user by username (whatever its case), as adminGetUser',
          tags: TAG,
          security: serviceKey,
          params: {
            type: 'object',
            required: ['username'],
            properties: { username: { type: 'string', minLength: 1, maxLength: 150 } },
          },
          ...answers({ 200: described(userDetail, 'The user') }, [...KEYED, 'invalid_request', 'user_not_found']),
        },
      },
      async (request) => {
        const actor = await serviceKeyOf(request);
        const id = await admin.findUserByUsername(request.params.username);
        if (id === undefined) throw apiError('user_not_found');
        return detailBody(await admin.user(actor, id, clientOf(request)));
      },
    );
}

function getLink(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
  app.get<{ Params: { provider: string; uid: string } }>(
    '/admin/api/links/:provider/:uid',
    {
      schema: {
        operationId: 'adminGetLink',
        summary: 'The link of a social account (provider + uid) and its user: who is this Facebook account?',
        tags: TAG,
        security: serviceKey,
        params: {
          type: 'object',
          required: ['provider', 'uid'],
          properties: {
            provider: { type: 'string', minLength: 1, maxLength: 64 },
            uid: { type: 'string', minLength: 1, maxLength: 255 },
          },
        },
        ...answers(
          {
            200: described(
              { type: 'object', required: ['link', 'user'], properties: { link: linkSchema, user: userDetail } },
              'The link and its user',
            ),
          },
          [...KEYED, 'invalid_request', 'association_not_found'],
        ),
      },
    },
    async (request) => {
      const actor = await serviceKeyOf(request);
      const link = await admin.link(request.params.provider, request.params.uid);
      return { link: linkBody(link), user: detailBody(await admin.user(actor, link.userId, clientOf(request))) };
    },
  );
}

/** GET /admin/api/users/{id}/audit: the user's audit log (the read itself audited). */
function getUserAudit(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
  app.get<{ Params: { id: string }; Querystring: { before?: string; limit?: string; reads?: string } }>(
    '/admin/api/users/:id/audit',
    {
      schema: {
        operationId: 'adminGetUserAudit',
        summary: "The user's audit log, newest first (with who acted and why, for staff and service changes)",
        tags: TAG,
        security: serviceKey,
        params: userId,
        querystring: {
          type: 'object',
          properties: {
            before: { type: 'string', pattern: '^[1-9]\\d{0,14}$' },
            limit: { type: 'string', pattern: '^([1-9]\\d?|1\\d\\d|200)$', description: '1 to 200, default 50' },
            reads: {
              type: 'string',
              enum: ['true', 'false'],
              description: "true: the operators' reads (admin_read) too; default false",
            },
          },
          additionalProperties: false,
        },
        ...answers(
          {
            200: described({ type: 'array', items: auditSchema }, 'Events, newest first; page with ?before=<last id>'),
          },
          [...KEYED, 'invalid_request', 'user_not_found'],
        ),
      },
    },
    async (request) => {
      const id = userIdOf(request.params.id);
      const actor = await serviceKeyOf(request);
      const { before, limit, reads } = request.query;
      const events = await admin.audit(id, {
        before: before ? Number(before) : undefined,
        limit: limit ? Number(limit) : 50,
        withReads: reads === 'true',
      });
      await admin.audited(actor, { event: 'admin_read', userId: id, detail: 'audit' }, clientOf(request));
      return events.map(auditBody);
    },
  );
}
