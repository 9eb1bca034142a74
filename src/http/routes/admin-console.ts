import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import cookie from '@fastify/cookie';
import { Eta } from 'eta';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import { totpUri } from '../../auth/totp.js';
import { mayChange, mayOverride, userIdOf, type Admin } from '../../core/admin.js';
import { ApiError, apiError } from '../../core/errors.js';
import { StaffSignInRefused, type StaffAccounts, type StaffContext } from '../../core/staff.js';
import type { StaffStage } from '../../store/staff.js';
import type { Services } from '../../core/services.js';
import type { RateLimits } from '../rate-limits.js';
import { carriesNul, clientOf } from '../request.js';

/**
 * The staff console (/admin/): server-rendered pages (eta templates in src/admin/views), no script at all, so
 * the Content-Security-Policy allows none. Staff sign in with a password and a TOTP code; the session cookie
 * is HttpOnly, SameSite=Strict and Secure (but on plain-HTTP loopback, in development); every form that
 * changes something carries the session's CSRF token. Pages and actions stand on core/admin.ts, as the admin
 * API does.
 */
const ADMIN_DIR = fileURLToPath(new URL('../../../src/admin/', import.meta.url));
const CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SIGN_IN_REFUSED = 'Wrong username, password or code, or this account is locked for a while.';

interface ConsoleOptions {
  services: Services;
  admin: Admin;
  staff: StaffAccounts;
  limits: RateLimits;
  providerCalls: () => Promise<Array<{ provider: string; calls: number; failures: number }>>;
}

type Form = Record<string, string | undefined>;

export async function adminConsoleRoutes(app: FastifyInstance, options: ConsoleOptions): Promise<void> {
  const { services, admin, staff, limits } = options;
  const eta = new Eta({ views: `${ADMIN_DIR}views`, cache: true, autoEscape: true });
  const css = readFileSync(`${ADMIN_DIR}static/console.css`);
  // Secure cookies, but on plain HTTP to a loopback address (development): the browser would drop them there.
  const url = new URL(services.config.publicUrl);
  const secure = !(url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname));
  const SESSION = secure ? '__Host-sl_admin' : 'sl_admin';
  const LOGIN = secure ? '__Host-sl_admin_login' : 'sl_admin_login';
  const cookieOptions = { path: '/', httpOnly: true, secure, sameSite: 'strict' as const };

  await app.register(async (scope) => {
    await scope.register(cookie);
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16_384 }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    });
    scope.addHook('onSend', async (_request, reply, payload) => {
      reply.header('content-security-policy', CSP).header('cache-control', 'no-store').header('x-frame-options', 'DENY');
      return payload;
    });

    const render = (reply: FastifyReply, view: string, data: Record<string, unknown>, context?: StaffContext, status = 200) =>
      reply
        .code(status)
        .type('text/html; charset=utf-8')
        .send(eta.render(`./${view}`, { staff: context?.staff, csrf: context?.session.csrfToken, providers: services.providers.names, ...data }));

    // Errors of the console's pages are pages; the admin service's refusals keep their code and status.
    scope.setErrorHandler((error, request, reply) => {
      // The framework's own refusals (a body too large, malformed) keep their 4xx status.
      const status = (error as { statusCode?: number }).statusCode;
      const known =
        error instanceof ApiError ? error : status && status >= 400 && status < 500 ? apiError('bad_request', { about: (error as Error).message, status }) : undefined;
      if (!known) request.log.error({ err: error }, 'unhandled error');
      const shown = known ?? apiError('internal_error');
      // Back to the user the action was about, else the dashboard: never a place the request named.
      const back = /^\/admin\/users\/\d+/.exec(request.url)?.[0] ?? '/admin/';
      return render(reply, 'error', { title: 'Refused', heading: shown.statusCode === 403 ? 'Not allowed' : 'Could not do that', message: shown.message, code: shown.code, back }, request.staff, shown.statusCode);
    });
    scope.addHook('preHandler', async (request) => {
      if (carriesNul(request)) throw apiError('invalid_request', { about: 'no value may hold a NUL character' });
    });
    // The console's forms post urlencoded, nothing else.
    scope.addHook('preValidation', async (request) => {
      if (request.method === 'POST' && !String(request.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
        throw apiError('unsupported_media_type', { about: 'the console takes forms (application/x-www-form-urlencoded)' });
      }
    });

    /** The signed-in staff member of this request, or a redirect to the sign-in page (said why when it ended). */
    const signedIn = async (request: FastifyRequest, reply: FastifyReply): Promise<StaffContext | undefined> => {
      const token = request.cookies[SESSION];
      const context = await staff.session(token, ['signed_in']);
      if (!context) {
        void reply.redirect(token ? '/admin/login?ended=1' : '/admin/login', 303);
        return undefined;
      }
      request.staff = context;
      return context;
    };
    /** The CSRF token of the form must be the session's: a page of another site cannot know it. */
    const checkCsrf = (form: Form, expected: string) => {
      const given = Buffer.from(typeof form._csrf === 'string' ? form._csrf : '');
      const wanted = Buffer.from(expected);
      if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) throw apiError('forbidden', { about: 'the form is stale or came from another site (CSRF token); reload the page and try again' });
    };
    const setSession = (reply: FastifyReply, token: string) => reply.setCookie(SESSION, token, cookieOptions);
    /** The sign-in form's CSRF token: in a cookie of its own and in the form (no session exists yet). */
    const setLoginCsrf = (reply: FastifyReply) => {
      const token = randomBytes(24).toString('base64url');
      reply.setCookie(LOGIN, token, { ...cookieOptions, maxAge: 900 });
      return token;
    };
    const preSession = (request: FastifyRequest, stages: StaffStage[]) => staff.session(request.cookies[SESSION], stages);

    scope.get('/admin/static/console.css', { schema: { hide: true } }, async (_request, reply) => reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(css));

    scope.get<{ Querystring: { ended?: string } }>('/admin/login', { schema: { hide: true } }, async (request, reply) => {
      return render(reply, 'login', { title: 'Sign in', loginCsrf: setLoginCsrf(reply), notice: request.query.ended ? 'Your session has ended: sign in again.' : undefined });
    });

    scope.post<{ Body: Form }>('/admin/login', { schema: { hide: true } }, async (request, reply) => {
      const form = request.body ?? {};
      checkCsrf(form, request.cookies[LOGIN] ?? randomBytes(24).toString('base64url'));
      await limits.checkPassword(request);
      const again = (error: string, status: number) => {
        const loginCsrf = request.cookies[LOGIN]!;
        return render(reply, 'login', { title: 'Sign in', loginCsrf, error }, undefined, status);
      };
      try {
        const { token, stage } = await staff.signIn(form.username ?? '', form.password ?? '', clientOf(request));
        setSession(reply, token);
        return reply.redirect(stage === 'enrol' ? '/admin/enrol' : '/admin/totp', 303);
      } catch (error) {
        if (error instanceof StaffSignInRefused) return again(SIGN_IN_REFUSED, 401);
        throw error;
      }
    });

    scope.get('/admin/totp', { schema: { hide: true } }, async (request, reply) => {
      const context = await preSession(request, ['password']);
      if (!context) return reply.redirect('/admin/login', 303);
      return render(reply, 'totp', { title: 'Authentication code', csrf: context.session.csrfToken });
    });

    scope.get('/admin/enrol', { schema: { hide: true } }, async (request, reply) => {
      const context = await preSession(request, ['enrol']);
      if (!context) return reply.redirect('/admin/login', 303);
      const secret = await staff.newEnrolmentSecret(context);
      const qrSvg = await QRCode.toString(totpUri(secret, context.staff.username, 'social-link'), { type: 'svg', margin: 2, errorCorrectionLevel: 'M' });
      return render(reply, 'enrol', { title: 'Set up your authenticator', csrf: context.session.csrfToken, secret, qrSvg });
    });

    for (const [path, stage] of [['/admin/totp', 'password'], ['/admin/enrol', 'enrol']] as const) {
      scope.post<{ Body: Form }>(path, { schema: { hide: true } }, async (request, reply) => {
        const context = await preSession(request, [stage]);
        if (!context) return reply.redirect('/admin/login', 303);
        const form = request.body ?? {};
        checkCsrf(form, context.session.csrfToken);
        try {
          const { token } = await staff.confirmCode(context.token, form.code ?? '', clientOf(request));
          setSession(reply, token);
          return reply.redirect('/admin/', 303);
        } catch (error) {
          if (!(error instanceof StaffSignInRefused)) throw error;
          // The step's session ends with a refusal: the password is asked again.
          await staff.signOut(context.token);
          return render(reply, 'login', { title: 'Sign in', loginCsrf: request.cookies[LOGIN] ?? setLoginCsrf(reply), error: SIGN_IN_REFUSED }, undefined, 401);
        }
      });
    }

    scope.post<{ Body: Form }>('/admin/logout', { schema: { hide: true } }, async (request, reply) => {
      const context = await signedIn(request, reply);
      if (!context) return reply;
      checkCsrf(request.body ?? {}, context.session.csrfToken);
      await staff.signOut(context.token);
      reply.clearCookie(SESSION, cookieOptions);
      return reply.redirect('/admin/login', 303);
    });

    scope.get('/admin', { schema: { hide: true } }, async (request, reply) => {
      const context = await signedIn(request, reply);
      if (!context) return reply;
      const stats = await admin.dashboard(14, options.providerCalls);
      const signInDays = [...new Set(stats.signIns.map((row) => row.day))].sort().reverse();
      const signInProviders = [...new Set(stats.signIns.map((row) => row.key))].sort();
      const refusals = Object.entries(stats.refusals.reduce<Record<string, number>>((sum, row) => ({ ...sum, [row.key]: (sum[row.key] ?? 0) + row.count }), {}))
        .map(([reason, count]) => ({ reason, count }))
        .sort((a, b) => b.count - a.count);
      const signInCount = (day: string, provider: string) => stats.signIns.find((row) => row.day === day && row.key === provider)?.count ?? 0;
      return render(reply, 'dashboard', { title: 'Dashboard', stats, signInDays, signInProviders, signInCount, refusals }, context);
    });

    scope.get<{ Querystring: Form }>('/admin/users', { schema: { hide: true } }, async (request, reply) => {
      const context = await signedIn(request, reply);
      if (!context) return reply;
      // One value each (a repeated key arrives as an array: its first is taken).
      const query = Object.fromEntries(Object.entries(request.query).map(([key, value]) => [key, Array.isArray(value) ? String(value[0]) : value])) as Form;
      const date = (value: string | undefined) => (value && /^\d{4}-\d\d-\d\d$/.test(value) && !Number.isNaN(Date.parse(value)) && new Date(value).toISOString().startsWith(value) ? value : undefined);
      const page = await admin.search(context.actor, { q: query.q?.slice(0, 320), provider: query.provider || undefined, createdFrom: date(query.from), createdTo: date(query.to), cursor: query.cursor, limit: 50 }, clientOf(request));
      const next = page.next && `/admin/users?${new URLSearchParams({ ...Object.fromEntries(Object.entries(query).filter(([key, value]) => key !== 'cursor' && value)), cursor: page.next } as Record<string, string>)}`;
      return render(reply, 'users', { title: 'Users', query, users: page.users, next }, context);
    });

    scope.get<{ Params: { id: string }; Querystring: { before?: string } }>('/admin/users/:id', { schema: { hide: true } }, async (request, reply) => {
      const context = await signedIn(request, reply);
      if (!context) return reply;
      const id = userIdOf(request.params.id);
      const view = await admin.user(context.actor, id, clientOf(request));
      const before = /^\d{1,15}$/.test(request.query.before ?? '') ? Number(request.query.before) : undefined;
      const audit = await admin.audit(id, { before, limit: 50 });
      const olderAudit = audit.length === 50 ? `/admin/users/${id}?before=${audit.at(-1)!.id}` : undefined;
      return render(reply, 'user', { title: `User ${id}`, view, audit, olderAudit, mayChange: mayChange(context.actor), mayOverride: mayOverride(context.actor), notice: noticeOf(request) }, context);
    });

    scope.get<{ Params: { provider: string; uid: string } }>('/admin/links/:provider/:uid', { schema: { hide: true } }, async (request, reply) => {
      const context = await signedIn(request, reply);
      if (!context) return reply;
      const link = await admin.link(request.params.provider, request.params.uid);
      const { user } = await admin.user(context.actor, link.userId, clientOf(request));
      return render(reply, 'link', { title: `Link ${link.provider}`, link, user, mayChange: mayChange(context.actor), mayOverride: mayOverride(context.actor) }, context);
    });

    /** An action of the user page: signed in, its CSRF token checked, then done through core/admin.ts. */
    const action = (path: string, run: (context: StaffContext, id: number, form: Form, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
      scope.post<{ Params: { id: string }; Body: Form }>(path, { schema: { hide: true } }, async (request, reply) => {
        const context = await signedIn(request, reply);
        if (!context) return reply;
        const form = request.body ?? {};
        checkCsrf(form, context.session.csrfToken);
        return run(context, userIdOf(request.params.id), form, request, reply);
      });

    action('/admin/users/:id/unlink', async (context, id, form, request, reply) => {
      await admin.unlink(context.actor, id, form.provider ?? '', form.uid ?? '', clientOf(request), form.reason, form.force === '1');
      return reply.redirect(`/admin/users/${id}?done=unlinked`, 303);
    });
    action('/admin/users/:id/revoke-sessions', async (context, id, form, request, reply) => {
      const count = await admin.revokeSessions(context.actor, id, clientOf(request), form.reason);
      return reply.redirect(`/admin/users/${id}?done=revoked&count=${count}`, 303);
    });
    action('/admin/users/:id/delete', async (context, id, form, request, reply) => {
      if (form.confirm !== 'yes') throw apiError('invalid_request', { about: 'tick the box to confirm the deletion' });
      await admin.deleteUser(context.actor, id, clientOf(request), form.reason);
      return render(reply, 'error', { title: 'Deleted', heading: `User ${id} deleted`, message: 'The user, its links and sessions are gone; the audit log keeps what happened.', code: 'user_deleted', back: '/admin/users' }, context);
    });
    action('/admin/users/:id/export', async (context, id, form, request, reply) => {
      const data = await admin.exportUser(context.actor, id, clientOf(request), form.reason);
      return reply.type('application/json; charset=utf-8').header('content-disposition', `attachment; filename="user-${id}.json"`).send(JSON.stringify(data, null, 2));
    });
  });
}


const NOTICES: Record<string, string> = { unlinked: 'Unlinked; the reason is in the audit history below.', revoked: 'Every session of this user has ended.' };
const noticeOf = (request: FastifyRequest) => NOTICES[(request.query as { done?: string }).done ?? ''];

declare module 'fastify' {
  interface FastifyRequest {
    /** The console's signed-in staff member (routes/admin-console.ts). */
    staff?: StaffContext;
  }
}
