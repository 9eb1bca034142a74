import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AlreadyAssociatedError, ApiError, type ErrorCode } from '../lib/errors.js';
import type { AuditEntry } from '../store/audit.js';
import type { Services } from '../core/services.js';
import { answeredErrorCode, callbackOutcome, type Metrics } from './metrics.js';
import { clientOf } from './request.js';
import { isDatabaseUnavailable } from '../store/database-health.js';

/** Refusals worth a line in the audit log: someone tried an account that is not theirs. */
const AUDITED_REFUSALS = new Set<string>([
  'invalid_token',
  'already_associated',
  'invalid_link_token',
  'invalid_merge_token',
] satisfies ErrorCode[]);

/** What every request gets: its id echoed, refused takeover attempts audited, its duration counted. */
export function installHooks(app: FastifyInstance, services: Services, metrics: Metrics): void {
  // An associate or auth request's error code, as answered, for its result label.
  const socialErrors = new WeakMap<FastifyRequest, string>();
  // The hooks every request runs take a callback, not a promise: no microtask turn of their own.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    if (request.routeOptions.config?.socialRequest && reply.statusCode >= 400)
      socialErrors.set(request, answeredErrorCode(payload) ?? `http_${reply.statusCode}`);
    done(null, payload);
  });
  auditRefusals(app, services);
  // A callback's refusal code, for its outcome (invalid_token and invalid_request are both 400).
  const callbackErrors = new WeakMap<FastifyRequest, string>();
  app.addHook('onError', async (request, _reply, error) => {
    if (request.routeOptions.config?.providerCallback && error instanceof ApiError)
      callbackErrors.set(request, error.code);
  });
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.observe(
      { method: request.method, route, status_code: reply.statusCode },
      reply.elapsedTime / 1000,
    );
    const provider = request.routeOptions.config?.providerCallback;
    if (provider)
      metrics.providerCallbacks.inc({
        provider,
        outcome: callbackOutcome(reply.statusCode, callbackErrors.get(request)),
      });
    const social = request.routeOptions.config?.socialRequest;
    if (social) {
      // Only a provider we serve names a label: made-up names in the path must not grow the metric.
      const named = social.provider((request.params ?? {}) as Record<string, string | undefined>);
      const result = reply.statusCode < 400 ? 'ok' : (socialErrors.get(request) ?? `http_${reply.statusCode}`);
      metrics.socialOutcomes.inc({
        action: social.action,
        provider: named && services.providers.has(named) ? named : 'unknown',
        result,
      });
    }
    done();
  });
}

/** Refused takeover attempts go to the audit log (the server's and the embedded plugin's); successes are recorded in their transaction. */
export function auditRefusals(app: FastifyInstance, { storage, providers }: Services): void {
  app.addHook('onError', async (request, _reply, error) => {
    if (!(error instanceof ApiError) || !AUDITED_REFUSALS.has(error.code)) return;
    // A forged provider callback names nobody's account and costs its sender nothing: counted (metrics.ts), not a row each.
    if (request.routeOptions.config?.providerCallback) return;
    const provider = (request.params as { provider?: string } | undefined)?.provider;
    const client = clientOf(request);
    const entries: AuditEntry[] = [
      {
        event: 'refused',
        userId: request.userId ?? null,
        provider: provider && providers.has(provider) ? provider : null,
        detail: `${error.code}: ${String(error.extra.detail ?? error.message)}`,
      },
    ];
    // The owner of the account learns that someone else tried to link it, from where; a guest that proved it and
    // is offered a merge is the owner on a new phone, most likely: kept in the log, no link.refused alarm.
    if (error instanceof AlreadyAssociatedError) {
      const { userId, provider: owned, uid } = error.owner;
      entries.push(
        error.extra.merge_token
          ? {
              event: 'merge_offered',
              userId,
              provider: owned,
              uid,
              detail: 'a guest proved this account and was offered to merge into this user',
            }
          : {
              event: 'link_refused_other_user',
              userId,
              provider: owned,
              uid,
              detail: 'another user tried to link this account',
            },
      );
    }
    for (const entry of entries) {
      await storage.audit
        .record(entry, client)
        .catch((failure: unknown) =>
          isDatabaseUnavailable(failure)
            ? storage.health.fault(failure)
            : request.log.warn({ reason: (failure as Error).message }, 'audit: could not record a refusal'),
        );
    }
  });
}
