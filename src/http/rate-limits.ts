import { isIPv6 } from 'node:net';
import rateLimit from '@fastify/rate-limit';
import { Address6 } from 'ip-address';
import type { Redis } from 'ioredis';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { rateLimited } from '../lib/errors.js';
import type { Config } from '../config/config.js';
import { redisWithFallback } from './rate-limit-store.js';
import './request.js';

export interface RateLimits {
  /** Route config for the sign-in routes (auth, token, refresh, user creation): per client IP (an IPv6 client by its /64). */
  perIp: { rateLimit: { max: number; timeWindow: number } } | { rateLimit: false };
  /** Checks the signed-in user's budget of linking; throws 429 rate_limited when it is spent. */
  checkUser(request: FastifyRequest): Promise<void>;
  /** Checks the client's budget of password attempts (each costs ~100 ms of scrypt); throws 429 when it is spent. */
  checkPassword(request: FastifyRequest): Promise<void>;
  /** Checks the client's budget of provider callbacks (each a signature to check, forged ones included); throws 429 when it is spent. */
  checkCallback(request: FastifyRequest): Promise<void>;
  /** Where the counters are: shared in Redis, in memory, in memory while Redis is down, or off. */
  state(): 'redis' | 'memory' | 'memory (Redis unreachable)' | 'off';
}

const MINUTE = 60_000;

/**
 * Rate limits on the routes an attacker would hammer: sign-in and user creation per client IP, password
 * attempts per client IP (a lower budget), provider callbacks per client IP, and linking per user. Counters
 * live in memory, or in Redis (REDIS_URL) so that every instance shares them; while Redis is unreachable they
 * fall back to each instance's memory (logged, and shown by /readyz): a limit never silently disappears.
 */
export async function installRateLimits(app: FastifyInstance, config: Config): Promise<RateLimits> {
  if (!config.rateLimit.enabled) {
    return {
      perIp: { rateLimit: false },
      checkUser: async () => {},
      checkPassword: async () => {},
      checkCallback: async () => {},
      state: () => 'off',
    };
  }
  let redis: Redis | undefined;
  let degradedSince: number | undefined;
  if (config.rateLimit.redisUrl) {
    // Loaded only when configured: ioredis costs about 10 MB and 100 ms of start-up.
    const { Redis } = await import('ioredis');
    // commandTimeout: a Redis that stops answering without closing the connection (a network cut) counts as
    // unreachable after 1 s (the request goes on, counted in memory) instead of holding every request.
    redis = new Redis(config.rateLimit.redisUrl, {
      connectTimeout: 2000,
      commandTimeout: 1000,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
    });
    redis.on('error', (error: Error) => app.log.debug({ reason: error.message }, 'rate limits: Redis error'));
    // Start counting from the first request: wait (briefly) for the connection, since without an offline
    // queue a command sent before it is ready fails (and would be counted in memory only).
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
  const store =
    redis &&
    redisWithFallback(redis, config.rateLimit.redisPrefix, {
      degraded(reason) {
        if (degradedSince === undefined)
          app.log.warn(
            { reason },
            'rate limits: Redis is unreachable; counting in this instance’s memory until it answers',
          );
        degradedSince ??= Date.now();
      },
      recovered() {
        if (degradedSince !== undefined) app.log.warn('rate limits: Redis answers again; counting in Redis');
        degradedSince = undefined;
      },
      instances: config.rateLimit.instances,
      failClosed: config.rateLimit.failClosed,
    });
  await app.register(rateLimit, {
    global: false,
    ...(store ? { store } : {}),
    errorResponseBuilder: (_request, context) => rateLimited(Math.max(1, Math.ceil(context.ttl / 1000))),
  });
  const limiter = (name: string, max: number, key: (request: FastifyRequest) => string) => {
    const check = app.createRateLimit({
      max,
      timeWindow: MINUTE,
      keyGenerator: (request) => `${name}:${key(request)}`,
    });
    return async (request: FastifyRequest) => {
      const limit = await check(request);
      if (!limit.isAllowed && limit.isExceeded) throw rateLimited(Math.max(1, Math.ceil(limit.ttlInSeconds ?? 60)));
    };
  };
  return {
    perIp: { rateLimit: { max: config.rateLimit.signInPerIpPerMinute, timeWindow: MINUTE } },
    checkUser: limiter('user', config.rateLimit.linksPerUserPerMinute, (request) => String(request.userId)),
    checkPassword: limiter('password', config.rateLimit.passwordPerIpPerMinute, (request) => clientNetwork(request.ip)),
    // One budget for every callback route: a forger walks from one to the next.
    checkCallback: limiter('callback', config.rateLimit.callbacksPerIpPerMinute, (request) =>
      clientNetwork(request.ip),
    ),
    // Redis counts as reachable only while its connection is ready: a restart shows here at once, not at the next request's failover.
    state: () =>
      !redis
        ? 'memory'
        : degradedSince === undefined && redis.status === 'ready'
          ? 'redis'
          : 'memory (Redis unreachable)',
  };
}

/**
 * The client's address as the per-IP limits key it: an IPv6 one by its /64 (one subscriber's network), an
 * IPv4 one as itself, also when a dual-stack listener sees it as ::ffff:a.b.c.d (else every IPv4 client
 * would share the one /64 of the mapped range).
 */
export function clientNetwork(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const address = new Address6(ip);
  if (address.is4()) return address.to4().correctForm();
  return `${new Address6(`${ip}/64`).startAddress().correctForm()}/64`;
}
