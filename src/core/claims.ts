import { apiError } from '../lib/errors.js';
import type { Claims } from '../store/rows.js';

export type { Claims } from '../store/rows.js';

/**
 * Custom claims: names and JSON values an app's backends read from our access tokens without a lookup (roles, a
 * plan, a tenant id), as Firebase's custom claims and Supabase's app_metadata are used. Two sets: the user's own,
 * set by an operator (the admin API), in every access token of the user; and those a blocking hook or a pipeline
 * step adds for one sign-in, kept with its session (its refreshes carry them; they win over the user's).
 */

/**
 * The JSON of each set is at most 1000 bytes (Firebase's limit for the same reason): an access token travels in
 * the Authorization header of every request the app makes, where proxies cap a request's headers at 8 KB (nginx's
 * large_client_header_buffers, Node's --max-http-header-size 16 KB in all).
 */
export const CLAIMS_MAX_BYTES = 1000;

/** A name is 1 to 128 characters, no control character (a namespaced URI such as https://example.com/roles fits). */
const NAME = /^[^\p{Cc}]{1,128}$/u;

/**
 * Names an access token's reader trusts as ours, refused as custom claims: the JWT's registered claims (RFC 7519
 * section 4.1), our session id, the JWT access token profile's (RFC 9068 section 2.2: scope, client_id,
 * auth_time, acr, amr) and the OpenID Connect and token exchange names a verifier may act on (azp, nonce, at_hash,
 * c_hash, cnf, act, may_act), and the header's typ. Firebase and Auth0 refuse the same kind of list.
 */
export const RESERVED_CLAIMS: ReadonlySet<string> = new Set([
  'iss',
  'sub',
  'aud',
  'exp',
  'nbf',
  'iat',
  'jti',
  'sid',
  'scope',
  'client_id',
  'auth_time',
  'acr',
  'amr',
  'azp',
  'nonce',
  'at_hash',
  'c_hash',
  'cnf',
  'act',
  'may_act',
  'typ',
]);

/** What is wrong with a set of claims, or undefined when it may be stored. */
export function claimsProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'claims must be a JSON object of names and values';
  const names = Object.keys(value);
  if (names.length === 0) return undefined; // most sign-ins add none
  // __proto__ would be a prototype, not a claim, wherever a reader copies the claims into an object.
  const badName = names.find((name) => !NAME.test(name) || name === '__proto__');
  if (badName !== undefined)
    return `a claim name is 1 to 128 characters without control characters, and not __proto__; got ${JSON.stringify(badName)}`;
  const reserved = names.filter((name) => RESERVED_CLAIMS.has(name));
  if (reserved.length > 0)
    return `reserved claim name${reserved.length > 1 ? 's' : ''} ${reserved.join(', ')}: social-link sets ${reserved.length > 1 ? 'them' : 'it'}, or a token's reader trusts ${reserved.length > 1 ? 'them' : 'it'} as such`;
  const undefinedValue = names.find((name) => (value as Claims)[name] === undefined);
  if (undefinedValue !== undefined) return `claim ${undefinedValue} has no JSON value`;
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > CLAIMS_MAX_BYTES)
    return `claims are ${bytes} bytes of JSON, more than ${CLAIMS_MAX_BYTES}: an access token travels in every request's headers`;
  return undefined;
}

/** The claims, or a 400 invalid_claims naming what is wrong. */
export function checkedClaims(value: unknown): Claims {
  const problem = claimsProblem(value);
  if (problem) throw apiError('invalid_claims', { about: problem });
  return value as Claims;
}

/**
 * RFC 7396 JSON merge patch of a set of claims, one level deep: a name with null is removed, any other value
 * replaces the one before.
 */
export function patchedClaims(current: Claims, patch: Claims): Claims {
  return Object.fromEntries([
    ...Object.entries(current).filter(([name]) => !Object.hasOwn(patch, name)),
    ...Object.entries(patch).filter(([, value]) => value !== null),
  ]);
}

/**
 * An access token's custom claims: the user's, and over them those its session's sign-in added; never a reserved
 * name, whatever a row holds (fast-jwt's signer would take a payload's iat as the base of exp), nor `__proto__` (a
 * copy by assignment would take it for the prototype, and its iat would be inherited).
 */
export function tokenClaims(user: Claims, session: Claims | undefined): Claims {
  const both = session !== undefined && Object.keys(session).length > 0;
  const names = both ? [...Object.keys(user), ...Object.keys(session)] : Object.keys(user);
  const kept = (name: string) => !RESERVED_CLAIMS.has(name) && name !== '__proto__';
  // Assigned, not spread: see mergeFacts (providers/profile.ts).
  if (names.every(kept)) return both ? Object.assign({}, user, session) : user;
  return Object.fromEntries([...Object.entries(user), ...Object.entries(session ?? {})].filter(([name]) => kept(name)));
}
