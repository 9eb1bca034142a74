import { errors, jwtVerify, type JWTPayload } from 'jose';
import { ApiError, InvalidTokenError } from '../errors.js';
import type { JwksCache } from './jwks.js';

export interface IdTokenPolicy {
  jwks: JwksCache;
  /** Accepted `iss` values, compared exactly. */
  issuers: readonly string[];
  /** Our client ids: `aud` must contain one of them (and `azp`, when present, must be one). */
  audiences: readonly string[];
  /** Allowed signing algorithms: asymmetric only, so neither `none` nor an HMAC "signed" with a public key passes. */
  algorithms: readonly string[];
  /** Clock skew tolerated on exp/iat/nbf, in seconds. */
  clockToleranceSeconds?: number;
}

/**
 * Verifies an OpenID Connect ID token as OpenID Connect Core 3.1.3.7 requires: signature by a key
 * of the provider's JWKS with an allowed algorithm, exact issuer, our audience, authorized party,
 * expiry and issue time, and the nonce when one is expected. Needs no network call once the keys are cached.
 */
export async function verifyIdToken(token: string, policy: IdTokenPolicy, expectedNonce?: string): Promise<JWTPayload> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, policy.jwks.getKey, {
      issuer: [...policy.issuers],
      audience: [...policy.audiences],
      algorithms: [...policy.algorithms],
      clockTolerance: policy.clockToleranceSeconds ?? 60,
      requiredClaims: ['sub', 'iat', 'exp'],
    }));
  } catch (error) {
    if (error instanceof ApiError) throw error; // the JWKS could not be fetched: 502
    throw new InvalidTokenError(reasonFor(error));
  }
  // jose checks exp and nbf; a token "issued" in the future is forged or from a broken clock: refuse it too.
  if (typeof payload.iat !== 'number' || payload.iat > Date.now() / 1000 + (policy.clockToleranceSeconds ?? 60)) {
    throw new InvalidTokenError("the ID token's iat claim is in the future");
  }
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  const azp = payload.azp;
  if (azp !== undefined && (typeof azp !== 'string' || !policy.audiences.includes(azp))) {
    throw new InvalidTokenError('the ID token was issued to another app (azp)');
  }
  if (audiences.length > 1 && azp === undefined) {
    throw new InvalidTokenError('the ID token has several audiences and no azp');
  }
  if (typeof payload.sub !== 'string' || payload.sub === '') throw new InvalidTokenError('the ID token has no subject');
  if (expectedNonce !== undefined && payload.nonce !== expectedNonce) {
    throw new InvalidTokenError('the ID token nonce does not match');
  }
  return payload;
}

/** A safe, useful reason for each way jose refuses a token (never the token itself). */
function reasonFor(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'the ID token has expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return 'the ID token was issued to another app (aud)';
    if (error.claim === 'iss') return 'the ID token was issued by another issuer';
    return `the ID token's ${error.claim} claim is not acceptable`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return 'the ID token is signed with an algorithm that is not allowed';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'the ID token signature is invalid';
  if (error instanceof errors.JWKSNoMatchingKey) return 'the ID token is signed by an unknown key';
  if (error instanceof errors.JWKSMultipleMatchingKeys) return 'the ID token key is ambiguous';
  return 'the ID token is malformed';
}

/** A string claim, or undefined: claims are untrusted JSON even when signed. */
export function claimString(claims: Record<string, unknown>, name: string): string | undefined {
  const value = claims[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
