import cluster from 'node:cluster';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { apiError } from '../lib/errors.js';
import { bearerMatches } from '../http/routes/operations.js';
import type { FastifyInstance } from 'fastify';
import { devSecretsDirFor, type Config } from '../config/config.js';
import type { OperatorErrors } from '../lib/errors.js';
import type { PipelineStep } from '../core/pipeline-step.js';
import { buildApp, type AppOptions } from './app.js';
import { gatherWorkersMetrics } from '../http/metrics.js';
import { openDatabase, migrateToLatest } from '../store/database.js';
import { Storage } from '../store/storage.js';
import { caseCollisionReport } from '../store/username-key.js';

/**
 * Opens the database, applies pending migrations, builds the app and listens. `clusterWorker`: a `serve --workers`
 * worker, whose /metrics answers the figures of every worker (serveWithWorkers).
 */
export async function startServer(
  options: AppOptions & { onClose?: () => Promise<void>; clusterWorker?: boolean },
): Promise<FastifyInstance> {
  const { config, onClose } = options;
  // Migrations on a connection of their own, without the query timeout (an index on a big table takes long).
  if (options.db) await migrateToLatest(options.db);
  else {
    const migrator = openDatabase(config.databaseUrl);
    await migrateToLatest(migrator).finally(() => migrator.destroy());
  }
  const db =
    options.db ??
    openDatabase(config.databaseUrl, {
      queryTimeoutMs: config.databaseQueryTimeoutMs,
      checkpointThread: true,
    });
  // The app closes the database it was given when we opened it: after the last handler and the webhook
  // dispatcher are done with it (buildApp's onClose).
  const app = await buildApp({ ...options, db, closeDatabase: !options.db });
  const collisions = caseCollisionReport(await new Storage(db).users.caseCollisions());
  if (collisions) app.log.warn(collisions);
  if (onClose) app.addHook('onClose', onClose);
  // Before listening: the primary may collect this worker's figures as soon as it takes requests.
  if (options.clusterWorker) app.metrics.shareWithPrimary();
  if (config.metricsPort !== undefined) await startMetricsServer(app, config);
  const adminServer = config.admin.enabled && config.admin.port !== undefined ? adminListener(app) : undefined;
  closeOnSignals(app, config.shutdownGraceMs);
  await app.listen({ host: config.host, port: config.port });
  if (adminServer) {
    // A port taken: the server does not start half-way (the app closes, and the error says why).
    await adminServer.listen(config.admin.port!, config.admin.host).catch(async (error: unknown) => {
      await app.close();
      throw error;
    });
  }
  return app;
}

/**
 * METRICS_PORT: /metrics on a port of its own (on METRICS_HOST, default 127.0.0.1), for a scraper inside the
 * network, never beside the public API. METRICS_TOKEN still applies when set.
 */
async function startMetricsServer(app: FastifyInstance, config: Config): Promise<void> {
  const { metrics } = app;
  const server = createServer((request, response) => {
    const authorized = !config.metricsToken || bearerMatches(request.headers.authorization, config.metricsToken);
    if (request.method !== 'GET' || new URL(request.url ?? '/', 'http://metrics').pathname !== '/metrics')
      return void response.writeHead(404).end();
    if (!authorized) return void response.writeHead(401).end();
    metrics.exposition().then(
      (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      () => response.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) =>
    server.once('error', reject).listen(config.metricsPort, config.metricsHost, resolve),
  );
  app.addHook('onClose', () => new Promise<void>((resolve) => server.close(() => resolve())));
  app.log.info(`metrics on http://${config.metricsHost}:${config.metricsPort}/metrics`);
}

/** /admin, /admin/… and /admin?…: the console's and the admin API's paths. */
const isAdminPath = (url: string) => /^\/admin(?:[/?#]|$)/.test(url);

/**
 * SOCIAL_LINK_ADMIN_PORT: the console and the admin API on a listener of their own (on SOCIAL_LINK_ADMIN_HOST,
 * default 127.0.0.1), as METRICS_PORT does for /metrics: for staff and backends inside the network, never
 * beside the public API. The same app answers both listeners; which one a request came through decides what
 * it may reach: /admin/ only there (404 on the public port, as when the console is off), nothing else there.
 * Call before the app is ready (it adds a hook); listen once the app listens.
 */
function adminListener(app: FastifyInstance) {
  const sockets = new WeakSet<Socket>();
  // The app's own timeouts, and its answer to a malformed request (JSON, with the security headers).
  const server = createServer({ requestTimeout: 30_000, requireHostHeader: false }, (request, response) =>
    app.routing(request, response),
  );
  for (const listener of app.server.listeners('clientError'))
    server.on('clientError', listener as (error: Error, socket: Duplex) => void);
  server.on('connection', (socket: Socket) => sockets.add(socket));
  app.addHook('onRequest', async (request, reply) => {
    // The path as sent, or the route it matched (the router decodes %61dmin); an unknown /admin/ path is the console's too.
    const admin = isAdminPath(request.url) || isAdminPath(request.routeOptions.url ?? '');
    if (admin === sockets.has(request.raw.socket)) return;
    return reply.code(404).send({
      ...apiError('not_found', { about: `${request.method} ${request.url.split('?')[0]}` }).toJSON(),
      request_id: request.id,
    });
  });
  app.addHook(
    'onClose',
    () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
  );
  return {
    async listen(port: number, host: string): Promise<void> {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
      app.log.info(`admin console and API on http://${host.includes(':') ? `[${host}]` : host}:${port}/admin/`);
    },
  };
}

/**
 * SIGTERM (a deploy, an orchestrator): drain for `graceMs` — answer as usual while /readyz says 503, so that
 * balancers take this instance out — then close: stop accepting, let requests under way finish, wait for the
 * handlers still running (10 s at most), close the database, exit 0. SIGINT (Ctrl+C in a terminal, no balancer)
 * and a second signal (a second or more later) skip the grace; one more while closing exits at once. Call before
 * the app listens.
 */
export function closeOnSignals(app: FastifyInstance, graceMs: number): void {
  let endGrace: (() => void) | undefined;
  let firstSignalAt: number | undefined;
  const stop = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      // One signal delivered twice (to the process group, and forwarded by a --workers primary): no hurry.
      if (Date.now() - firstSignalAt < 1_000) return;
      // Asked again: skip the drain; asked again while closing (a request that never ends): exit now.
      if (endGrace) return endGrace();
      app.log.warn(`${signal} received again while closing: exiting without waiting`);
      process.exit(1);
    }
    firstSignalAt = Date.now();
    const grace = signal === 'SIGTERM' ? graceMs : 0;
    app.lifecycle.drain();
    app.log.info(
      grace > 0
        ? `${signal} received: draining for ${grace} ms (/readyz answers 503), then closing`
        : `${signal} received: closing`,
    );
    const timer = setTimeout(() => endGrace?.(), grace);
    endGrace = () => {
      endGrace = undefined;
      clearTimeout(timer);
      // A keep-alive connection whose request just finished would hold close() open until the client
      // drops it (a load balancer may wait a minute): close connections as soon as they fall idle.
      setInterval(() => app.server.closeIdleConnections(), 100).unref();
      app.close().then(
        () => process.exit(0),
        (error: unknown) => {
          app.log.error({ err: error }, 'closing failed');
          process.exit(1);
        },
      );
    };
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  app.addHook('onClose', async () => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  });
}

/**
 * `serve --workers N`: the primary applies the migrations once, then forks N workers that share the
 * listening port (node:cluster). A worker that dies is replaced; SIGTERM is passed on to every worker,
 * each draining and finishing its in-flight requests. /metrics (on whichever worker a scrape reaches, on the API's
 * port or METRICS_PORT) answers the whole group's figures: the worker asks the primary, which collects every
 * worker's over IPC and adds them up (metrics.ts gatherWorkersMetrics); the primary serves no port of its own.
 */
export async function serveWithWorkers(
  config: Config,
  workers: number,
  file: { pipeline?: readonly PipelineStep[]; errors?: OperatorErrors } = {},
): Promise<void> {
  if (cluster.isWorker) {
    await startServer({
      config,
      pipeline: file.pipeline,
      operatorErrors: file.errors,
      devSecretsDir: devSecretsDirFor(config),
      clusterWorker: true,
    });
    return;
  }
  gatherWorkersMetrics();
  const db = openDatabase(config.databaseUrl);
  await migrateToLatest(db);
  await db.destroy();
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    console.error(`worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
    cluster.fork();
  });
  // Each worker drains and closes as a single server does; a second signal reaches them too (no grace).
  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
