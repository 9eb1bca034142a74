import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { userIdOf } from '../core/admin.js';
import type { StaffContext } from '../core/staff.js';
import { clientOf } from '../http/request.js';
import { apiError } from '../lib/errors.js';
import type { ConsoleContext } from './context.js';
import type { Form } from './session.js';

type Action = (
  context: StaffContext,
  id: number,
  form: Form,
  request: FastifyRequest,
  reply: FastifyReply,
) => Promise<unknown>;

/**
 * The actions of a user's page (POST /admin/users/:id/…): each signed in, its CSRF token checked, then done through
 * core/admin.ts (which checks the staff member's role and asks for a reason); back to the user's page, saying what
 * was done.
 */
export function actionRoutes(scope: FastifyInstance, { sessions, admin }: ConsoleContext): void {
  const action = (path: string, run: Action) =>
    scope.post<{ Params: { id: string }; Body: Form }>(path, { schema: { hide: true } }, async (request, reply) => {
      const context = await sessions.signedIn(request, reply);
      if (!context) return reply;
      const form = request.body ?? {};
      sessions.checkCsrf(form, context);
      return run(context, userIdOf(request.params.id), form, request, reply);
    });

  action('/users/:id/unlink', async (context, id, form, request, reply) => {
    const { provider = '', uid = '', reason, force } = form;
    await admin.unlink(context.actor, id, provider, uid, clientOf(request), reason, force === '1');
    return reply.redirect(`/admin/users/${id}?done=unlinked`, 303);
  });
  action('/users/:id/revoke-sessions', async (context, id, form, request, reply) => {
    await admin.revokeSessions(context.actor, id, clientOf(request), form.reason);
    return reply.redirect(`/admin/users/${id}?done=revoked`, 303);
  });
  action('/users/:id/revoke-session', async (context, id, form, request, reply) => {
    await admin.revokeSession(context.actor, id, form.session ?? '', clientOf(request), form.reason);
    return reply.redirect(`/admin/users/${id}?done=session-revoked`, 303);
  });
  for (const [path, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    action(`/users/:id/${path}`, async (context, id, form, request, reply) => {
      await admin.setDisabled(context.actor, id, disabled, clientOf(request), form.reason);
      return reply.redirect(`/admin/users/${id}?done=${disabled ? 'disabled' : 'enabled'}`, 303);
    });
  }
  action('/users/:id/delete', async (context, id, form, request, reply) => {
    // The username typed again: a delete cannot be undone.
    const { user } = await admin.user(context.actor, id, clientOf(request));
    if (form.confirm !== user.username)
      throw apiError('invalid_request', {
        about: `to delete, type the username (${user.username}) in the confirmation box`,
      });
    await admin.deleteUser(context.actor, id, clientOf(request), form.reason);
    return reply.redirect(`/admin/users?done=deleted`, 303);
  });
  action('/users/:id/export', async (context, id, form, request, reply) => {
    const data = await admin.exportUser(context.actor, id, clientOf(request), form.reason);
    return reply
      .type('application/json; charset=utf-8')
      .header('content-disposition', `attachment; filename="user-${id}.json"`)
      .send(JSON.stringify(data, null, 2));
  });
}
