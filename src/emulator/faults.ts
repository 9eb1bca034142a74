import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EmulatorState, Provider } from './state.js';

/**
 * onRequest hook for one provider's routes: counts the request, then applies the provider's
 * current fault so clients can be tested against slow, failing and broken providers.
 */
export function providerFaultHook(state: EmulatorState, provider: Provider, serverErrorBody: () => unknown) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    state.requestCounts[provider] += 1;
    const fault = state.faults[provider];
    if (fault.count !== undefined && fault.mode !== 'none') {
      // A fault for the next N requests only: this one uses up one of them.
      fault.count -= 1;
      if (fault.count <= 0) state.faults[provider] = { ...fault, mode: 'none', count: undefined };
    }

    // An unref'd timer delays this request only, and never keeps the process alive after close().
    if (fault.latency_ms > 0) await sleep(fault.latency_ms, undefined, { ref: false });

    switch (fault.mode) {
      case 'none':
        return;
      case 'error_500':
        await reply.code(500).send(serverErrorBody());
        return;
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
