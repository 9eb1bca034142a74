import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Actor } from '../core/admin.js';
import { clientNetwork } from '../http/rate-limits.js';
import { apiError, rateLimited } from '../lib/errors.js';
import type { Storage } from '../store/storage.js';

type Limit = (request: FastifyRequest, who: string) => Promise<void>;

/**
 * Who calls the admin API: the service key of a request (Authorization: Bearer slk_…), or 401 invalid_service_key;
 * 429 past its budget.
 */
export function serviceKeys(
  app: FastifyInstance,
  storage: Storage,
  perMinute: number | undefined,
): (request: FastifyRequest) => Promise<Actor> {
  const limit = adminApiLimit(app, perMinute);
  return async (request) => {
    const header = request.headers.authorization;
    const key = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    const found = key ? await storage.serviceKeys.use(key) : undefined;
    await limit(request, found ? `key:${found.id}` : `ip:${clientNetwork(request.ip)}`);
    if (!found) throw apiError('invalid_service_key');
    return { kind: 'key', id: found.id, name: found.name, scopes: found.scopes };
  };
}

/**
 * The admin API's budget (RATE_LIMIT_ADMIN_API_PER_MINUTE) on the project's rate-limit plugin (http/rate-limits.ts:
 * the same store, Redis when configured): per service key, so that a leaked key cannot copy the directory at full
 * speed; per client network for requests without a valid key (guessing keys).
 */
function adminApiLimit(app: FastifyInstance, perMinute: number | undefined): Limit {
  // The plugin is registered only when rate limits are on (RATE_LIMIT_ENABLED).
  if (perMinute === undefined || !app.hasDecorator('createRateLimit')) return async () => {};
  const keys = new WeakMap<FastifyRequest, string>();
  const check = app.createRateLimit({
    max: perMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => `admin-api:${keys.get(request)}`,
  });
  return async (request, who) => {
    keys.set(request, who);
    const limit = await check(request);
    if (!limit.isAllowed && limit.isExceeded) throw rateLimited(Math.max(1, Math.ceil(limit.ttlInSeconds ?? 60)));
  };
}
