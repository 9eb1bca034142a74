import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ProviderAnswer } from './faults.js';
import type { EmulatorState } from './state.js';

// What a provider requires of a request (a header, an encoding, a parameter), declared per route and checked
// by one hook: a request missing one is refused with the provider's own answer, as the real provider refuses
// it. Each `id` is the one the recorded requirement has in test/fixtures/provider-requests/<provider>.json.
// Requirements a handler already checks as part of its answers (credentials, tokens) stay in the handler.

export interface RequestRequirement {
  /** The requirement's id in test/fixtures/provider-requests/<provider>.json. */
  id: string;
  /** Whether the request meets it (the body is parsed by now). */
  met(request: FastifyRequest, state: EmulatorState): boolean;
  /** The provider's answer to a request that does not. */
  refusal(request: FastifyRequest): ProviderAnswer;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the provider requires of a request to this route (request-checks.ts). */
    requires?: readonly RequestRequirement[];
  }
}

/** A header sent with a non-blank value. */
export const hasHeader =
  (name: string) =>
  (request: FastifyRequest): boolean => {
    const value = request.headers[name.toLowerCase()];
    return typeof value === 'string' && value.trim() !== '';
  };

/** The body is a form post (application/x-www-form-urlencoded). */
export const isFormPost = (request: FastifyRequest): boolean =>
  (request.headers['content-type'] ?? '').toLowerCase().split(';')[0]!.trim() === 'application/x-www-form-urlencoded';

/**
 * preHandler hook (registered once, on the root): refuses a request that misses a requirement its route declares,
 * with the first missed requirement's answer. Routes without declarations (the control API) are untouched.
 */
export function checkRequestRequirements(state: EmulatorState) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const requires = request.routeOptions.config?.requires;
    if (!requires) return undefined;
    for (const requirement of requires) {
      if (requirement.met(request, state)) continue;
      const answer = requirement.refusal(request);
      return reply
        .code(answer.status)
        .headers(answer.headers ?? {})
        .send(answer.body);
    }
    return undefined;
  };
}
