import LocalStore from '@fastify/rate-limit/store/LocalStore.js';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Redis } from 'ioredis';
import type { RateLimitName } from '../config/config.js';
import { apiError } from '../lib/errors.js';

type Store = FastifyRateLimitStore;
type Callback = Parameters<Store['incr']>[1];
/** What @fastify/rate-limit really passes to child(): the route's merged limit settings (its types say otherwise). */
type ChildOptions = {
  continueExceeding?: boolean;
  exponentialBackoff?: boolean;
  routeInfo?: { method?: string; url?: string };
};

export interface Fallback {
  /** Redis failed: the counts go to memory from now until it answers again. */
  degraded(reason: string): void;
  recovered(): void;
  /** How many instances share the budgets (SOCIAL_LINK_INSTANCES): on its own, each counts a request as that many. */
  instances: number;
  /** The budgets refused outright while Redis is away (RATE_LIMIT_FAIL_CLOSED). */
  failClosed: ReadonlySet<RateLimitName>;
}

/** The budget a counter's key belongs to: a route's own (`…POST/api/token/-<ip>`: sign-in), or a named check's. */
function budgetOf(key: string, routeLimit: boolean): RateLimitName {
  if (routeLimit) return 'sign_in';
  const name = key.slice(0, key.indexOf(':'));
  return (
    ({ password: 'password', user: 'links', callback: 'callbacks', 'admin-api': 'admin_api' } as const)[
      name as 'password'
    ] ?? 'sign_in'
  );
}

/**
 * The rate-limit counters in Redis, shared by every instance; while Redis is unreachable, in this
 * instance's memory instead — a password route never loses its brake because Redis is down. Keys name the
 * route (`<prefix>POST/api/token/-<ip>`), or `limit-<name>:…` for the budgets checked in a handler
 * (`limit-user:42`, `limit-password:2001:db8::/64`).
 */
export function redisWithFallback(redis: Redis, prefix: string, fallback: Fallback): FastifyRateLimitStoreCtor {
  class ResilientStore implements Store {
    private readonly shared: Store;
    private readonly local: Store;

    constructor(
      keyPrefix: string,
      options: { continueExceeding?: boolean; exponentialBackoff?: boolean } = {},
      private readonly routeLimit = false,
    ) {
      this.shared = new RedisStore(
        options.continueExceeding ?? false,
        options.exponentialBackoff ?? false,
        redis,
        keyPrefix,
      ) as Store;
      this.local = new LocalStore(options.continueExceeding ?? false, options.exponentialBackoff ?? false) as Store;
    }

    incr(key: string, callback: Callback, timeWindow: number, max: number): void {
      this.shared.incr(
        key,
        (error, result) => {
          if (!error) {
            fallback.recovered();
            return callback(null, result);
          }
          fallback.degraded(error.message);
          if (fallback.failClosed.has(budgetOf(key, this.routeLimit))) {
            return callback(
              apiError('rate_limit_unavailable', { about: 'Redis is unreachable', extra: { retry_after: 5 } }),
            );
          }
          // N instances each counting on its own: each request counts N times, so that together they let no
          // more through than the budget (rounded down), yet each lets at least one through.
          const times = Math.min(fallback.instances, max);
          const countedAsMany: Callback = (localError, counted) =>
            callback(localError, counted && { ...counted, current: counted.current * times });
          this.local.incr(key, countedAsMany, timeWindow, max);
        },
        timeWindow,
        max,
      );
    }

    child(routeOptions: Parameters<Store['child']>[0]): Store {
      const options = routeOptions as unknown as ChildOptions;
      const { method, url } = options.routeInfo ?? {};
      return new ResilientStore(
        `${prefix}${method && url ? `${method}${url}` : 'limit'}-`,
        options,
        Boolean(method && url),
      );
    }
  }
  // @fastify/rate-limit constructs its store with `new Store(globalParams)`.
  return class extends ResilientStore {
    constructor(globalParams: object) {
      super(prefix, globalParams);
    }
  } as unknown as FastifyRateLimitStoreCtor;
}
