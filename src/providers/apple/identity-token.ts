import type { JWTPayload } from 'jose';
import { nonceMatches, type IdTokenDeclaration } from '../id-token.js';
import type { NonceRule } from '../types.js';
import { APPLE_ISSUER } from './api.js';

/**
 * Sign in with Apple's identity token, verified against Apple's keys: issued by Apple to one of our client ids.
 *
 * Nonce: Apple copies the nonce the app set on its request into the token unchanged. Many apps set the
 * SHA-256 (hex) of a raw nonce and send us the raw one (Firebase's convention), others set and send the
 * same value: the token's nonce must equal what the app sent, or its SHA-256. A device that cannot do
 * nonces says `nonce_supported: false` and leaves the nonce out.
 */
export const identityTokens = (jwksUrl: string, clientIds: string[], nonceRule: NonceRule): IdTokenDeclaration => ({
  jwksUrl,
  issuers: [APPLE_ISSUER],
  audiences: clientIds,
  algorithms: ['RS256'],
  nonceAccepted,
  nonceRule,
});

/** The token's nonce is what the app sent, or its SHA-256 in hex; a device without nonce support may leave it out. */
function nonceAccepted(claims: JWTPayload, sent: string): boolean {
  if (claims.nonce === undefined) return claims.nonce_supported === false || claims.nonce_supported === 'false';
  return nonceMatches(claims, sent);
}
