import type { FastifyInstance } from 'fastify';
import { userIdOf } from '../core/admin.js';
import { clientOf } from '../http/request.js';
import { answers, described, integer } from '../http/schemas.js';
import {
  CHANGE,
  KEYED,
  reasonBody,
  reasonProperty,
  serviceKey,
  TAG,
  userBody,
  userId,
  userSchema,
} from './api-schemas.js';
import type { ApiContext } from './context.js';

/**
 * The admin API's changes, each with a reason kept in the audit log (core/admin.ts asks for it and checks the key's
 * scope): unlink, end sessions, disable or enable, delete; and the export of a user's data, which asks for one too.
 */
export function apiChangeRoutes(app: FastifyInstance, context: ApiContext): void {
  unlink(app, context);
  revokeSessions(app, context);
  revokeSession(app, context);
  disableAndEnable(app, context);
  setClaims(app, context);
  deleteUser(app, context);
  exportUser(app, context);
}

function unlink(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
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
}

function revokeSessions(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
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
}

function revokeSession(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
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
}

function disableAndEnable(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
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
}

/** PUT replaces the user's custom claims, PATCH changes some (RFC 7396 merge patch: null removes a claim). */
function setClaims(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
  for (const method of ['PUT', 'PATCH'] as const) {
    const replace = method === 'PUT';
    app.route<{ Params: { id: string }; Body: { claims: Record<string, unknown>; reason: string } }>({
      method,
      url: '/admin/api/users/:id/claims',
      schema: {
        operationId: replace ? 'adminReplaceClaims' : 'adminPatchClaims',
        summary: replace
          ? "Replace the user's custom claims (an empty object removes them all; webhook user.claims_changed)"
          : "Change some of the user's custom claims: each name given is set, or removed when its value is null (RFC 7396; webhook user.claims_changed)",
        description:
          'Custom claims are in each access token of the user from its next sign-in or refresh, and in GET /api/me/. ' +
          'At most 1000 bytes of JSON; reserved names (iss, sub, aud, exp, nbf, iat, jti, sid, scope, client_id, ' +
          'auth_time, acr, amr, azp, nonce, at_hash, c_hash, cnf, act, may_act, typ) are refused with 400 invalid_claims. ' +
          'A change that changes nothing writes nothing.',
        tags: TAG,
        security: serviceKey,
        params: userId,
        body: {
          type: 'object',
          required: ['claims'],
          properties: {
            claims: {
              type: 'object',
              additionalProperties: true,
              description: replace ? 'The claims, all of them' : 'The claims to set; null removes one',
            },
            reason: reasonProperty,
          },
          additionalProperties: false,
        },
        ...answers(
          {
            200: described(
              { type: 'object', required: ['user'], properties: { user: userSchema } },
              'The user as it is now, its claims included',
            ),
          },
          [...CHANGE, 'invalid_claims'],
        ),
        'x-example': {
          request: { claims: replace ? { role: 'editor', plan: 'pro' } : { plan: null }, reason: 'ticket 4121' },
        },
      },
      handler: async (request) => {
        const actor = await serviceKeyOf(request);
        const { claims, reason } = request.body;
        const user = await admin.setClaims(
          actor,
          userIdOf(request.params.id),
          replace ? { replace: claims } : { patch: claims },
          clientOf(request),
          reason,
        );
        return { user: userBody(user) };
      },
    });
  }
}

function deleteUser(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
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
}

function exportUser(app: FastifyInstance, { admin, serviceKeyOf }: ApiContext): void {
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
