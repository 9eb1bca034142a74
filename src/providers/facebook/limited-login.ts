import type { JWTPayload } from 'jose';
import { text } from '../../lib/narrowing.js';
import type { Account } from '../define.js';
import type { IdTokenDeclaration } from '../id-token.js';
import type { NonceRule } from '../types.js';

/**
 * Facebook Limited Login (iOS): instead of an access token, an ID token signed with Meta's keys, issued to our app
 * id; it carries the profile the user shared. Sources: test/fixtures/providers/facebook/.
 */
export const limitedLoginTokens = (config: {
  appId: string;
  limitedJwksUrl: string;
  limitedNonceRule: NonceRule;
}): IdTokenDeclaration => ({
  jwksUrl: config.limitedJwksUrl,
  // Meta's SDK takes any facebook.com host as issuer (facebook-ios-sdk, AuthenticationTokenClaims.swift).
  issuers: ['https://www.facebook.com', 'https://limited.facebook.com'],
  audiences: [config.appId],
  algorithms: ['RS256'],
  nonceRule: config.limitedNonceRule,
});

/** A Limited Login token's claims as the account social-link keeps. */
export const limitedLoginAccount = (claims: JWTPayload): Account => ({
  uid: String(claims.sub),
  name: text(claims, 'name'),
  email: text(claims, 'email'),
  first_name: text(claims, 'given_name'),
  last_name: text(claims, 'family_name'),
  extraData: {
    id: claims.sub,
    name: text(claims, 'name') ?? null,
    email: text(claims, 'email') ?? null,
    expires_at: claims.exp ?? null,
    limited_login: true,
  },
});
