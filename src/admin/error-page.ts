import type { FastifyReply, FastifyRequest } from 'fastify';
import { databaseAway } from '../http/errors.js';
import { ApiError, apiError } from '../lib/errors.js';
import type { DatabaseHealth } from '../store/database-health.js';
import type { Render } from './views.js';

/** What a console page says instead of the API's words, where those speak to the app's user. */
const CONSOLE_MESSAGES: Partial<Record<string, string>> = {
  last_login_method:
    'This is the user\'s only way to sign in. Only an admin can remove it, by ticking "remove it even though the user then has no way to sign in".',
};

type ErrorPage = (error: unknown, request: FastifyRequest, reply: FastifyReply) => FastifyReply;

/** An error as a page: the admin service's refusals keep their code and status, the framework's 4xx too. */
export function errorPage(render: Render, health: DatabaseHealth): ErrorPage {
  return (error, request, reply) => {
    const status = (error as { statusCode?: number }).statusCode;
    const known =
      error instanceof ApiError
        ? error
        : (databaseAway(error, health) ??
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
}

/** An unknown path under /admin/: the admin API's answer as the API does (JSON), the console's as a page. */
export function notFoundPage(showError: ErrorPage) {
  return (request: FastifyRequest, reply: FastifyReply) => {
    const notFound = apiError('not_found', { about: `${request.method} ${request.url.split('?')[0]}` });
    if (request.url.startsWith('/admin/api/'))
      return reply.code(404).send({ ...notFound.toJSON(), request_id: request.id });
    return showError(notFound, request, reply);
  };
}
