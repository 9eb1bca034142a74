import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../providers/id-token.js';
import type { IdTokenProof } from '../providers/types.js';
import type { ReplayPolicy } from '../config/config.js';
import type { Association, Client, Storage } from '../store/storage.js';
import { InvalidTokenError } from '../lib/errors.js';

/**
 * How often an ID token signs in. SOCIAL_AUTH_ID_TOKEN_REPLAY=allow (the default): until it expires, as the SDKs
 * hand an app the token they hold at each launch (test/fixtures/sdk-flows/). `refuse`: once — whoever stole one
 * (from a log, a proxy, a compromised app) cannot use it again before it expires; the one exception is the same
 * client (IP and user agent) retrying within a few seconds, twice at most (a phone that lost the answer).
 *
 * Nonces: POST /api/nonce/ issues a single-use nonce that the app gives the provider's SDK (as it is, or its
 * SHA-256 hex); the token then carries it, and a token that carries an issued nonce signs in once whatever the
 * setting and whatever the request sends beside it: the nonce is read from the token itself, and used up by its
 * first sign-in. SOCIAL_AUTH_<P>_REQUIRE_NONCE=issued accepts no other token. Everything here is written in the
 * sign-in's transaction: a sign-in that fails uses nothing up, so `auth` answering 404 and `associate` with the
 * same token right after still works.
 */
export type { ReplayPolicy } from '../config/config.js';

/** Issued nonces say so: the prefix tells them from an app's own nonces. */
export const ISSUED_NONCE_PREFIX = 'sln_';
export const NONCE_TTL_SECONDS = 600;

export async function issueNonce(storage: Storage): Promise<{ nonce: string; expires_in: number }> {
  const nonce = `${ISSUED_NONCE_PREFIX}${randomBytes(24).toString('base64url')}`;
  await storage.proofs.issueNonce(sha256Hex(nonce), new Date(Date.now() + NONCE_TTL_SECONDS * 1000).toISOString());
  return { nonce, expires_in: NONCE_TTL_SECONDS };
}

/** Uses the ID token (and the issued nonce it carries) in the sign-in's transaction, or refuses it. */
export async function useIdToken(
  storage: Storage,
  proof: IdTokenProof,
  client: Client,
  policy: ReplayPolicy,
): Promise<void> {
  const issuedNonce = await issuedNonceOf(storage, proof);
  if (proof.nonceRule === 'issued' && !issuedNonce)
    throw new InvalidTokenError('the nonce was not issued by this server: get one from POST /api/nonce/');
  let retry = false;
  // A token that carries an issued nonce is good for one sign-in, as every token is under `refuse`.
  if (policy.refuse || issuedNonce) {
    const use = await storage.proofs.useIdToken(
      proof.tokenHash,
      sha256Hex(`${client.ip}\n${client.userAgent}`),
      proof.acceptedUntil,
      policy.retrySeconds,
    );
    if (use === 'replayed')
      throw new InvalidTokenError('this ID token was used already: get a new one from the SDK for this sign-in');
    retry = use === 'retry';
  }
  if (issuedNonce && !(await storage.proofs.useNonce(issuedNonce, proof.tokenHash, retry))) {
    throw new InvalidTokenError('the nonce has expired, was used already, or was not issued by this server');
  }
}

/**
 * The hash (as stored) of the issued nonce this token carries, if it carries one: its nonce claim is the issued
 * nonce (`sln_…`), or its SHA-256 hex — which is what we store — for an app that hashed it for the SDK. Without a
 * nonce claim (Apple's devices without nonce support), the issued nonce the app sent.
 */
async function issuedNonceOf(storage: Storage, proof: IdTokenProof): Promise<string | undefined> {
  const carried = proof.tokenNonce;
  if (carried === undefined) return proof.nonce?.startsWith(ISSUED_NONCE_PREFIX) ? sha256Hex(proof.nonce) : undefined;
  if (carried.startsWith(ISSUED_NONCE_PREFIX)) return sha256Hex(carried);
  return /^[0-9a-f]{64}$/.test(carried) && (await storage.proofs.isIssuedNonce(carried)) ? carried : undefined;
}

/**
 * A provider ended the account's sessions (Apple's consent-revoked, Google's sessions-revoked…: the link's
 * `signInAfter`): an ID token it issued before then — perhaps the very one that was stolen — signs in no more,
 * even where a token may sign in again until it expires. The app asks the SDK for a new one.
 */
export function refuseTokenOfEndedSessions(proof: IdTokenProof, link: Association): void {
  if (link.signInAfter === null || proof.issuedAt === undefined) return;
  // iat counts whole seconds: a token of the revocation's own second is given the benefit of the doubt.
  if (proof.issuedAt < Math.floor(Date.parse(link.signInAfter) / 1000)) {
    throw new InvalidTokenError(
      "the provider ended this account's sessions after this ID token was issued: sign in again to get a new one",
    );
  }
}
