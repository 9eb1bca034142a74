import LocalStore from '@fastify/rate-limit/store/LocalStore.js';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Redis } from 'ioredis';

type Store = FastifyRateLimitStore;
type Callback = Parameters<Store['incr']>[1];
/** What @fastify/rate-limit really passes to child(): the route's merged limit settings (its types say otherwise). */
type ChildOptions = { continueExceeding?: boolean; exponentialBackoff?: boolean; routeInfo?: { method?: string; url?: string } };

export interface Fallback {
  /** Redis failed: the counts go to memory from now until it answers again. */
  degraded(reason: string): void;
  recovered(): void;
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

    constructor(keyPrefix: string, options: { continueExceeding?: boolean; exponentialBackoff?: boolean } = {}) {
      this.shared = new RedisStore(options.continueExceeding ?? false, options.exponentialBackoff ?? false, redis, keyPrefix) as Store;
      this.local = new LocalStore(options.continueExceeding ?? false, options.exponentialBackoff ?? false) as Store;
    }

    incr(key: string, callback: Callback, timeWindow: number, max: number): void {
      this.shared.incr(key, (error, result) => {
        if (!error) {
          fallback.recovered();
          return callback(null, result);
        }
        fallback.degraded(error.message);
        this.local.incr(key, callback, timeWindow, max);
      }, timeWindow, max);
    }

    child(routeOptions: Parameters<Store['child']>[0]): Store {
      const options = routeOptions as unknown as ChildOptions;
      const { method, url } = options.routeInfo ?? {};
      return new ResilientStore(`${prefix}${method && url ? `${method}${url}` : 'limit'}-`, options);
    }
  }
  // @fastify/rate-limit constructs its store with `new Store(globalParams)`.
  return class extends ResilientStore {
    constructor(globalParams: object) {
      super(prefix, globalParams);
    }
  } as unknown as FastifyRateLimitStoreCtor;
}
