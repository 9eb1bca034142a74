import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import helmet from 'helmet';
import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import type { Kysely } from 'kysely';
import { loadSigningKeys, type SigningKeys } from '../auth/keys.js';
import { TokenService } from '../core/tokens.js';
import type { Config } from '../config/config.js';
import { Accounts } from '../core/accounts.js';
import type { PipelineStep } from '../core/pipeline-step.js';
import { createServices } from '../core/services.js';
import { WebhookDispatcher } from '../core/webhooks.js';
import { SocialAccounts } from '../core/social.js';
import type { Database } from '../store/database.js';
import { frameworkErrorOptions, installErrorHandling } from '../http/errors.js';
import { stopInStages } from '../http/lifecycle.js';
import { installHooks } from '../http/hooks.js';
import { sharedSerializers } from '../http/serializers.js';
import { Metrics } from '../http/metrics.js';
import { installRateLimits } from '../http/rate-limits.js';
import { accountRoutes } from '../http/routes/accounts.js';
import { operationsRoutes } from '../http/routes/operations.js';
import { socialRoutes } from '../http/routes/social.js';
import { compatRoutes } from '../http/routes/compat.js';
import { callbackRoutes } from '../http/routes/callbacks.js';
import type { OperatorErrors } from '../lib/errors.js';
import { installApiDocs } from '../http/openapi.js';

export interface AppOptions {
  config: Config;
  /** An open database; by default one is opened from config.databaseUrl (and closed with the app). */
  db?: Kysely<Database>;
  /** Close `db` too when the app closes (its opener hands it over). */
  closeDatabase?: boolean;
  signingKeys?: SigningKeys;
  /** Where dev mode keeps the signing and encryption keys it generates when none are configured. */
  devSecretsDir?: string;
  pipeline?: readonly PipelineStep[];
  /** The codes the pipeline's own steps answer (configuration file `errors`), for the API document. */
  operatorErrors?: OperatorErrors;
  logger?: FastifyServerOptions['logger'];
}

/**
 * What every log line leaves out: credentials in headers, and the values of a URL's query, where a client
 * may have put a token (`/api/me/?access_token=…`): the path and the parameter names are kept.
 */
export const logSafety = {
  redact: {
    paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'],
    censor: '[redacted]',
  },
  serializers: {
    req: (request: FastifyRequest) => ({
      method: request.method,
      url: redactQuery(request.url),
      host: request.host,
      remoteAddress: request.ip,
      remotePort: request.socket?.remotePort,
    }),
  },
};

/** "/p?a=1&b=2" → "/p?a=[redacted]&b=[redacted]"; a "name" that is no short identifier (`?<token>`) goes too. */
export function redactQuery(url: string): string {
  const mark = url.indexOf('?');
  if (mark < 0) return url;
  const names = url
    .slice(mark + 1)
    .split('&')
    .filter(Boolean)
    .map((pair) => pair.split('=')[0]!)
    .map((name) => `${/^[\w.-]{1,40}$/.test(name) ? name : '[redacted]'}=[redacted]`);
  return `${url.slice(0, mark)}?${names.join('&')}`;
}

/** Builds the social-link API (not listening). Migrations are the caller's business: see server.ts. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const securityHeaders = helmetHeaders({
    // The interactive docs need their inline scripts and styles; the API answers JSON only.
    contentSecurityPolicy: {
      directives: { 'script-src': ["'self'", "'unsafe-inline'"], 'style-src': ["'self'", "'unsafe-inline'"] },
    },
  });
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel, ...logSafety },
    schemaController: { compilersFactory: { buildSerializer: sharedSerializers() } },
    // uids are up to 255 characters, percent-encoded in the unlink path.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
    // A client that announces a body and never sends it must not hold a connection forever.
    requestTimeout: 30_000,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Closing, a request that still reaches us (a connection accepted just before) is served: the database
    // stays open until the last handler is done (stopInStages). Fastify's default is a 503 of its own shape.
    return503OnClosing: false,
    // Node would answer a request without Host with a bare 400; let it reach our JSON errors instead.
    http: { requireHostHeader: false },
    ...frameworkErrorOptions(securityHeaders),
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

  const dev = options.devSecretsDir;
  const metrics = new Metrics();
  const services = createServices({
    ...options,
    log: app.log,
    observeProviderCall: metrics.observeProviderCall,
    observeBlockingHook: metrics.observeBlockingHook,
  });
  const signingKeys =
    options.signingKeys ??
    (await loadSigningKeys({
      signingKeys: config.signingKeys,
      signingKeysFile: config.signingKeysFile,
      devKeyFile: dev && join(dev, 'dev-signing-keys.json'),
    }));
  const tokens = new TokenService(signingKeys, {
    issuer: config.tokenIssuer,
    accessTtlSeconds: config.accessTokenTtlSeconds,
    refreshTtlSeconds: config.refreshTokenTtlSeconds,
  });

  // Fetch the providers' keys once listening, in the background: the first sign-in finds them cached,
  // and answering (health checks, a rolling deploy) does not wait for them.
  let warmUp: NodeJS.Immediate | undefined;
  app.addHook('onListen', async () => {
    warmUp = setImmediate(() => services.providers.warmUp());
  });
  const lifecycle = stopInStages(app);
  app.decorate('lifecycle', lifecycle);
  // Webhooks leave from every instance, once it listens (the CLI and the embedding host's app send none).
  const webhooks = new WebhookDispatcher(services.storage, config.webhooks, app.log, {
    retryBaseMs: config.webhookRetryBaseMs,
    observe: metrics.observeWebhookDelivery,
  });
  metrics.watchOutbox(services.storage, app.log);
  app.addHook('onListen', async () => webhooks.start());
  app.addHook('onClose', async () => {
    clearImmediate(warmUp);
    // A handler whose client hung up is still running (the server's close did not wait for it): it
    // finishes, and its transaction commits, before the database closes under it.
    await lifecycle.handlersDone(10_000);
    await webhooks.stop();
    await services.close();
  });

  installErrorHandling(app, services.storage.health);
  installHooks(app, services, metrics);
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(securityHeaders);
    done();
  });
  if (config.corsOrigins.length > 0) {
    await app.register(cors, { origin: config.corsOrigins, methods: ['GET', 'POST', 'DELETE'], maxAge: 600 });
  }
  await installApiDocs(app, {
    publicUrl: config.publicUrl,
    operatorErrors: options.operatorErrors ?? {},
    admin: config.admin.enabled,
  });

  const limits = await installRateLimits(app, config);
  const routes = {
    services,
    tokens,
    signingKeys,
    limits,
    accounts: new Accounts(services, tokens),
    // A sign-in starts a session of our tokens; an unknown account gets a user of ours when SOCIAL_AUTH_CREATE_USER allows it.
    social: new SocialAccounts(services, {
      startSession: (trx, user, audit, client, claims) => tokens.startSession(trx, user.id, audit, client, claims),
      newUser: config.createUser ? 'ours' : 'none',
    }),
  };
  accountRoutes(app, routes);
  socialRoutes(app, routes);
  if (config.compatPrefix) compatRoutes(app, routes, config.compatPrefix);
  callbackRoutes(app, routes);
  // The admin API and the staff console: absent (404) unless SOCIAL_LINK_ADMIN=true — their modules (the console's
  // templates, TOTP, QR codes) not even loaded then: a shorter start-up.
  if (config.admin.enabled) {
    const [{ Admin }, { StaffAccounts }, { adminPlugin }] = await Promise.all([
      import('../core/admin.js'),
      import('../core/staff.js'),
      import('../admin/plugin.js'),
    ]);
    const admin = new Admin(services, routes.accounts);
    await app.register(adminPlugin, {
      services,
      admin,
      staff: new StaffAccounts(services),
      limits,
      providerCalls: () => metrics.providerCallCounts(),
    });
  }
  operationsRoutes(app, {
    storage: services.storage,
    lifecycle,
    metrics,
    metricsToken: config.metricsToken,
    metricsOnOwnPort: config.metricsPort !== undefined,
    limits,
  });
  app.decorate('metrics', metrics);
  return app;
}

/**
 * helmet's headers, computed once: they depend on its options only, and helmet's middleware builds them anew
 * for every answer (a few percent of a sign-in's CPU).
 */
function helmetHeaders(options: Parameters<typeof helmet>[0]): Record<string, string> {
  const headers: Record<string, string> = {};
  const response = {
    setHeader: (name: string, value: unknown) => void (headers[name] = String(value)),
    removeHeader: () => {},
  };
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, () => {});
  return headers;
}

/** Trust the nearest `hops` proxies (a load balancer, an ingress) for the client address. */
const trustHops = (hops: number) => (_address: string, hop: number) => hop < hops;
