import type { FastifyInstance } from 'fastify';
import { adminApi } from './api.js';
import { staffConsole } from './console.js';
import type { AdminOptions } from './context.js';

export type { AdminOptions } from './context.js';

/**
 * The admin plugin (registered by server/app.ts only when SOCIAL_LINK_ADMIN=true): the admin API (/admin/api/, for
 * the app's backends, with a service key) and the staff console (/admin/, for people, signed in with a password and
 * TOTP), both over core/admin.ts. Each is a scope of its own: the console's cookies, form parser, headers and error
 * pages stay out of the API, which answers JSON as the rest of the API does.
 */
export async function adminPlugin(app: FastifyInstance, options: AdminOptions): Promise<void> {
  // The API first: its paths come before the console's in the route table and the API document.
  await app.register(adminApi, options);
  // The console's not-found page answers every unknown path under /admin/, the API's too (as JSON).
  await app.register(staffConsole, { ...options, prefix: '/admin' });
}
