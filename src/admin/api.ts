import type { FastifyInstance } from 'fastify';
import { carriesNul } from '../http/request.js';
import { apiError } from '../lib/errors.js';
import { apiChangeRoutes } from './api-changes.js';
import { serviceKeys } from './api-key.js';
import { apiReadRoutes } from './api-reads.js';
import type { AdminOptions } from './context.js';

/**
 * The admin API (/admin/api/) for the app's own backends, with a service key (`social-link keys service
 * create`): find users, read their links, sessions and audit log, unlink, end sessions, delete, export. Every
 * call is audited with the key's name. The console (console.ts) stands on the same core/admin.ts.
 */
export async function adminApi(app: FastifyInstance, { admin, services }: AdminOptions): Promise<void> {
  const serviceKeyOf = serviceKeys(app, services.storage, admin.apiRequestsPerMinute);
  app.addHook('preHandler', async (request) => {
    if (carriesNul(request)) throw apiError('invalid_request', { about: 'no value may hold a NUL character' });
  });
  // The reads first, then the changes: the order of the paths in the API document.
  apiReadRoutes(app, { admin, serviceKeyOf });
  apiChangeRoutes(app, { admin, serviceKeyOf });
}
