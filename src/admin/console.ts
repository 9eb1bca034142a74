import cookie from '@fastify/cookie';
import type { FastifyInstance } from 'fastify';
import { carriesNul } from '../http/request.js';
import { apiError } from '../lib/errors.js';
import { actionRoutes } from './actions.js';
import type { AdminOptions } from './context.js';
import { errorPage, notFoundPage } from './error-page.js';
import { pageRoutes } from './pages.js';
import { Sessions } from './session.js';
import { signInRoutes } from './sign-in.js';
import { consoleCss, pageRenderer } from './views.js';

/**
 * The staff console (/admin/): server-rendered pages (eta templates in src/admin/views), no script at all, so
 * the Content-Security-Policy allows none. Staff sign in with a password and a TOTP code (sign-in.ts); the session
 * cookie is HttpOnly, SameSite=Strict and Secure (but when the public URL is plain HTTP on loopback: development);
 * every form that changes something carries a CSRF token (session.ts). Pages and actions stand on core/admin.ts,
 * as the admin API does. Registered with the prefix /admin (plugin.ts).
 */
const CSP =
  "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export async function staffConsole(scope: FastifyInstance, options: AdminOptions): Promise<void> {
  const { services } = options;
  const render = pageRenderer(services.providers.names);
  const css = consoleCss();
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
  const showError = errorPage(render, services.storage.health);
  scope.setErrorHandler(showError);
  scope.setNotFoundHandler(notFoundPage(showError));
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

  scope.get('/static/console.css', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(css),
  );
  const context = { ...options, sessions: new Sessions(services.config.publicUrl, options.staff), render };
  signInRoutes(scope, context);
  pageRoutes(scope, context);
  actionRoutes(scope, context);
}
