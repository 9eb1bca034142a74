import type { JWTPayload } from 'jose';
import { InvalidTokenError, invalidRequest, providerRefusedApp } from '../../lib/errors.js';
import { appleKeyHint, type AppleApi } from './api.js';
import type { IdTokenVerifier, Proof } from '../define.js';
import type { IdTokenProof, TokenInput } from '../types.js';

/**
 * Sign in with Apple's authorization code, redeemed with the team key (api.ts). A code from the web flow
 * (Sign in with Apple on Android) is redeemed with the redirect URI its authorization used: Apple redeems it with
 * that one only (SOCIAL_AUTH_APPLE_REDIRECT_URIS, per Services ID). A code Apple will not redeem (invalid_grant:
 * used, expired, or another redirect URI) beside a valid identity token does not refuse the sign-in: the identity
 * token alone proves the account, as Firebase Auth and Supabase Auth sign in with it alone (test/fixtures/sdk-flows/).
 * The link then keeps no grant, and the operator is told what to fix. A code sent without an identity token is the
 * only proof: refused then.
 */

/** The client ids a code may have been issued to: the identity token's, the one the app names, or every one. */
function codeClientIds(clientIds: string[], claims: JWTPayload | undefined, sent: string | undefined): string[] {
  if (typeof claims?.aud === 'string') return [claims.aud];
  if (sent === undefined) return clientIds;
  if (!clientIds.includes(sent))
    throw invalidRequest('client_id is not one of the configured Sign in with Apple client ids');
  return [sent];
}

/**
 * The client ids a code may have been issued to, each with the redirect URI to redeem it with: the app's, for
 * the client ids it is configured for (400 when it is for none); else the first configured one; else none.
 */
function redemptions(
  redirectUris: Record<string, string[]>,
  candidates: string[],
  sent: string | undefined,
): Array<[clientId: string, redirectUri: string | undefined]> {
  if (sent === undefined) return candidates.map((clientId) => [clientId, redirectUris[clientId]?.[0]]);
  const matching = candidates.filter((clientId) => redirectUris[clientId]?.includes(sent));
  if (matching.length === 0)
    throw invalidRequest(
      `redirect_uri is not one configured for ${candidates.join(', ')} (SOCIAL_AUTH_APPLE_REDIRECT_URIS)`,
    );
  return matching.map((clientId) => [clientId, sent]);
}

/** What redeeming needs: the team key's API, the verifier of Apple's tokens, our client ids and redirect URIs. */
export interface CodeRedemption {
  provider: string;
  api: AppleApi;
  idTokens: IdTokenVerifier;
  clientIds: string[];
  redirectUris: Record<string, string[]>;
}

/**
 * Redeems the code: the account it proves (the identity token's claims when the app sent one), with the refresh
 * token to keep; or, when Apple would not redeem it beside a valid identity token, the notice for the operator.
 */
export async function redeemCode(
  { provider, api, idTokens, clientIds, redirectUris }: CodeRedemption,
  code: string,
  claims: JWTPayload | undefined,
  input: TokenInput,
): Promise<Omit<Proof<JWTPayload>, 'idToken'> & { idToken: IdTokenProof }> {
  // A code alone does not say which of our client ids it was issued to: try each. (That Apple does not
  // redeem a code refused for another client id is assumed: no source says; sending client_id avoids it.)
  const candidates = redemptions(redirectUris, codeClientIds(clientIds, claims, input.client_id), input.redirect_uri);
  const refusedClients: string[] = [];
  for (const [clientId, redirectUri] of candidates) {
    const redeemed = await api.redeem(clientId, code, redirectUri);
    if ('refused' in redeemed) {
      if (redeemed.refused === 'invalid_client') refusedClients.push(clientId);
      continue;
    }
    // With the app's identity token, that token carries the nonce; with a code alone, the one Apple gave us.
    const codeClaims = claims
      ? await idTokens.verify(redeemed.idToken, undefined, 'optional')
      : await idTokens.verify(redeemed.idToken, input.nonce);
    if (claims && codeClaims.sub !== claims.sub)
      throw new InvalidTokenError('the code belongs to another user than the identity token');
    const idToken = claims
      ? idTokens.proof(input.id_token!, claims, input.nonce)
      : idTokens.proof(redeemed.idToken, codeClaims, input.nonce);
    return {
      facts: claims ?? codeClaims,
      tokens: { refresh_token: redeemed.refreshToken, client_id: clientId },
      idToken,
    };
  }
  if (refusedClients.length === candidates.length)
    throw providerRefusedApp(provider, 'invalid_client', appleKeyHint(refusedClients));
  if (!claims) throw new InvalidTokenError('the authorization code is invalid, expired or already used');
  // The identity token proves the account; only a new grant to keep is lost.
  const [[clientId, redirectUri]] = candidates as [[string, string | undefined]];
  const operatorNotice = {
    reason: `Apple refused the authorization code of ${clientId} (invalid_grant): no new grant is kept for the link`,
    hint: redirectUri
      ? 'the code was used or expired (it lives 5 minutes), or its authorization used another redirect URI than SOCIAL_AUTH_APPLE_REDIRECT_URIS gives'
      : `the code was used or expired (it lives 5 minutes); or, if ${clientId} is a Services ID whose web flow (Sign in with Apple on Android) made it, set SOCIAL_AUTH_APPLE_REDIRECT_URIS=${clientId}=<the redirect URI it used> (never for an app's bundle id: its codes have none)`,
  };
  return {
    facts: claims,
    idToken: idTokens.proof(input.id_token!, claims, input.nonce),
    operatorNotice,
  };
}
