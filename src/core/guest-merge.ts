import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../providers/id-token.js';
import type { IdTokenProof } from '../providers/types.js';
import type { Association, Client, Storage, User } from '../store/storage.js';
import type { AuditEntry } from '../store/audit.js';
import { refuseIfDisabled } from './disabled-users.js';
import { apiError, sessionEnded } from '../lib/errors.js';
import { refuseTokenOfEndedSessions, useIdToken, type ReplayPolicy } from './replay.js';

/**
 * Guest merge. The commonest conflict of a mobile app: a guest on a new phone taps "Connect Facebook", but that
 * Facebook account belongs to their old user. The 409 already_associated then carries a merge token, bound to
 * the guest and to the (provider, uid) the phone just proved. POST /api/users/merge/ with it (and the guest's
 * session) signs in as the owner — as `auth` with that account would —, deletes the guest, tells both audit
 * logs and emits `user.merged {from, into}` so that the app's backend moves the guest's data. Only a guest is
 * merged away: no password and no linked account (checked again under its row's lock), so that an access token
 * alone can never hand a user's own accounts to someone else.
 */
export const MERGE_TOKEN_PREFIX = 'slm_';
export const MERGE_TOKEN_TTL_SECONDS = 600;

/**
 * The merge token of a guest's 409 already_associated: the fields to add to the answer. A merge signs in as the
 * owner, so the ID token that proved the account is spent here exactly as a sign-in spends it (core/replay.ts), in
 * the same commit as the token: where it is single use (an issued nonce in it, SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse),
 * one proof yields one merge token and no sign-in after it; where it may sign in again, a merge gives no more than
 * a sign-in with it would. A token issued before the provider ended the account's sessions yields none.
 */
export async function offerMerge(
  storage: Storage,
  guest: User,
  owner: { userId: number; provider: string; uid: string },
  proof?: { idToken: IdTokenProof; client: Client; replay: ReplayPolicy },
) {
  const token = `${MERGE_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const offered = await storage.transaction(async (trx) => {
    // Both users' rows first, lowest id first, as every writer of a user's rows does (see mergeGuest).
    const [first, second] = [guest.id, owner.userId].sort((a, b) => a - b);
    const held = new Map([
      [first!, await trx.users.hold(first!)],
      [second!, await trx.users.hold(second!)],
    ]);
    if (!held.get(guest.id)) throw sessionEnded();
    // The owner gone meanwhile, or disabled (it opens no session): nothing to merge into.
    if (!held.get(owner.userId) || held.get(owner.userId)!.disabledAt) return false;
    if (proof) {
      const link = await trx.links.find(owner.provider, owner.uid);
      if (link) refuseTokenOfEndedSessions(proof.idToken, link);
      await useIdToken(trx, proof.idToken, proof.client, proof.replay);
    }
    await trx.mergeTokens.issue(
      sha256Hex(token),
      { guestId: guest.id, ownerId: owner.userId, provider: owner.provider, uid: owner.uid },
      new Date(Date.now() + MERGE_TOKEN_TTL_SECONDS * 1000).toISOString(),
    );
    return true;
  });
  return offered ? { merge_token: token, merge_token_expires_in: MERGE_TOKEN_TTL_SECONDS } : {};
}

/**
 * Merges the guest into the owner of the proven account, in one transaction, and starts the owner's session
 * there (the caller's `startSession`). invalid_merge_token: unknown, expired, used, another user's, a guest who
 * set a password since, or an account no longer the owner's.
 */
/**
 * Whom a merge token would sign the guest in as, read before the transaction (for the before_sign_in hook): the
 * owner and the link the guest proved; undefined when the token is not one (the transaction then says why).
 */
export async function mergeTarget(
  storage: Storage,
  guest: User,
  mergeToken: string,
): Promise<{ owner: User; link: Association } | undefined> {
  const claim = await storage.mergeTokens.find(sha256Hex(mergeToken));
  if (!claim || claim.guestId !== guest.id) return undefined;
  const [owner, link] = await Promise.all([
    storage.users.findById(claim.ownerId),
    storage.links.find(claim.provider, claim.uid),
  ]);
  return owner && link?.userId === owner.id ? { owner, link } : undefined;
}

export async function mergeGuest<S>(
  storage: Storage,
  guest: User,
  mergeToken: string,
  client: Client,
  startSession: (trx: Storage, owner: User, audit: AuditEntry) => Promise<S>,
): Promise<{ user: User; session: S }> {
  return storage.transaction(async (trx) => {
    const hash = sha256Hex(mergeToken);
    const claim = await trx.mergeTokens.find(hash);
    if (!claim || claim.guestId !== guest.id)
      throw apiError('invalid_merge_token', {
        detail: claim ? 'it was issued to another user' : 'unknown, expired or used',
      });
    // Both rows, lowest id first, before any other write (every writer takes a user's row first: one order, no
    // deadlock with a deletion, whose cascade reaches the token); then the token is used up.
    const [first, second] = [claim.guestId, claim.ownerId].sort((a, b) => a - b);
    const locked = new Map<number, User | undefined>([
      [first!, await trx.users.lock(first!)],
      [second!, await trx.users.lock(second!)],
    ]);
    const held = locked.get(claim.guestId);
    const owner = locked.get(claim.ownerId);
    if (!held) throw sessionEnded();
    if (!(await trx.mergeTokens.use(hash)))
      throw apiError('invalid_merge_token', { detail: 'used by a request that ran at the same time' });
    if (held.hasPassword || (await trx.links.ofUser(held.id)).length > 0) {
      throw apiError('invalid_merge_token', {
        detail: 'this user has a password or a linked account now: it is not merged away',
      });
    }
    const link = await trx.links.find(claim.provider, claim.uid);
    if (!owner || link?.userId !== owner.id)
      throw apiError('invalid_merge_token', { detail: "the account is no longer that user's" });
    refuseIfDisabled(owner);
    await trx.users.delete(held.id);
    const detail = `${held.id} → ${owner.id}`;
    for (const userId of [held.id, owner.id])
      await trx.audit.record(
        { event: 'user_merged', userId, provider: claim.provider, uid: claim.uid, detail },
        client,
      );
    const session = await startSession(trx, owner, {
      event: 'social_sign_in',
      userId: owner.id,
      provider: claim.provider,
      uid: claim.uid,
    });
    return { user: owner, session };
  });
}
