import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Kysely } from 'kysely';
import type { Config } from '../config/config.js';
import { openDatabase, type Database } from '../store/database.js';
import { ApiError, apiError, invalidRequest, ProviderUnavailableError, type ErrorCode } from '../core/errors.js';
import { devSecret, loadSigningKeys, type SigningKeys } from '../auth/keys.js';
import { SecretBox } from '../auth/secret-box.js';
import { join } from 'node:path';
import { TokenService } from '../auth/tokens.js';
import { defaultPipeline, type PipelineStep } from '../core/pipeline.js';
import type { Provider } from '../providers/types.js';
import { Storage, type Association } from '../store/storage.js';
import type { Services } from '../core/services.js';
import { accountRoutes } from './routes/accounts.js';
import { socialRoutes } from './routes/social.js';
import { association, errorResponse, tokenResponse } from './schemas.js';
import { operationsRoutes } from './routes/operations.js';
import { Metrics } from './metrics.js';
import { installRateLimits } from './rate-limits.js';
import { CircuitBreaker, withCircuitBreaker } from '../providers/circuit-breaker.js';
import { revokeKeptTokens } from '../providers/revocation.js';
import { clientOf } from './request.js';
import { randomUUID } from 'node:crypto';
import helmet from '@fastify/helmet';
import cors from '@fastify/cors';

export interface AppOptions {
  config: Config;
  /** An open database; by default one is opened from config.databaseUrl (and closed with the app). */
  db?: Kysely<Database>;
  signingKeys?: SigningKeys;
  /** Where dev mode keeps the signing and encryption keys it generates when none are configured. */
  devSecretsDir?: string;
  pipeline?: readonly PipelineStep[];
  logger?: FastifyServerOptions['logger'];
}

/** Paths whose query or headers carry secrets are redacted from every log line. */
export const logRedaction = {
  paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'],
  censor: '[redacted]',
};

/** Builds the social-link API (not listening). Migrations are the caller's business: see cli.ts. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel, redact: logRedaction },
    // uids are up to 255 characters, percent-encoded in the unlink path.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
    // A client that announces a body and never sends it must not hold a connection forever.
    requestTimeout: 30_000,
    // Node would answer a request without Host with a bare 400; let it reach our JSON errors instead.
    http: { requireHostHeader: false },
    // Router errors (a bad percent-encoding in the path) get our JSON error too.
    frameworkErrors: (error, request, reply) => {
      const answer = invalidRequest(error.message);
      void (reply as FastifyReply).code(400).send({ ...answer.toJSON(), request_id: request.id });
    },
    // Malformed HTTP never reaches a route: answer it in our error format on the raw socket.
    clientErrorHandler: (error, socket) => {
      const status = (error as { code?: string }).code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify(apiError('invalid_request', { about: 'Malformed HTTP request', status }).toJSON());
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
            `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      } else {
        socket.destroy(error);
      }
    },
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    // A caller's X-Request-Id is kept when it is a plain token (it reaches the logs), else a new one is made.
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,64}$/.test(given) ? given : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    // Tokens are long, but never this long: anything bigger is an attack or a bug.
    bodyLimit: 64 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  const db = options.db ?? openDatabase(config.databaseUrl);
  const dev = options.devSecretsDir;
  const signingKeys =
    options.signingKeys ??
    (await loadSigningKeys({
      signingKeys: config.signingKeys,
      signingKeysFile: config.signingKeysFile,
      devKeyFile: dev && join(dev, 'dev-signing-keys.json'),
    }));
  const secrets = SecretBox.fromSetting(config.encryptionKeys ?? devSecret(dev && join(dev, 'dev-encryption-key'), SecretBox.generateKey));
  const metrics = new Metrics();
  const providers = new Map<string, Provider>();
  const closers: Array<() => Promise<void>> = [];
  for (const enabled of config.providers) {
    const { provider, http } = enabled.create({ timeoutMs: config.providerTimeoutMs, observe: metrics.observeProviderCall });
    providers.set(enabled.name, withCircuitBreaker(provider, new CircuitBreaker(config.circuitBreaker)));
    closers.push(() => http.close());
  }
  // Fetch the providers' keys once listening, in the background: the first sign-in finds them cached,
  // and answering (health checks, a rolling deploy) does not wait for them.
  let warmUp: NodeJS.Immediate | undefined;
  app.addHook('onListen', async () => {
    warmUp = setImmediate(() => {
      for (const provider of providers.values()) provider.warmUp?.();
    });
  });
  app.addHook('onClose', async () => {
    clearImmediate(warmUp);
    await Promise.all(closers.map((close) => close()));
    if (!options.db) await db.destroy();
  });

  const storage = new Storage(db);
  const tokens = new TokenService(signingKeys, {
    issuer: config.tokenIssuer,
    accessTtlSeconds: config.accessTokenTtlSeconds,
    refreshTtlSeconds: config.refreshTokenTtlSeconds,
  });

  installErrorHandling(app);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // Refused takeover attempts go to the audit log (the successes are recorded where they happen).
  app.addHook('onError', async (request, _reply, error) => {
    if (!(error instanceof ApiError) || !AUDITED_REFUSALS.has(error.code)) return;
    const provider = (request.params as { provider?: string } | undefined)?.provider;
    await storage
      .recordAudit(
        { event: 'refused', userId: request.userId ?? null, provider: provider && providers.has(provider) ? provider : null, detail: `${error.code}: ${String(error.extra.detail ?? error.message)}` },
        clientOf(request),
      )
      .catch((failure: unknown) => request.log.warn({ reason: (failure as Error).message }, 'audit: could not record a refusal'));
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000);
  });
  await app.register(helmet, {
    // The interactive docs need their inline scripts and styles; the API answers JSON only.
    contentSecurityPolicy: { directives: { 'script-src': ["'self'", "'unsafe-inline'"], 'style-src': ["'self'", "'unsafe-inline'"] } },
  });
  if (config.corsOrigins.length > 0) {
    await app.register(cors, { origin: config.corsOrigins, methods: ['GET', 'POST', 'DELETE'], maxAge: 600 });
  }
  for (const schema of [errorResponse, tokenResponse, association]) app.addSchema(schema);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'social-link',
        version: '0.1.0',
        description: "Link social accounts to your app's users, and find them again from a social account.",
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}` },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const limits = await installRateLimits(app, config);
  const revokeProviderTokens = (link: Association | undefined) => revokeKeptTokens(link, providers, secrets, app.log);
  const services: Services = {
    config,
    storage,
    tokens,
    signingKeys,
    secrets,
    providers,
    limits,
    revokeProviderTokens,
    pipeline: options.pipeline ?? defaultPipeline,
  };
  accountRoutes(app, services);
  socialRoutes(app, services);
  operationsRoutes(app, { storage, metrics, metricsToken: config.metricsToken });
  return app;
}

/** Every answer that is not a success is JSON {code, message, errors}; nothing internal leaks out. */
export function installErrorHandling(app: FastifyInstance): void {
  // An empty body is an empty object: `POST /api/users/` with no body makes a guest user.
  // JSON only: a form or text body is refused with 415 rather than half-understood.
  app.removeContentTypeParser('text/plain');
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, {});
    parseJson(request, body as string, done);
  });
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && (request.method === 'POST' || request.method === 'PUT')) request.body = {};
  });

  const body = (error: ApiError, request: FastifyRequest) => ({ ...error.toJSON(), request_id: request.id });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(body(apiError('not_found', { about: `${request.method} ${request.url.split('?')[0]}` }), request));
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof ApiError) {
      if (typeof error.extra.retry_after === 'number') reply.header('retry-after', String(error.extra.retry_after));
      if (error instanceof ProviderUnavailableError) {
        // The operator's line: which provider, why, and what to fix when it is a setting of ours.
        const { provider, failure, hint } = error;
        request.log.warn({ code: error.code, provider, failure, detail: error.extra.detail, hint }, hint ? `${provider}: ${hint}` : error.message);
      } else if (error.statusCode >= 500) {
        request.log.warn({ code: error.code, detail: error.extra.detail }, error.message);
      }
      return reply.code(error.statusCode).send(body(error, request));
    }
    if (error.validation) {
      const first = error.validation[0];
      const field = first?.instancePath ? first.instancePath.slice(1).replace(/\//g, '.') : (first?.params as { missingProperty?: string })?.missingProperty;
      const message = field ? `${field}: ${first?.message ?? 'is invalid'}` : `${error.validationContext ?? 'request'} ${first?.message ?? 'is invalid'}`;
      return reply.code(400).send(body(invalidRequest(message), request));
    }
    const status = error.statusCode ?? 500;
    if (status < 500) {
      const code = clientErrorCodes[error.code] ?? 'bad_request';
      return reply.code(status).send(body(apiError(code, { about: error.message, status }), request));
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.code(500).send(body(apiError('internal_error'), request));
  });
}

const AUDITED_REFUSALS = new Set<string>(['invalid_token', 'already_associated'] satisfies ErrorCode[]);

const clientErrorCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_BAD_URL: 'invalid_request',
};

/** Trust the nearest `hops` proxies (a load balancer, an ingress) for the client address. */
const trustHops = (hops: number) => (_address: string, hop: number) => hop < hops;
