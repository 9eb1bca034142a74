import { randomBytes } from 'node:crypto';
import { sha256Hex, type IdTokenProof } from '../providers/id-token.js';
import type { Client, Storage } from '../store/storage.js';
import { InvalidTokenError } from './errors.js';

/**
 * An ID token signs in (or links) once. Whoever stole one — from a log, a proxy, a compromised app — cannot
 * use it again before it expires: each use is remembered until then. The one exception is the same client (IP
 * and user agent) retrying within a few seconds, twice at most (a phone that lost the answer): it signs in
 * again, with a session of its own.
 *
 * Nonces: POST /api/nonce/ issues a single-use nonce that the app gives the provider's SDK; the token then
 * carries it, and the sign-in that presents it uses it up. SOCIAL_AUTH_<P>_REQUIRE_NONCE=issued accepts no
 * other. Everything here is written in the sign-in's transaction: a sign-in that fails uses nothing up, so
 * `auth` answering 404 and `associate` with the same token right after still works.
 */
export interface ReplayPolicy {
  /** SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse (default) or allow. */
  refuse: boolean;
  /** SOCIAL_AUTH_ID_TOKEN_RETRY_SECONDS: how long the same client's retry of the same token is let through. */
  retrySeconds: number;
}

/** Issued nonces say so: the prefix tells them from an app's own nonces. */
export const ISSUED_NONCE_PREFIX = 'sln_';
export const NONCE_TTL_SECONDS = 600;

export async function issueNonce(storage: Storage): Promise<{ nonce: string; expires_in: number }> {
  const nonce = `${ISSUED_NONCE_PREFIX}${randomBytes(24).toString('base64url')}`;
  await storage.proofs.issueNonce(sha256Hex(nonce), new Date(Date.now() + NONCE_TTL_SECONDS * 1000).toISOString());
  return { nonce, expires_in: NONCE_TTL_SECONDS };
}

/** Uses the ID token (and the issued nonce it came with) in the sign-in's transaction, or refuses it. */
export async function useIdToken(storage: Storage, proof: IdTokenProof, client: Client, policy: ReplayPolicy): Promise<void> {
  let retry = false;
  if (policy.refuse) {
    const use = await storage.proofs.useIdToken(proof.tokenHash, sha256Hex(`${client.ip}\n${client.userAgent}`), proof.acceptedUntil, policy.retrySeconds);
    if (use === 'replayed') throw new InvalidTokenError('this ID token was used already: get a new one from the SDK for each sign-in');
    retry = use === 'retry';
  }
  const issued = proof.nonce?.startsWith(ISSUED_NONCE_PREFIX) === true;
  if (proof.nonceRule === 'issued' && !issued) throw new InvalidTokenError('the nonce was not issued by this server: get one from POST /api/nonce/');
  if (issued && !(await storage.proofs.useNonce(sha256Hex(proof.nonce!), proof.tokenHash, retry))) {
    throw new InvalidTokenError('the nonce has expired, was used already, or was not issued by this server');
  }
}
