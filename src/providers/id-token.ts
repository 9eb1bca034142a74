import { createHash } from 'node:crypto';
import { decodeJwt, errors, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { ConfigError, type Settings } from '../lib/settings.js';
import { ApiError, InvalidTokenError, invalidRequest } from '../lib/errors.js';
import { JwksCache } from './jwks.js';
import type { IdTokenProof, NonceRule, ProviderContext } from './types.js';

export function nonceRuleOf(settings: Settings, name: string): NonceRule {
  const raw = settings.string(name)?.toLowerCase();
  if (raw === 'issued') return 'issued';
  if (raw !== undefined && !['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'].includes(raw)) {
    throw new ConfigError(`${name} must be false, true or issued, got "${raw}"`);
  }
  return settings.bool(name, false) ? 'required' : 'optional';
}

export const sha256Hex = (value: string) => createHash('sha256').update(value).digest('hex');

export function idTokenProof(
  token: string,
  claims: JWTPayload,
  nonce: string | undefined,
  nonceRule: NonceRule,
  toleranceSeconds = DEFAULT_CLOCK_TOLERANCE_SECONDS,
): IdTokenProof {
  const exp = typeof claims.exp === 'number' ? claims.exp : Date.now() / 1000;
  return {
    tokenHash: sha256Hex(signedPart(token)),
    acceptedUntil: new Date((exp + toleranceSeconds) * 1000).toISOString(),
    nonce,
    tokenNonce: typeof claims.nonce === 'string' ? claims.nonce : undefined,
    issuedAt: typeof claims.iat === 'number' ? claims.iat : undefined,
    nonceRule,
  };
}

/**
 * What names a token: its signed part (`header.payload`), never the whole string. The signature's base64url
 * is decoded leniently (its last character's unused bits, padding), so one token has many spellings that all
 * verify; the signed part has one, or the signature would not verify.
 */
function signedPart(token: string): string {
  return token.slice(0, token.lastIndexOf('.'));
}

/** The nonce rule, for the checks that need no database: the app sent a nonce, and the token carries one. */
export function requireNonce(rule: NonceRule, sent: string | undefined, claims?: JWTPayload): void {
  if (rule === 'optional') return;
  if (sent === undefined)
    throw invalidRequest('nonce is required: send the nonce the app gave the SDK (see POST /api/nonce/)');
  if (claims && claims.nonce === undefined)
    throw new InvalidTokenError('the ID token carries no nonce, and this server requires one');
}

/** SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS's default: the clock skew tolerated on exp, iat and nbf. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 60;

/** SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS: Google's own library tolerates 300 s; we default to less, and the operator decides. */
export function clockToleranceOf(settings: Settings): number {
  return settings.int('SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS', DEFAULT_CLOCK_TOLERANCE_SECONDS, { min: 0, max: 600 });
}

export interface IdTokenPolicy {
  jwks: JwksCache;
  /** Accepted `iss` values, compared exactly; or computed from the token's unverified claims (Microsoft's `{tenantid}` issuers). */
  issuers: readonly string[] | ((claims: JWTPayload) => readonly string[]);
  /** Our client ids: `aud` must contain one of them, and nothing else. */
  audiences: readonly string[];
  /** Allowed signing algorithms: asymmetric only, so neither `none` nor an HMAC "signed" with a public key passes. */
  algorithms: readonly string[];
  /** Clock skew tolerated on exp/iat/nbf, in seconds. */
  clockToleranceSeconds?: number;
  /** Does the token's nonce answer the one the app sent? Default: `nonceMatches`. */
  nonceAccepted?: (claims: JWTPayload, sent: string) => boolean;
  /**
   * May the key that signed the token sign for its issuer? (Microsoft binds keys to issuers.) Default: yes. `key`
   * is undefined when the token names no kid (or its key left the set meanwhile): `published` then says what it
   * might have been.
   */
  keyAccepted?: (key: JWK | undefined, claims: JWTPayload, published: readonly JWK[]) => boolean;
  /** Must the app send a nonce (SOCIAL_AUTH_<P>_REQUIRE_NONCE)? Default: only checked when sent. */
  nonceRule?: NonceRule;
}

/**
 * Verifies an OpenID Connect ID token as OpenID Connect Core 3.1.3.7 (with errata set 2) requires:
 * signature by a key of the provider's JWKS with an allowed algorithm, exact issuer, our audience and no
 * audience we do not trust, expiry and issue time, and the nonce when the app sent one. `azp` is not
 * checked: the errata dropped that rule, and Google's native apps get `aud` = the web client id with
 * `azp` = their own Android/iOS client id. Needs no network call once the keys are cached.
 */
export async function verifyIdToken(token: string, policy: IdTokenPolicy, expectedNonce?: string): Promise<JWTPayload> {
  const tolerance = policy.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  requireNonce(policy.nonceRule ?? 'optional', expectedNonce);
  let payload: JWTPayload;
  let kid: string | undefined;
  try {
    const issuers = typeof policy.issuers === 'function' ? policy.issuers(decodeJwt(token)) : policy.issuers;
    ({
      payload,
      protectedHeader: { kid },
    } = await jwtVerify(token, policy.jwks.getKey, {
      issuer: [...issuers],
      audience: [...policy.audiences],
      algorithms: [...policy.algorithms],
      clockTolerance: tolerance,
      requiredClaims: ['sub', 'iat', 'exp'],
    }));
  } catch (error) {
    if (error instanceof ApiError) throw error; // the JWKS could not be fetched: 502
    throw new InvalidTokenError(reasonFor(error));
  }
  // jose checks exp and nbf; a token "issued" in the future is forged or from a broken clock: refuse it too.
  if (typeof payload.iat !== 'number' || payload.iat > Date.now() / 1000 + tolerance) {
    throw new InvalidTokenError("the ID token's iat claim is in the future");
  }
  // jose found one of ours in aud; OIDC Core also refuses a token that names audiences we do not trust.
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.every((audience) => typeof audience === 'string' && policy.audiences.includes(audience))) {
    throw new InvalidTokenError('the ID token names an audience that is not ours (aud)');
  }
  if (policy.keyAccepted && !policy.keyAccepted(policy.jwks.keyOf(kid), payload, policy.jwks.published)) {
    throw new InvalidTokenError('the ID token is signed by a key of another issuer');
  }
  if (typeof payload.sub !== 'string' || payload.sub === '') throw new InvalidTokenError('the ID token has no subject');
  requireNonce(policy.nonceRule ?? 'optional', expectedNonce, payload);
  if (expectedNonce !== undefined && !(policy.nonceAccepted ?? nonceMatches)(payload, expectedNonce)) {
    throw new InvalidTokenError('the ID token nonce does not match');
  }
  return payload;
}

/**
 * The token's nonce is what the app sent, or its SHA-256 in lower-case hex. The provider copies into the token
 * whatever the app gave its SDK; apps that follow Firebase's and Supabase's guides give the SDK the hash and send
 * us the raw nonce, others give and send the same value (test/fixtures/sdk-flows/). Accepting the hash of what was
 * sent costs nothing: nobody can find a raw nonce from a token's hash.
 */
export function nonceMatches(claims: JWTPayload, sent: string): boolean {
  return typeof claims.nonce === 'string' && (claims.nonce === sent || claims.nonce === sha256Hex(sent));
}

/**
 * A token the provider signs to tell us about an account (Apple's server-to-server notifications): signature by
 * a key of its JWKS with an allowed algorithm, exact issuer, our audience only, `iat` not in the future, and
 * `exp` when it has one. No subject or nonce: the account is named in the event. With `anyAudience`, the
 * audience is left to the caller (Google sends a project's events to each of its client ids).
 */
export async function verifyEventToken(
  token: string,
  policy: IdTokenPolicy,
  { anyAudience = false } = {},
): Promise<JWTPayload> {
  const tolerance = policy.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  let payload: JWTPayload;
  try {
    const issuers = typeof policy.issuers === 'function' ? policy.issuers(decodeJwt(token)) : policy.issuers;
    ({ payload } = await jwtVerify(token, policy.jwks.getKey, {
      issuer: [...issuers],
      audience: anyAudience ? undefined : [...policy.audiences],
      algorithms: [...policy.algorithms],
      clockTolerance: tolerance,
      requiredClaims: ['iat'],
    }));
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw new InvalidTokenError(reasonFor(error).replace('ID token', 'event token'));
  }
  if (typeof payload.iat !== 'number' || payload.iat > Date.now() / 1000 + tolerance)
    throw new InvalidTokenError("the event token's iat claim is in the future");
  if (anyAudience) return payload;
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.every((audience) => typeof audience === 'string' && policy.audiences.includes(audience)))
    throw new InvalidTokenError('the event token names an audience that is not ours (aud)');
  return payload;
}

/** An ID-token provider's declaration: where its keys are, and the policy its tokens must meet. */
export type IdTokenDeclaration = Omit<IdTokenPolicy, 'jwks'> & { jwksUrl: string };

/** Verifies a provider's ID tokens as declared, with its keys cached (see jwks.ts) and the operator's clock tolerance. */
export function idTokenVerifier(
  { http, clockToleranceSeconds }: ProviderContext,
  { jwksUrl, ...declared }: IdTokenDeclaration,
) {
  const policy: IdTokenPolicy = { clockToleranceSeconds, ...declared, jwks: new JwksCache(http, jwksUrl) };
  return {
    /** `nonceRule` overrides the declared one for a token the app did not carry (one we redeemed a code for). */
    verify: (token: string, nonce?: string, nonceRule?: NonceRule) =>
      verifyIdToken(token, nonceRule ? { ...policy, nonceRule } : policy, nonce),
    /** The proof the sign-in's transaction checks, of a token `verify` accepted. */
    proof: (token: string, claims: JWTPayload, nonce?: string) =>
      idTokenProof(token, claims, nonce, policy.nonceRule ?? 'optional', policy.clockToleranceSeconds),
    /** A token the provider signs about an account (see verifyEventToken). */
    verifyEvent: (token: string, options?: { anyAudience?: boolean }) => verifyEventToken(token, policy, options),
    warmUp: () => policy.jwks.warmUp(),
  };
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
