import { InvalidTokenError } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import type { IdTokenVerifier } from '../define.js';
import type { IdTokenDeclaration } from '../id-token.js';
import type { AccountEvent } from '../types.js';

/**
 * Cross-Account Protection (RISC): security event tokens Google posts about an account (core/provider-callbacks.ts).
 * Sources: test/fixtures/callbacks/google/.
 */

/**
 * The tokens, signed with the same keys as the ID tokens; their issuer is written with a trailing slash in Google's
 * example and without in its configuration document.
 */
export const securityEventTokens = (jwksUrl: string, clientIds: string[]): IdTokenDeclaration => ({
  jwksUrl,
  issuers: ['https://accounts.google.com/', 'https://accounts.google.com'],
  audiences: clientIds,
  algorithms: ['RS256'],
});

/**
 * The event a security event token tells. Its audience is any client id of the Google project: one not ours is
 * acknowledged and ignored (core/provider-callbacks.ts).
 */
export async function readSecurityEvent(
  token: string,
  securityEvents: IdTokenVerifier,
  clientIds: readonly string[],
): Promise<AccountEvent> {
  const claims = await securityEvents.verifyEvent(token, { anyAudience: true });
  // Every audience ours: acted on; none: another client of the project, acknowledged; a mix is no event Google sends.
  const audiences = [claims.aud].flat();
  const ours = audiences.filter((aud) => typeof aud === 'string' && clientIds.includes(aud)).length;
  if (ours > 0 && ours < audiences.length)
    throw new InvalidTokenError('the event token names an audience that is not ours (aud)');
  const [uri, event] = isObject(claims.events) ? (Object.entries(claims.events)[0] ?? []) : [];
  if (typeof uri !== 'string' || !isObject(event))
    throw new InvalidTokenError('the security event token carries no event');
  return {
    type: uri.slice(uri.lastIndexOf('/') + 1),
    uid: text(isObject(event.subject) ? event.subject : {}, 'sub') ?? '',
    id: typeof claims.jti === 'string' ? claims.jti : undefined,
    reason: text(event, 'reason'),
    issuedAt: claims.iat,
    forAnotherClient: ours === 0,
  };
}
