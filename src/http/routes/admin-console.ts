import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import cookie from '@fastify/cookie';
import { Eta } from 'eta';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import { factRows } from '../../admin/facts.js';
import { totpUri } from '../../auth/totp.js';
import { isDay, mayChange, mayOverride, userIdOf, type Admin } from '../../core/admin.js';
import { ApiError, apiError } from '../../lib/errors.js';
import { StaffSignInRefused, type StaffAccounts, type StaffContext } from '../../core/staff.js';
import type { StaffStage } from '../../store/staff.js';
import type { Services } from '../../core/services.js';
import type { RateLimits } from '../rate-limits.js';
import { carriesNul, clientOf } from '../request.js';
import { databaseAway } from '../errors.js';

/**
 * The staff console (/admin/): server-rendered pages (eta templates in src/admin/views), no script at all, so
 * the Content-Security-Policy allows none. Staff sign in with a password and a TOTP code; the session cookie
 * is HttpOnly, SameSite=Strict and Secure (but when the public URL is plain HTTP on loopback: development);
 * every form that changes something carries a CSRF token. Pages and actions stand on core/admin.ts, as the
 * admin API does.
 */
const ADMIN_DIR = fileURLToPath(new URL('../../../src/admin/', import.meta.url));
const CSP =
  "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SIGN_IN_REFUSED = 'Wrong username, password or code, or this account is locked for a while.';
const CODE_REFUSED: Record<string, string> = {
  code: 'Wrong code: type the 6 digits your authenticator app shows now.',
  replayed: 'This code was already used: wait for the next one (a new code comes every 30 seconds).',
};
const NOTICES: Record<string, string> = {
  unlinked:
    "Unlinked; the reason is in the audit history below. The user's devices stay signed in: end a lost phone's session below.",
  revoked: 'Every session of this user has ended.',
  'session-revoked': 'That session has ended; the others go on.',
  deleted: 'The user, its links and sessions are deleted; the audit log keeps what happened.',
  disabled: 'The user is disabled: its sessions have ended and it cannot sign in until enabled.',
  enabled: 'The user is enabled: it may sign in again.',
};
/** What a console page says instead of the API's words, where those speak to the app's user. */
const CONSOLE_MESSAGES: Partial<Record<string, string>> = {
  last_login_method:
    'This is the user\'s only way to sign in. Only an admin can remove it, by ticking "remove it even though the user then has no way to sign in".',
};

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
  // Secure cookies, but where the public URL is plain HTTP on a loopback address (development): browsers would
  // drop them there. Production refuses the console without an https public URL (config.ts).
  const url = new URL(services.config.publicUrl);
  const secure = !(url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname));
  const SESSION = secure ? '__Host-sl_admin' : 'sl_admin';
  const LOGIN = secure ? '__Host-sl_admin_login' : 'sl_admin_login';
  // The authenticator secret being enrolled, sealed to its session (core/staff.ts): the session's, not the account's.
  const ENROL = secure ? '__Host-sl_admin_enrol' : 'sl_admin_enrol';
  const cookieOptions = { path: '/', httpOnly: true, secure, sameSite: 'strict' as const };

  await app.register(
    async (scope) => {
      await scope.register(cookie);
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 16_384 },
        (_request, body, done) => {
          done(null, Object.fromEntries(new URLSearchParams(String(body))));
        },
      );
      scope.addHook('onSend', async (request, reply, payload) => {
        reply.header('content-security-policy', CSP).header('x-frame-options', 'DENY');
        if (!request.url.startsWith('/admin/static/')) reply.header('cache-control', 'no-store');
        return payload;
      });

      const render = (
        reply: FastifyReply,
        view: string,
        data: Record<string, unknown>,
        context?: StaffContext,
        status = 200,
      ) =>
        reply
          .code(status)
          .type('text/html; charset=utf-8')
          .send(
            eta.render(`./${view}`, {
              staff: context?.staff,
              csrf: context?.session.csrfToken,
              providers: services.providers.names,
              section: '',
              factRows,
              ...data,
            }),
          );

      /** An error as a page: the admin service's refusals keep their code and status, the framework's 4xx too. */
      const errorPage = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
        const status = (error as { statusCode?: number }).statusCode;
        const known =
          error instanceof ApiError
            ? error
            : (databaseAway(error, services.storage.health) ??
              (status && status >= 400 && status < 500
                ? apiError('bad_request', { about: (error as Error).message, status })
                : undefined));
        if (typeof known?.extra.retry_after === 'number') reply.header('retry-after', String(known.extra.retry_after));
        if (!known) request.log.error({ err: error }, 'unhandled error');
        const shown = known ?? apiError('internal_error');
        const heading =
          { 403: 'Not allowed', 404: 'Not found', 429: 'Too many attempts' }[shown.statusCode] ?? 'Could not do that';
        // Back to the user an action was about, else the search: never a place the request named.
        const back =
          request.method === 'POST' ? (/^\/admin\/users\/\d+/.exec(request.url)?.[0] ?? '/admin/') : '/admin/users';
        const message = CONSOLE_MESSAGES[shown.code] ?? shown.message;
        return render(
          reply,
          'error',
          { title: heading, heading, message, code: shown.code, back },
          request.staff,
          shown.statusCode,
        );
      };
      scope.setErrorHandler(errorPage);
      scope.setNotFoundHandler((request, reply) => {
        // The admin API's unknown paths answer as the API does (JSON); the console's as a page.
        if (request.url.startsWith('/admin/api/'))
          return reply.code(404).send({
            ...apiError('not_found', { about: `${request.method} ${request.url.split('?')[0]}` }).toJSON(),
            request_id: request.id,
          });
        return errorPage(
          apiError('not_found', { about: `${request.method} ${request.url.split('?')[0]}` }),
          request,
          reply,
        );
      });
      scope.addHook('preHandler', async (request) => {
        if (carriesNul(request)) throw apiError('invalid_request', { about: 'no value may hold a NUL character' });
      });
      // The console's forms post urlencoded, nothing else.
      scope.addHook('preValidation', async (request) => {
        if (
          request.method === 'POST' &&
          !String(request.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')
        ) {
          throw apiError('unsupported_media_type', {
            about: 'the console takes forms (application/x-www-form-urlencoded)',
          });
        }
      });

      /** The signed-in staff member of this request, or a redirect to the sign-in page (said why when it ended). */
      const signedIn = async (request: FastifyRequest, reply: FastifyReply): Promise<StaffContext | undefined> => {
        const token = request.cookies[SESSION];
        const context = await staff.session(token, ['signed_in']);
        if (!context) {
          // A page asked for comes back after the sign-in (an action's form does not: it is posted again by hand).
          const params = new URLSearchParams({
            ...(token ? { ended: '1' } : {}),
            ...(request.method === 'GET' && returnPath(request.url) ? { next: request.url } : {}),
          });
          void reply.redirect(`/admin/login${params.size ? `?${params}` : ''}`, 303);
          return undefined;
        }
        request.staff = context;
        return context;
      };
      /** Does the form carry this CSRF token? (A page of another site cannot know it.) */
      const csrfMatches = (form: Form, expected: string | undefined) => {
        const given = Buffer.from(typeof form._csrf === 'string' ? form._csrf : '');
        const wanted = Buffer.from(expected ?? '');
        return wanted.length > 0 && given.length === wanted.length && timingSafeEqual(given, wanted);
      };
      const checkCsrf = (form: Form, expected: string) => {
        if (!csrfMatches(form, expected))
          throw apiError('forbidden', {
            about: 'the form is stale or came from another site (CSRF token); reload the page and try again',
          });
      };
      const setSession = (reply: FastifyReply, token: string) => reply.setCookie(SESSION, token, cookieOptions);
      /** The sign-in form's CSRF token: in a cookie of its own and in the form (no session exists yet). */
      const setLoginCsrf = (reply: FastifyReply) => {
        const token = randomBytes(24).toString('base64url');
        reply.setCookie(LOGIN, token, { ...cookieOptions, maxAge: 900 });
        return token;
      };
      const loginPage = (
        reply: FastifyReply,
        status: number,
        texts: { error?: string; notice?: string; next?: string },
      ) => render(reply, 'login', { title: 'Sign in', loginCsrf: setLoginCsrf(reply), ...texts }, undefined, status);
      const preSession = (request: FastifyRequest, stages: StaffStage[]) =>
        staff.session(request.cookies[SESSION], stages);

      scope.get('/static/console.css', { schema: { hide: true } }, async (_request, reply) =>
        reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(css),
      );

      const ENDED: Record<string, string> = {
        '1': 'Your session has ended: sign in again.',
        step: 'Signing in took longer than 5 minutes: start again.',
      };
      scope.get<{ Querystring: { ended?: string; next?: string } }>(
        '/login',
        { schema: { hide: true } },
        async (request, reply) =>
          loginPage(reply, 200, { notice: ENDED[String(request.query.ended)], next: returnPath(request.query.next) }),
      );

      scope.post<{ Body: Form }>('/login', { schema: { hide: true } }, async (request, reply) => {
        const form = request.body ?? {};
        // A sign-in page left open past its token's 15 minutes, or a form posted from elsewhere: a fresh form.
        const next = returnPath(form.next);
        if (!csrfMatches(form, request.cookies[LOGIN]))
          return loginPage(reply, 403, {
            error: 'This page was open too long, or the form came from elsewhere: sign in again.',
            next,
          });
        await limits.checkPassword(request);
        try {
          const { token, stage } = await staff.signIn(
            String(form.username ?? ''),
            String(form.password ?? ''),
            clientOf(request),
          );
          setSession(reply, token);
          const step = stage === 'enrol' ? '/admin/enrol' : '/admin/totp';
          return reply.redirect(next ? `${step}?${new URLSearchParams({ next })}` : step, 303);
        } catch (error) {
          if (error instanceof StaffSignInRefused) return loginPage(reply, 401, { error: SIGN_IN_REFUSED, next });
          throw error;
        }
      });

      scope.get<{ Querystring: { next?: string } }>('/totp', { schema: { hide: true } }, async (request, reply) => {
        const context = await preSession(request, ['password']);
        if (!context) return reply.redirect('/admin/login?ended=step', 303);
        return render(reply, 'totp', {
          title: 'Authentication code',
          csrf: context.session.csrfToken,
          next: returnPath(request.query.next),
        });
      });

      const enrolPage = async (
        reply: FastifyReply,
        context: StaffContext,
        secret: string,
        error?: string,
        next?: string,
      ) => {
        const qrSvg = await QRCode.toString(totpUri(secret, context.staff.username, 'social-link'), {
          type: 'svg',
          margin: 2,
          errorCorrectionLevel: 'M',
        });
        return render(
          reply,
          'enrol',
          {
            title: 'Set up your authenticator',
            csrf: context.session.csrfToken,
            secret,
            secretGroups: secret.match(/.{1,4}/g)!.join(' '),
            qrSvg,
            error,
            next,
          },
          undefined,
          error ? 401 : 200,
        );
      };
      scope.get<{ Querystring: { next?: string } }>('/enrol', { schema: { hide: true } }, async (request, reply) => {
        const context = await preSession(request, ['enrol']);
        if (!context) return reply.redirect('/admin/login?ended=step', 303);
        const { secret, sealed } = staff.newEnrolment(context);
        reply.setCookie(ENROL, sealed, { ...cookieOptions, maxAge: 300 });
        return enrolPage(reply, context, secret, undefined, returnPath(request.query.next));
      });

      for (const [path, stage] of [
        ['/totp', 'password'],
        ['/enrol', 'enrol'],
      ] as const) {
        scope.post<{ Body: Form }>(path, { schema: { hide: true } }, async (request, reply) => {
          const context = await preSession(request, [stage]);
          if (!context) return reply.redirect('/admin/login?ended=step', 303);
          const form = request.body ?? {};
          checkCsrf(form, context.session.csrfToken);
          const next = returnPath(form.next);
          try {
            const { token } = await staff.confirmCode(
              context.token,
              String(form.code ?? ''),
              clientOf(request),
              stage === 'enrol' ? request.cookies[ENROL] : undefined,
            );
            setSession(reply, token);
            if (stage === 'enrol') reply.clearCookie(ENROL, cookieOptions);
            return reply.redirect(next ?? '/admin/', 303);
          } catch (error) {
            if (!(error instanceof StaffSignInRefused)) throw error;
            const again = CODE_REFUSED[error.reason];
            // A mistyped or used code: the same step again (the failure counts toward the lockout); the same key
            // while enrolling, so that what the authenticator holds stays good.
            if (again && stage === 'password')
              return render(
                reply,
                'totp',
                { title: 'Authentication code', csrf: context.session.csrfToken, error: again, next },
                undefined,
                401,
              );
            const secret = again && staff.enrolmentSecret(context, request.cookies[ENROL]);
            if (secret) return enrolPage(reply, context, secret, again, next);
            // Locked or disabled: this step ends (its pending key with it), and the password is asked again.
            await staff.signOut(context.token);
            reply.clearCookie(ENROL, cookieOptions);
            return loginPage(reply, 401, { error: SIGN_IN_REFUSED });
          }
        });
      }

      scope.post<{ Body: Form }>('/logout', { schema: { hide: true } }, async (request, reply) => {
        const context = await signedIn(request, reply);
        if (!context) return reply;
        checkCsrf(request.body ?? {}, context.session.csrfToken);
        await staff.signOut(context.token);
        reply.clearCookie(SESSION, cookieOptions);
        return reply.redirect('/admin/login', 303);
      });

      scope.get('/', { schema: { hide: true } }, async (request, reply) => {
        const context = await signedIn(request, reply);
        if (!context) return reply;
        const stats = await admin.dashboard(14, options.providerCalls);
        const signInDays = [...new Set(stats.signIns.map((row) => row.day))].sort().reverse();
        const signInProviders = [...new Set(stats.signIns.map((row) => row.key))].sort();
        // By code: a refusal's detail is `code: why` (http/hooks.ts), and the why varies.
        const refusals = Object.entries(
          stats.refusals.reduce<Record<string, number>>((sum, row) => {
            const code = row.key.split(':')[0]!;
            return { ...sum, [code]: (sum[code] ?? 0) + row.count };
          }, {}),
        )
          .map(([reason, count]) => ({ reason, count }))
          .sort((a, b) => b.count - a.count);
        const signInCount = (day: string, provider: string) =>
          stats.signIns.find((row) => row.day === day && row.key === provider)?.count ?? 0;
        return render(
          reply,
          'dashboard',
          { title: 'Dashboard', section: 'dashboard', stats, signInDays, signInProviders, signInCount, refusals },
          context,
        );
      });

      scope.get<{ Querystring: Form }>('/users', { schema: { hide: true } }, async (request, reply) => {
        const context = await signedIn(request, reply);
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
        const next =
          page.next &&
          `/admin/users?${new URLSearchParams({ ...Object.fromEntries(Object.entries(query).filter(([key, value]) => key !== 'cursor' && key !== 'done' && value)), cursor: page.next } as Record<string, string>)}`;
        const notice = query.done === 'deleted' ? NOTICES.deleted : undefined;
        return render(
          reply,
          'users',
          { title: 'Users', section: 'users', query, users: page.users, next, dateError, notice },
          context,
        );
      });

      scope.get<{ Params: { id: string }; Querystring: { before?: string; reads?: string; done?: string } }>(
        '/users/:id',
        { schema: { hide: true } },
        async (request, reply) => {
          const context = await signedIn(request, reply);
          if (!context) return reply;
          const id = userIdOf(request.params.id);
          const view = await admin.user(context.actor, id, clientOf(request));
          const before = /^\d{1,15}$/.test(request.query.before ?? '') ? Number(request.query.before) : undefined;
          const withReads = request.query.reads === '1';
          const audit = await admin.audit(id, { before, limit: 50, withReads });
          const olderAudit =
            audit.length === 50
              ? `/admin/users/${id}?before=${audit.at(-1)!.id}${withReads ? '&reads=1' : ''}`
              : undefined;
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

      scope.get<{ Params: { provider: string; uid: string } }>(
        '/links/:provider/:uid',
        { schema: { hide: true } },
        async (request, reply) => {
          const context = await signedIn(request, reply);
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

      /** An action of the user page: signed in, its CSRF token checked, then done through core/admin.ts. */
      const action = (
        path: string,
        run: (
          context: StaffContext,
          id: number,
          form: Form,
          request: FastifyRequest,
          reply: FastifyReply,
        ) => Promise<unknown>,
      ) =>
        scope.post<{ Params: { id: string }; Body: Form }>(path, { schema: { hide: true } }, async (request, reply) => {
          const context = await signedIn(request, reply);
          if (!context) return reply;
          const form = request.body ?? {};
          checkCsrf(form, context.session.csrfToken);
          return run(context, userIdOf(request.params.id), form, request, reply);
        });

      action('/users/:id/unlink', async (context, id, form, request, reply) => {
        await admin.unlink(
          context.actor,
          id,
          form.provider ?? '',
          form.uid ?? '',
          clientOf(request),
          form.reason,
          form.force === '1',
        );
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
    },
    { prefix: '/admin' },
  );
}

/** A console page to return to after signing in: a path of ours, never another site (`//host`, `/\\host`) nor `..`. */
function returnPath(value: unknown): string | undefined {
  return typeof value === 'string' &&
    value.length <= 500 &&
    !value.includes('/.') &&
    /^\/admin\/(users|links)(\/[\w%.:@-]+)*(\?[\w%.=&+-]*)?$/.test(value)
    ? value
    : undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The console's signed-in staff member (routes/admin-console.ts). */
    staff?: StaffContext;
  }
}
