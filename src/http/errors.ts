import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import {
  ApiError,
  apiError,
  databaseUnavailable,
  invalidRequest,
  ProviderUnavailableError,
  type ErrorCode,
} from '../lib/errors.js';
import { DATABASE_RETRY_AFTER_SECONDS, isDatabaseUnavailable, type DatabaseHealth } from '../store/database-health.js';

/** The framework's own client errors, as codes of our catalogue. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_BAD_URL: 'invalid_request',
};

const body = (error: ApiError, request: FastifyRequest) => ({ ...error.toJSON(), request_id: request.id });

/** What helmet adds to every routed answer, for the answers written on the raw socket (JSON: no content may load). */
const RAW_ANSWER_SECURITY_HEADERS = {
  'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'SAMEORIGIN',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Referrer-Policy': 'no-referrer',
};

/**
 * Fastify options that answer router errors and malformed HTTP in our error format too. `securityHeaders` are
 * those every routed answer carries (helmet's, app.ts).
 */
export const frameworkErrorOptions = (
  securityHeaders: Record<string, string>,
): Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'> => ({
  // Router errors (a bad percent-encoding in the path, an over-long parameter): Fastify answers them before any
  // hook runs (neither helmet's headers nor the request id's, app.ts and hooks.ts), so they are set here.
  frameworkErrors: (error, request, reply) => {
    void (reply as FastifyReply)
      .headers(securityHeaders)
      .header('x-request-id', request.id)
      .code(400)
      .send(body(invalidRequest(error.message), request as FastifyRequest));
  },
  // Malformed HTTP never reaches a route (nor helmet, nor the request-id hook): answer it on the raw socket,
  // with the same security headers and a request id of its own (logged at debug).
  clientErrorHandler(this: FastifyInstance, error, socket) {
    const code = (error as { code?: string }).code;
    if (code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const requestId = randomUUID();
    const about = status === 408 ? 'The request was not received in time' : 'Malformed HTTP request';
    const text = JSON.stringify({ ...apiError('invalid_request', { about, status }).toJSON(), request_id: requestId });
    this.log.debug(
      { request_id: requestId, reason: code ?? error.message },
      `answered ${status} to a malformed request`,
    );
    const head = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(text)}`,
      `X-Request-Id: ${requestId}`,
      ...Object.entries(RAW_ANSWER_SECURITY_HEADERS).map(([name, value]) => `${name}: ${value}`),
      'Connection: close',
    ];
    socket.end(`${head.join('\r\n')}\r\n\r\n${text}`);
  },
});

/**
 * Every answer that is not a success is JSON {code, message, errors}; nothing internal leaks out. A database
 * that is away is no bug: 503 database_unavailable with Retry-After, logged once per outage by `databaseHealth`.
 */
export function installErrorHandling(app: FastifyInstance, databaseHealth: DatabaseHealth): void {
  // An empty body is an empty object: `POST /api/users/` with no body makes a guest user.
  // JSON only: a form or text body is refused with 415 rather than half-understood.
  app.removeContentTypeParser('text/plain');
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, text, done) => {
    if (text === '') return done(null, {});
    // The callback form (it answers through `done`): no promise to wait for.
    void parseJson(request, text as string, done);
  });
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.body === undefined && (request.method === 'POST' || request.method === 'PUT')) request.body = {};
    done();
  });

  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .send(body(apiError('not_found', { about: `${request.method} ${request.url.split('?')[0]}` }), request));
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    error = (databaseAway(error, databaseHealth) ?? error) as FastifyError;
    if (
      error instanceof ApiError &&
      Number.isInteger(error.statusCode) &&
      error.statusCode >= 400 &&
      error.statusCode <= 599
    ) {
      if (typeof error.extra.retry_after === 'number') reply.header('retry-after', String(error.extra.retry_after));
      logOperatorProblem(error, request);
      return reply.code(error.statusCode).send(body(error, request));
    }
    if (error.validation) {
      const first = error.validation[0];
      const field = first?.instancePath
        ? first.instancePath.slice(1).replace(/\//g, '.')
        : (first?.params as { missingProperty?: string })?.missingProperty;
      const message = field
        ? `${field}: ${first?.message ?? 'is invalid'}`
        : `${error.validationContext ?? 'request'} ${first?.message ?? 'is invalid'}`;
      return reply.code(400).send(body(invalidRequest(message), request));
    }
    const status = error.statusCode ?? 500;
    if (status < 500)
      return reply
        .code(status)
        .send(body(apiError(FRAMEWORK_CODES[error.code] ?? 'bad_request', { about: error.message, status }), request));
    request.log.error({ err: error }, 'unhandled error');
    return reply.code(500).send(body(apiError('internal_error'), request));
  });
}

/** A database that is away is no bug: the 503 to answer instead (the outage logged once by `health`), else undefined. */
export function databaseAway(error: unknown, health: DatabaseHealth): ApiError | undefined {
  if (error instanceof ApiError || !isDatabaseUnavailable(error)) return undefined;
  health.fault(error, true);
  return databaseUnavailable(DATABASE_RETRY_AFTER_SECONDS);
}

/** A 5xx is the operator's to read: which provider, why, and what to fix when it is a setting of ours (a database or Redis outage is logged once where it is seen). */
function logOperatorProblem(error: ApiError, request: FastifyRequest): void {
  if (error instanceof ProviderUnavailableError) {
    const { provider, failure, hint } = error;
    request.log.warn(
      { code: error.code, provider, failure, detail: error.extra.detail, hint },
      hint ? `${provider}: ${hint}` : error.message,
    );
  } else if (
    error.statusCode >= 500 &&
    error.code !== 'database_unavailable' &&
    error.code !== 'rate_limit_unavailable'
  ) {
    request.log.warn({ code: error.code, detail: error.extra.detail }, error.message);
  }
}
