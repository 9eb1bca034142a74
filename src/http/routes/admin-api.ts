import type { FastifyInstance, FastifyRequest } from 'fastify';
import { userIdOf, type Actor, type Admin, type LinkView, type UserView } from '../../core/admin.js';
import { apiError, rateLimited, type ErrorCode } from '../../lib/errors.js';
import { clientNetwork } from '../rate-limits.js';
import type { UserSummary } from '../../store/directory.js';
import type { AuditEvent } from '../../store/storage.js';
import type { Storage } from '../../store/storage.js';
import { carriesNul, clientOf } from '../request.js';
import { answers, dateTime, described, integer, nullable, text } from '../schemas.js';

/**
 * The admin API (/admin/api/) for the app's own backends, with a service key (`social-link keys service
 * create`): find users, read their links, sessions and audit log, unlink, end sessions, delete, export. Every
 * call is audited with the key's name. The console (routes/admin-console.ts) stands on the same core/admin.ts.
 */
const serviceKey = [{ serviceKey: [] }];
const KEYED: ErrorCode[] = ['invalid_service_key', 'rate_limited'];
const CHANGE: ErrorCode[] = [...KEYED, 'forbidden', 'reason_required', 'invalid_request', 'user_not_found'];

const userSchema = {
  type: 'object',
  required: ['id', 'username', 'has_password', 'date_joined', 'last_login', 'disabled_at'],
  properties: {
    id: integer,
    username: text,
    has_password: { type: 'boolean' },
    date_joined: dateTime,
    last_login: nullable(dateTime),
    disabled_at: {
      ...nullable(dateTime),
      description: 'When an operator disabled the user (it cannot sign in); null: it can',
    },
    disabled_reason: { ...nullable(text), description: "The operator's reason (a user's detail only)" },
    providers: { type: 'array', items: text },
    name: { ...nullable(text), description: 'A name its providers gave (search results)' },
    email: { ...nullable(text), description: 'An e-mail its providers gave, a verified one first (search results)' },
    matched_by: { type: 'string', enum: ['id', 'uid', 'email', 'username'] },
  },
} as const;
const linkSchema = {
  type: 'object',
  required: ['id', 'user_id', 'provider', 'uid', 'extra_data', 'verified_email', 'created_at', 'updated_at'],
  properties: {
    id: integer,
    user_id: integer,
    provider: text,
    uid: text,
    extra_data: { type: 'object', additionalProperties: true },
    verified_email: nullable(text),
    created_at: dateTime,
    updated_at: dateTime,
  },
} as const;
const sessionSchema = {
  type: 'object',
  required: ['id', 'created_at', 'last_used_at', 'ip', 'user_agent'],
  properties: {
    id: text,
    created_at: dateTime,
    last_used_at: dateTime,
    ip: nullable(text),
    user_agent: nullable(text),
  },
} as const;
const userDetail = {
  type: 'object',
  required: ['user', 'links', 'sessions'],
  properties: {
    user: userSchema,
    links: { type: 'array', items: linkSchema },
    sessions: { type: 'array', items: sessionSchema },
  },
} as const;
const auditSchema = {
  type: 'object',
  required: ['id', 'event', 'provider', 'uid', 'detail', 'ip', 'user_agent', 'created_at', 'actor', 'reason'],
  properties: {
    id: integer,
    event: text,
    provider: nullable(text),
    uid: nullable(text),
    detail: nullable(text),
    ip: nullable(text),
    user_agent: nullable(text),
    created_at: dateTime,
    actor: nullable(text),
    reason: nullable(text),
  },
} as const;

const userId = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^\\d{1,20}$' } },
} as const;
// Absent or blank, a change answers 400 reason_required (core/admin.ts decides, and audits the refusal).
const reasonProperty = {
  type: 'string',
  maxLength: 500,
  description: 'Why: kept with the change in the audit log (required: 400 reason_required without it)',
} as const;
const reasonBody = { type: 'object', properties: { reason: reasonProperty }, additionalProperties: false } as const;
const TAG = ['admin'];

const userBody = (
  user: Pick<UserSummary, 'id' | 'username' | 'hasPassword' | 'createdAt' | 'lastLoginAt' | 'disabledAt'> &
    Partial<UserSummary> & { disabledReason?: string | null },
) => ({
  id: user.id,
  username: user.username,
  has_password: user.hasPassword,
  date_joined: user.createdAt,
  last_login: user.lastLoginAt,
  disabled_at: user.disabledAt,
  ...(user.disabledReason !== undefined ? { disabled_reason: user.disabledReason } : {}),
  ...(user.providers ? { providers: user.providers } : {}),
  ...(user.name !== undefined ? { name: user.name, email: user.email ?? null } : {}),
  ...(user.matchedBy ? { matched_by: user.matchedBy } : {}),
});
const linkBody = (link: LinkView) => ({
  id: link.id,
  user_id: link.userId,
  provider: link.provider,
  uid: link.uid,
  extra_data: link.extraData,
  verified_email: link.verifiedEmail,
  created_at: link.createdAt,
  updated_at: link.updatedAt,
});
const detailBody = (view: UserView) => ({
  user: userBody(view.user),
  links: view.links.map(linkBody),
  sessions: view.sessions.map((session) => ({
    id: session.id,
    created_at: session.createdAt,
    last_used_at: session.lastUsedAt,
    ip: session.ip,
    user_agent: session.userAgent,
  })),
});
const auditBody = (event: AuditEvent) => ({ ...event, user_agent: event.userAgent, created_at: event.createdAt });

type Limit = (request: FastifyRequest, who: string) => Promise<void>;

/**
 * The admin API's budget (RATE_LIMIT_ADMIN_API_PER_MINUTE) on the project's rate-limit plugin (http/rate-limits.ts:
 * the same store, Redis when configured): per service key, so that a leaked key cannot copy the directory at full
 * speed; per client network for requests without a valid key (guessing keys).
 */
function adminApiLimit(app: FastifyInstance, perMinute: number | undefined): Limit {
  // The plugin is registered only when rate limits are on (RATE_LIMIT_ENABLED).
  if (perMinute === undefined || !app.hasDecorator('createRateLimit')) return async () => {};
  const keys = new WeakMap<FastifyRequest, string>();
  const check = app.createRateLimit({
    max: perMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => `admin-api:${keys.get(request)}`,
  });
  return async (request, who) => {
    keys.set(request, who);
    const limit = await check(request);
    if (!limit.isAllowed && limit.isExceeded) throw rateLimited(Math.max(1, Math.ceil(limit.ttlInSeconds ?? 60)));
  };
}

/** The service key of a request (Authorization: Bearer slk_…), or 401 invalid_service_key; 429 past its budget. */
async function keyOf(request: FastifyRequest, storage: Storage, limit: Limit): Promise<Actor> {
  const header = request.headers.authorization;
  const key = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
  const found = key ? await storage.serviceKeys.use(key) : undefined;
  await limit(request, found ? `key:${found.id}` : `ip:${clientNetwork(request.ip)}`);
  if (!found) throw apiError('invalid_service_key');
  return { kind: 'key', id: found.id, name: found.name, scopes: found.scopes };
}

export function adminApiRoutes(parent: FastifyInstance, options: { admin: Admin; storage: Storage }): void {
  void parent.register(async (app) => routes(app, options));
}

function routes(app: FastifyInstance, { admin, storage }: { admin: Admin; storage: Storage }): void {
  const limit = adminApiLimit(app, admin.apiRequestsPerMinute);
  const serviceKeyOf = (request: FastifyRequest) => keyOf(request, storage, limit);
  app.addHook('preHandler', async (request) => {
    if (carriesNul(request)) throw apiError('invalid_request', { about: 'no value may hold a NUL character' });
  });
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

  // The user of a username: GET /admin/api/usernames/{username}. DEPRECATED path, GET /admin/api/users/by-username/{username}:
  // it reads as /admin/api/users/{id}/… (a user id "by-username"; redocly's no-ambiguous-paths), so it is served, the
  // same, for the callers written against it, and left out of the document (hide). Remove it once they have moved.
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

  app.post<{ Params: { id: string }; Body: { provider: string; uid: string; reason: string; force?: boolean } }>(
    '/admin/api/users/:id/unlink',
    {
      schema: {
        operationId: 'adminUnlink',
        summary: "Unlink one of the user's social accounts",
        description: "Refused (409 last_login_method) for a user's last way in, unless force (scope write).",
        tags: TAG,
        security: serviceKey,
        params: userId,
        body: {
          type: 'object',
          required: ['provider', 'uid'],
          properties: {
            provider: { type: 'string', minLength: 1, maxLength: 64 },
            uid: { type: 'string', minLength: 1, maxLength: 255 },
            reason: reasonProperty,
            force: { type: 'boolean' },
          },
          additionalProperties: false,
        },
        ...answers({ 204: { type: 'null', description: 'Unlinked' } }, [
          ...CHANGE,
          'association_not_found',
          'last_login_method',
        ]),
      },
    },
    async (request, reply) => {
      const actor = await serviceKeyOf(request);
      const { provider, uid, reason, force } = request.body;
      await admin.unlink(actor, userIdOf(request.params.id), provider, uid, clientOf(request), reason, force === true);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { id: string }; Body: { reason: string } }>(
    '/admin/api/users/:id/revoke-sessions',
    {
      schema: {
        operationId: 'adminRevokeSessions',
        summary:
          'End every session of the user (its refresh tokens stop working at once, its access tokens at their next use)',
        tags: TAG,
        security: serviceKey,
        params: userId,
        body: reasonBody,
        ...answers(
          {
            200: described(
              { type: 'object', required: ['revoked'], properties: { revoked: integer } },
              'How many sessions ended',
            ),
          },
          CHANGE,
        ),
      },
    },
    async (request) => {
      const actor = await serviceKeyOf(request);
      return {
        revoked: await admin.revokeSessions(actor, userIdOf(request.params.id), clientOf(request), request.body.reason),
      };
    },
  );

  app.post<{ Params: { id: string; session: string }; Body: { reason: string } }>(
    '/admin/api/users/:id/sessions/:session/revoke',
    {
      schema: {
        operationId: 'adminRevokeSession',
        summary: "End one session of the user (a lost phone's), keeping its others",
        tags: TAG,
        security: serviceKey,
        params: {
          type: 'object',
          required: ['id', 'session'],
          properties: { id: userId.properties.id, session: { type: 'string', minLength: 1, maxLength: 64 } },
        },
        body: reasonBody,
        ...answers({ 204: { type: 'null', description: 'Ended' } }, [...CHANGE, 'session_not_found']),
      },
    },
    async (request, reply) => {
      const actor = await serviceKeyOf(request);
      await admin.revokeSession(
        actor,
        userIdOf(request.params.id),
        request.params.session,
        clientOf(request),
        request.body.reason,
      );
      return reply.code(204).send();
    },
  );

  for (const [action, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    app.post<{ Params: { id: string }; Body: { reason: string } }>(
      `/admin/api/users/:id/${action}`,
      {
        schema: {
          operationId: disabled ? 'adminDisableUser' : 'adminEnableUser',
          summary: disabled
            ? 'Disable the user: every session ends at once, and sign-in and refresh answer 403 user_disabled until it is enabled (webhook user.disabled)'
            : 'Enable a disabled user: it may sign in again; sessions ended by disabling stay ended (webhook user.enabled)',
          description: 'Doing it again changes nothing and sends no webhook.',
          tags: TAG,
          security: serviceKey,
          params: userId,
          body: reasonBody,
          ...answers(
            {
              200: described(
                { type: 'object', required: ['user'], properties: { user: userSchema } },
                'The user as it is now',
              ),
            },
            CHANGE,
          ),
        },
      },
      async (request) => {
        const actor = await serviceKeyOf(request);
        return {
          user: userBody(
            await admin.setDisabled(
              actor,
              userIdOf(request.params.id),
              disabled,
              clientOf(request),
              request.body.reason,
            ),
          ),
        };
      },
    );
  }

  app.post<{ Params: { id: string }; Body: { reason: string } }>(
    '/admin/api/users/:id/delete',
    {
      schema: {
        operationId: 'adminDeleteUser',
        summary:
          "Delete the user, its links and sessions (provider grants kept for its links, as Apple's, are revoked)",
        tags: TAG,
        security: serviceKey,
        params: userId,
        body: reasonBody,
        ...answers({ 204: { type: 'null', description: 'Deleted' } }, CHANGE),
      },
    },
    async (request, reply) => {
      const actor = await serviceKeyOf(request);
      await admin.deleteUser(actor, userIdOf(request.params.id), clientOf(request), request.body.reason);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { id: string }; Body: { reason: string } }>(
    '/admin/api/users/:id/export',
    {
      schema: {
        operationId: 'adminExportUser',
        summary:
          "Everything kept about the user, as JSON (a data-access request): profile, links with the provider's facts, sessions, audit log",
        tags: TAG,
        security: serviceKey,
        params: userId,
        body: reasonBody,
        ...answers({ 200: described({ type: 'object', additionalProperties: true }, "The user's data") }, [
          ...KEYED,
          'forbidden',
          'reason_required',
          'invalid_request',
          'user_not_found',
        ]),
      },
    },
    async (request) => {
      const actor = await serviceKeyOf(request);
      return admin.exportUser(actor, userIdOf(request.params.id), clientOf(request), request.body.reason);
    },
  );
}
