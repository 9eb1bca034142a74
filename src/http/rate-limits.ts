import rateLimit from '@fastify/rate-limit';
import type { Redis } from 'ioredis';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { rateLimited } from '../core/errors.js';
import type { Config } from '../config/config.js';
import './request.js';

export interface RateLimits {
  /** Route config for the sign-in routes (auth, token, refresh, user creation): per client IP. */
  perIp: { rateLimit: { max: number; timeWindow: number } } | { rateLimit: false };
  /** Checks the signed-in user's budget of linking; throws 429 rate_limited when it is spent. */
  checkUser(request: FastifyRequest): Promise<void>;
}

const MINUTE = 60_000;

/**
 * Rate limits on the routes an attacker would hammer: sign-in and user creation per client IP, and
 * linking per user. Counters live in memory, or in Redis (REDIS_URL) so that every instance shares them.
 * If Redis fails, requests pass (availability over strictness) and the failure is logged.
 */
export async function installRateLimits(app: FastifyInstance, config: Config): Promise<RateLimits> {
  if (!config.rateLimit.enabled) {
    return { perIp: { rateLimit: false }, checkUser: async () => {} };
  }
  let redis: Redis | undefined;
  if (config.rateLimit.redisUrl) {
    // Loaded only when configured: ioredis costs about 10 MB and 100 ms of start-up.
    const { Redis } = await import('ioredis');
    redis = new Redis(config.rateLimit.redisUrl, { connectTimeout: 2000, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    redis.on('error', (error: Error) => app.log.warn({ reason: error.message }, 'rate limits: Redis error'));
    // Start counting from the first request: wait (briefly) for the connection, since without an offline
    // queue a command sent before it is ready fails and that request would not be counted.
    const connected = redis;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        connected.off('ready', done).off('error', done);
        resolve();
      };
      const timer = setTimeout(done, 2000);
      connected.once('ready', done).once('error', done);
    });
    app.addHook('onClose', async () => {
      redis?.disconnect();
    });
  }
  await app.register(rateLimit, {
    global: false,
    redis,
    nameSpace: config.rateLimit.redisPrefix,
    skipOnError: true,
    errorResponseBuilder: (_request, context) =>
      rateLimited(Math.max(1, Math.ceil(context.ttl / 1000))),
  });
  const perUser = app.createRateLimit({
    max: config.rateLimit.linksPerUserPerMinute,
    timeWindow: MINUTE,
    keyGenerator: (request) => `user:${request.userId}`,
  });
  return {
    perIp: { rateLimit: { max: config.rateLimit.signInPerIpPerMinute, timeWindow: MINUTE } },
    async checkUser(request) {
      const limit = await perUser(request);
      if (!limit.isAllowed && limit.isExceeded) {
        const retryAfter = Math.max(1, Math.ceil(limit.ttlInSeconds ?? 60));
        throw rateLimited(retryAfter);
      }
    },
  };
}
