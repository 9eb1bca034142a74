import type { FastifyRequest } from 'fastify';
import type { Actor, Admin } from '../core/admin.js';
import type { Services } from '../core/services.js';
import type { StaffAccounts } from '../core/staff.js';
import type { RateLimits } from '../http/rate-limits.js';
import type { Sessions } from './session.js';
import type { Render } from './views.js';

/** What the admin plugin is given (server/app.ts): the use cases, the rate limits, the provider calls counted. */
export interface AdminOptions {
  services: Services;
  admin: Admin;
  staff: StaffAccounts;
  limits: RateLimits;
  providerCalls: () => Promise<Array<{ provider: string; calls: number; failures: number }>>;
}

/** What the console's routes stand on: the plugin's options, the session cookies and the page renderer. */
export interface ConsoleContext extends AdminOptions {
  sessions: Sessions;
  render: Render;
}

/** What the admin API's routes stand on: the use cases, and who calls (a service key, or 401). */
export interface ApiContext {
  admin: Admin;
  serviceKeyOf: (request: FastifyRequest) => Promise<Actor>;
}
