import type { FastifyInstance } from 'fastify';
import { isDay, mayChange, mayOverride, userIdOf } from '../core/admin.js';
import { clientOf } from '../http/request.js';
import type { ConsoleContext } from './context.js';
import { dashboardFigures } from './dashboard.js';
import type { Form } from './session.js';

/** What a user's page says after an action of it redirected there (`?done=`). */
const NOTICES: Record<string, string> = {
  unlinked:
    "Unlinked; the reason is in the audit history below. The user's devices stay signed in: end a lost phone's session below.",
  revoked: 'Every session of this user has ended.',
  'session-revoked': 'That session has ended; the others go on.',
  deleted: 'The user, its links and sessions are deleted; the audit log keeps what happened.',
  disabled: 'The user is disabled: its sessions have ended and it cannot sign in until enabled.',
  enabled: 'The user is enabled: it may sign in again.',
};

/** The console's pages (GET), each for a signed-in staff member: the dashboard, the search, a user, a link. */
export function pageRoutes(scope: FastifyInstance, context: ConsoleContext): void {
  dashboardPage(scope, context);
  usersPage(scope, context);
  userPage(scope, context);
  linkPage(scope, context);
}

function dashboardPage(scope: FastifyInstance, { sessions, admin, render, providerCalls }: ConsoleContext): void {
  scope.get('/', { schema: { hide: true } }, async (request, reply) => {
    const context = await sessions.signedIn(request, reply);
    if (!context) return reply;
    const stats = await admin.dashboard(14, providerCalls);
    return render(
      reply,
      'dashboard',
      { title: 'Dashboard', section: 'dashboard', stats, ...dashboardFigures(stats) },
      context,
    );
  });
}

function usersPage(scope: FastifyInstance, { sessions, admin, render }: ConsoleContext): void {
  scope.get<{ Querystring: Form }>('/users', { schema: { hide: true } }, async (request, reply) => {
    const context = await sessions.signedIn(request, reply);
    if (!context) return reply;
    // One value each (a repeated key arrives as an array: its first is taken).
    const query = Object.fromEntries(
      Object.entries(request.query).map(([key, value]) => [key, Array.isArray(value) ? String(value[0]) : value]),
    ) as Form;
    const dateError = [query.from, query.to].some((value) => value && !isDay(value))
      ? 'A date is not a real day (YYYY-MM-DD): it was left out of the search.'
      : undefined;
    const page = await admin.search(
      context.actor,
      {
        q: query.q?.slice(0, 320),
        provider: query.provider || undefined,
        createdFrom: isDay(query.from) ? query.from : undefined,
        createdTo: isDay(query.to) ? query.to : undefined,
        cursor: query.cursor,
        limit: 50,
      },
      clientOf(request),
    );
    // The next page keeps the search's terms (not a notice of the page before).
    const terms = Object.fromEntries(
      Object.entries(query).filter(([key, value]) => key !== 'cursor' && key !== 'done' && value),
    ) as Record<string, string>;
    const next = page.next && `/admin/users?${new URLSearchParams({ ...terms, cursor: page.next })}`;
    const notice = query.done === 'deleted' ? NOTICES.deleted : undefined;
    return render(
      reply,
      'users',
      { title: 'Users', section: 'users', query, users: page.users, next, dateError, notice },
      context,
    );
  });
}

function userPage(scope: FastifyInstance, { sessions, admin, render }: ConsoleContext): void {
  scope.get<{ Params: { id: string }; Querystring: { before?: string; reads?: string; done?: string } }>(
    '/users/:id',
    { schema: { hide: true } },
    async (request, reply) => {
      const context = await sessions.signedIn(request, reply);
      if (!context) return reply;
      const id = userIdOf(request.params.id);
      const view = await admin.user(context.actor, id, clientOf(request));
      const before = /^\d{1,15}$/.test(request.query.before ?? '') ? Number(request.query.before) : undefined;
      const withReads = request.query.reads === '1';
      const audit = await admin.audit(id, { before, limit: 50, withReads });
      const olderAudit =
        audit.length === 50 ? `/admin/users/${id}?before=${audit.at(-1)!.id}${withReads ? '&reads=1' : ''}` : undefined;
      return render(
        reply,
        'user',
        {
          title: `User ${id}`,
          section: 'users',
          view,
          audit,
          olderAudit,
          withReads,
          mayChange: mayChange(context.actor),
          mayOverride: mayOverride(context.actor),
          notice: NOTICES[request.query.done ?? ''],
        },
        context,
      );
    },
  );
}

function linkPage(scope: FastifyInstance, { sessions, admin, render }: ConsoleContext): void {
  scope.get<{ Params: { provider: string; uid: string } }>(
    '/links/:provider/:uid',
    { schema: { hide: true } },
    async (request, reply) => {
      const context = await sessions.signedIn(request, reply);
      if (!context) return reply;
      const link = await admin.link(request.params.provider, request.params.uid);
      const { user } = await admin.user(context.actor, link.userId, clientOf(request));
      return render(
        reply,
        'link',
        {
          title: `Link ${link.provider}`,
          section: 'users',
          link,
          user,
          mayChange: mayChange(context.actor),
          mayOverride: mayOverride(context.actor),
        },
        context,
      );
    },
  );
}
