import type { FastifyRequest } from 'fastify';
import type { AccessClaims, TokenService } from '../core/tokens.js';
import type { Client, Storage } from '../store/storage.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The signed-in user, once the access token was checked (for rate limits and the audit log). */
    userId?: number;
  }
}

/**
 * Who sent the request, as the audit log records it. Read it before waiting on anything: Node forgets the
 * address of a client that hung up (then it is '', recorded as null).
 */
export function clientOf(request: FastifyRequest): Client {
  return { ip: request.ip ?? '', userAgent: String(request.headers['user-agent'] ?? '') };
}

/** Checks the request's access token (401 otherwise) and remembers the user on the request. */
export function authenticator(tokens: TokenService, storage: Storage) {
  return async (request: FastifyRequest): Promise<AccessClaims> => {
    const claims = await tokens.authenticate(storage, request.headers.authorization);
    request.userId = claims.userId;
    return claims;
  };
}

/** A NUL character anywhere in a JSON or form value (PostgreSQL's text cannot hold one). */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (value && typeof value === 'object') return Object.values(value).some(holdsNul);
  return false;
}

/**
 * True when the path, query or body carries a NUL character: operators' routes answer 400 for it before any
 * query (PostgreSQL would refuse the text with an error, a 500).
 */
export function carriesNul(request: FastifyRequest): boolean {
  return /%00/i.test(request.url) || holdsNul(request.body);
}
