import { timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import type { FastifyInstance } from 'fastify';
import { apiError } from '../../lib/errors.js';
import type { Metrics } from '../metrics.js';
import type { Storage } from '../../store/storage.js';
import type { RateLimits } from '../rate-limits.js';
import type { Lifecycle } from '../lifecycle.js';
import { isDatabaseUnavailable } from '../../store/database-health.js';

/** Liveness, readiness and Prometheus metrics, for orchestrators and monitoring. */
export function operationsRoutes(
  app: FastifyInstance,
  options: {
    storage: Storage;
    lifecycle: Lifecycle;
    metrics: Metrics;
    metricsToken?: string;
    metricsOnOwnPort: boolean;
    limits: RateLimits;
  },
): void {
  const hidden = { schema: { hide: true } };

  app.get('/healthz', hidden, async () => ({ status: 'ok' }));

  // For balancers and orchestrators: 503 once this instance stops (SIGTERM) or while its database is away.
  app.get('/readyz', hidden, async (request, reply) => {
    if (options.lifecycle.draining) return reply.code(503).send({ status: 'draining' });
    try {
      await sql`select 1`.execute(options.storage.db);
      options.storage.health.answered();
      // Rate limits in memory while Redis is down: still ready (each instance still brakes), and said.
      return { status: 'ok', database: 'ok', rate_limits: options.limits.state() };
    } catch (error) {
      if (isDatabaseUnavailable(error)) options.storage.health.fault(error);
      else request.log.warn({ reason: (error as Error).message }, 'readiness: the database check failed');
      return reply.code(503).send({ status: 'unavailable', database: 'unavailable' });
    }
  });

  if (options.metricsOnOwnPort) return; // served by startMetricsServer (server.ts)
  app.get('/metrics', hidden, async (request, reply) => {
    if (options.metricsToken && !bearerMatches(request.headers.authorization, options.metricsToken)) {
      throw apiError('not_authenticated', { detail: 'the metrics need METRICS_TOKEN as a Bearer token' });
    }
    return reply.type(options.metrics.registry.contentType).send(await options.metrics.exposition());
  });
}

export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header ?? '');
  const expected = Buffer.from(`Bearer ${token}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
