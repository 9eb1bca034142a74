import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EmulatorState, FaultSettings, Provider } from './state.js';

/** An answer as a provider sends it. */
export interface ProviderAnswer {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

/** How a provider answers each fault, in its own words (its documented bodies and headers). */
export interface FaultAnswers {
  /** Its body for an internal error (HTTP 500). */
  serverError: () => unknown;
  /** How it throttles our app (mode rate_limited). */
  rateLimited?: (fault: FaultSettings) => ProviderAnswer;
  /** How it refuses an app whose plan or access level does not allow the call (mode app_access_denied). */
  appAccessDenied?: (fault: FaultSettings) => ProviderAnswer;
}

/**
 * onRequest hook for one provider's routes: counts the request, then applies the provider's
 * current fault so clients can be tested against slow, failing, throttling and broken providers.
 */
export function providerFaultHook(state: EmulatorState, provider: Provider, answers: FaultAnswers) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    state.requestCounts[provider] += 1;
    const fault = state.faults[provider];
    if (fault.count !== undefined && fault.mode !== 'none') {
      // A fault for the next N requests only: this one uses up one of them.
      fault.count -= 1;
      if (fault.count <= 0) state.faults[provider] = { ...fault, mode: 'none', count: undefined };
    }

    // An unref'd timer delays this request only, and never keeps the process alive after close().
    const waitMs = fault.latency_ms + (fault.latency_jitter_ms ?? 0) * (2 * Math.random() - 1);
    if (waitMs > 0) await sleep(waitMs, undefined, { ref: false });

    switch (fault.mode) {
      case 'none':
        return;
      case 'error_500':
        await reply.code(500).send(answers.serverError());
        return;
      case 'rate_limited':
      case 'app_access_denied': {
        const answer = (fault.mode === 'rate_limited' ? answers.rateLimited : answers.appAccessDenied)?.(fault);
        if (!answer) return; // this route has no such answer (the control API refuses such a fault for this provider)
        await reply
          .code(answer.status)
          .headers(answer.headers ?? {})
          .send(answer.body);
        return;
      }
      case 'garbage':
        await reply.code(200).type('text/html').send('<html>oops</html>');
        return;
      case 'reset':
        reply.hijack();
        request.raw.socket.destroy();
        return;
      case 'hang':
        // Never answer; close() destroys the connection (forceCloseConnections).
        reply.hijack();
        return;
    }
  };
}
