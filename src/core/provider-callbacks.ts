import { createHash, randomBytes } from 'node:crypto';
import { base64url } from 'jose';
import type { Config } from '../config/config.js';
import type { ProviderRegistry } from '../providers/registry.js';
import { canonicalBase64url } from '../providers/facebook/signed-request.js';
import type { Storage } from '../store/storage.js';
import { now } from '../store/rows.js';
import { apiError, invalidRequest, InvalidTokenError } from '../lib/errors.js';

/** A callback older than this is refused: a captured one cannot be played again later (the seen ids are kept as long). */
export const CALLBACK_MAX_AGE_SECONDS = 7 * 86_400;

/**
 * The providers' lifecycle callbacks, each verified as its provider signs it (sources:
 * test/fixtures/callbacks/), each acted on once, in one transaction, on the link read under its user's row.
 * Facebook: the data-deletion request (the person asked Facebook to have our app delete what Facebook shared:
 * the link and the facts it kept are deleted, and a status page says so) and the deauthorize callback (the
 * person removed our app: recorded and told to the app's backend; the link stays, as the person may sign in
 * with Facebook again).
 */
export class ProviderCallbacks {
  constructor(private readonly services: { providers: ProviderRegistry; storage: Storage; config: Config }) {}

  /**
   * Refuses a callback issued too long ago, or later than now (past the clock tolerance: its id would be forgotten
   * while it still passed for recent); answers whether this is its first time here (and records it), in `trx`.
   */
  private async firstTime(trx: Storage, id: string, issuedAt: unknown): Promise<boolean> {
    const nowSeconds = Date.now() / 1000;
    if (typeof issuedAt !== 'number' || issuedAt < nowSeconds - CALLBACK_MAX_AGE_SECONDS)
      throw new InvalidTokenError('the callback was issued too long ago (or says not when)');
    if (issuedAt > nowSeconds + this.services.config.clockToleranceSeconds)
      throw new InvalidTokenError('the callback says it was issued in the future');
    const inserted = await trx.db
      .insertInto('provider_callbacks_seen')
      .values({ id, seen_at: now() })
      .onConflict((conflict) => conflict.column('id').doNothing())
      .executeTakeFirst();
    return (inserted.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /**
   * A callback's own id: the provider's (jti), else the hash of what it sent with its signature written again the
   * one way base64url writes it (`spelled`). Decoders take many spellings of one signature (padding, the last
   * character's unused bits; whitespace in a JWT), each of which verifies; its bytes are one (HMAC-SHA256 and RS256
   * are deterministic). A genuine delivery is spelled that way already: its id is the one recorded before.
   */
  private static key(provider: string, id: string | undefined, spelled: string): string {
    return `${provider}:${id ?? createHash('sha256').update(spelled).digest('hex')}`;
  }

  /** A verified JWT (Apple's, Google's event tokens), its signature decoded as jose decoded it to verify it, and encoded again. */
  private static jwtSpelled(token: string): string {
    const cut = token.lastIndexOf('.') + 1;
    return token.slice(0, cut) + Buffer.from(base64url.decode(token.slice(cut))).toString('base64url');
  }

  /**
   * Ends every session of the user because its provider said so, and tells the app's backend (session.revoked,
   * reason provider): the app returns to a signed-out state.
   */
  private static async endSessions(trx: Storage, userId: number, detail: string, linkId?: number): Promise<void> {
    // The provider's ID tokens issued until now no longer sign in through this link (core/replay.ts).
    if (linkId !== undefined) await trx.links.refuseTokensIssuedBefore(linkId);
    // Nor does a merge token offered meanwhile: a merge signs in as this user.
    await trx.mergeTokens.forgetOwner(userId);
    const count = await trx.sessions.revokeAllOfUser(userId, detail);
    await trx.audit.record(
      { event: 'sessions_revoked', userId, detail: `${detail}: ${count} sessions`.slice(0, 64) },
      null,
    );
  }

  /**
   * The link of that account and its user, both rows locked (a write meanwhile is not overwritten, and a sign-in waiting
   * for them sees what this notice changes), or undefined.
   */
  private static async heldLink(trx: Storage, provider: string, uid: string) {
    const found = uid ? await trx.links.find(provider, uid) : undefined;
    const user = found && (await trx.users.lock(found.userId));
    const link = user && (await trx.links.lock(provider, uid));
    return user && link?.userId === user.id ? { user, link } : undefined;
  }

  /** The verified payload of Facebook's signed_request, or 400 invalid_request. */
  private facebookPayload(signedRequest: unknown): { userId: string; issuedAt: unknown; id: string } {
    const facebook = this.services.providers.get('facebook');
    const payload = typeof signedRequest === 'string' ? facebook.verifySignedRequest?.(signedRequest) : undefined;
    if (!payload)
      throw invalidRequest(
        "signed_request is missing, not written as base64url writes it, or not signed with this app's secret",
      );
    const userId = payload.user_id;
    if (typeof userId !== 'string' && typeof userId !== 'number')
      throw invalidRequest('signed_request names no user_id');
    // Verified, so both parts are canonical base64url, but for the signature's optional padding.
    const [signature, encodedPayload] = (signedRequest as string).split('.') as [string, string];
    return {
      userId: String(userId),
      issuedAt: payload.issued_at,
      id: ProviderCallbacks.key(
        'facebook',
        undefined,
        `${canonicalBase64url(signature)!.toString('base64url')}.${encodedPayload}`,
      ),
    };
  }

  /** Deletes the link of that Facebook account (with what it kept): the confirmation code of the request. */
  async facebookDataDeletion(signedRequest: unknown): Promise<{ confirmationCode: string }> {
    const { userId: uid, issuedAt, id } = this.facebookPayload(signedRequest);
    const confirmationCode = randomBytes(12).toString('hex');
    await this.services.storage.transaction(async (trx) => {
      // Played again: a new confirmation of the same deletion, nothing deleted twice.
      if (await this.firstTime(trx, id, issuedAt)) {
        const held = await ProviderCallbacks.heldLink(trx, 'facebook', uid);
        if (held && (await trx.links.delete(held.user.id, 'facebook', uid))) {
          await trx.audit.record(
            {
              event: 'unlinked',
              userId: held.user.id,
              provider: 'facebook',
              uid,
              detail: 'facebook data deletion request',
            },
            null,
          );
        }
        // Nor is the account kept behind a link token.
        await trx.linkTokens.forgetAccount('facebook', uid);
      }
      await trx.db
        .insertInto('provider_deletion_requests')
        .values({ confirmation_code: confirmationCode, provider: 'facebook', uid, status: 'done', requested_at: now() })
        .execute();
    });
    return { confirmationCode };
  }

  /** Records that the person removed our app on Facebook (a provider.event for the app's backend). */
  async facebookDeauthorized(signedRequest: unknown): Promise<void> {
    const { userId: uid, issuedAt, id } = this.facebookPayload(signedRequest);
    await this.services.storage.transaction(async (trx) => {
      const held =
        (await this.firstTime(trx, id, issuedAt)) && (await ProviderCallbacks.heldLink(trx, 'facebook', uid));
      if (held)
        await trx.audit.record(
          { event: 'provider_event', userId: held.user.id, provider: 'facebook', uid, detail: 'deauthorized' },
          null,
        );
    });
  }

  /**
   * Sign in with Apple's server-to-server notification: `email-disabled` / `email-enabled` (the relay address
   * stopped or resumed forwarding) are kept on the link; `consent-revoked` (the person stopped using Sign in
   * with Apple with our app) drops the link's kept tokens, which Apple has revoked, and keeps the link (the same
   * person signing in again has the same sub); `account-delete` (the Apple account is gone) removes the link.
   * Both end the user's sessions: Apple asks that the app return to a signed-out state (TN3194; sources in
   * test/fixtures/callbacks/apple/). Each is told to the app's backend (provider.event; link.removed for a deletion;
   * session.revoked). An account nobody linked is answered all the same. A notification not signed by Apple for
   * our client ids: 400 invalid_token.
   */
  async appleNotification(payload: unknown): Promise<void> {
    const apple = this.services.providers.get('apple');
    if (typeof payload !== 'string' || !apple.verifyNotification)
      throw invalidRequest('payload (the notification JWT) is required');
    const event = await apple.verifyNotification(payload);
    await this.services.storage.transaction(async (trx) => {
      if (
        !(await this.firstTime(
          trx,
          ProviderCallbacks.key('apple', event.id, ProviderCallbacks.jwtSpelled(payload)),
          event.issuedAt,
        ))
      )
        return;
      const held = await ProviderCallbacks.heldLink(trx, 'apple', event.uid);
      if (!held) return;
      const { user, link } = held;
      const about = { userId: user.id, provider: 'apple', uid: event.uid };
      if (event.type === 'account-delete' || event.type === 'account-deleted') {
        await trx.links.delete(user.id, 'apple', event.uid);
        await trx.audit.record({ event: 'unlinked', ...about, detail: 'apple account deleted' }, null);
        await ProviderCallbacks.endSessions(trx, user.id, `apple ${event.type}`);
      } else if (event.type === 'email-disabled' || event.type === 'email-enabled') {
        await trx.links.updateExtraData(
          link.id,
          { ...link.extraData, email_forwarding: event.type === 'email-enabled' },
          null,
        );
      } else if (event.type === 'consent-revoked') {
        await trx.links.forgetTokens(link.id);
        await ProviderCallbacks.endSessions(trx, user.id, 'apple consent-revoked', link.id);
      }
      await trx.audit.record({ event: 'provider_event', ...about, detail: `apple ${event.type}`.slice(0, 64) }, null);
    });
  }

  /**
   * Google Cross-Account Protection (RISC): a security event token about a Google account. `sessions-revoked`,
   * `tokens-revoked` and `account-disabled` for `hijacking` end every session of the linked user (Google: the
   * account may be in other hands); every event is audited and told (provider.event; session.revoked). Not signed
   * by Google: 400 invalid_token. Signed by Google for another client id of the project (its Android or iOS
   * client): acknowledged and ignored ('ignored'), or Google records failed deliveries.
   */
  async googleSecurityEvent(token: unknown): Promise<'done' | 'ignored'> {
    const google = this.services.providers.get('google');
    if (typeof token !== 'string' || !google.verifySecurityEvent)
      throw invalidRequest('the body must be the security event token');
    const event = await google.verifySecurityEvent(token);
    if (event.forAnotherClient) return 'ignored';
    const endSessions =
      event.type === 'sessions-revoked' ||
      event.type === 'tokens-revoked' ||
      (event.type === 'account-disabled' && event.reason === 'hijacking');
    const detail = `google ${event.type}${event.reason ? ` ${event.reason}` : ''}`.slice(0, 64);
    await this.services.storage.transaction(async (trx) => {
      if (
        !(await this.firstTime(
          trx,
          ProviderCallbacks.key('google', event.id, ProviderCallbacks.jwtSpelled(token)),
          event.issuedAt,
        ))
      )
        return;
      const held = await ProviderCallbacks.heldLink(trx, 'google', event.uid);
      if (!held) return;
      await trx.audit.record(
        { event: 'provider_event', userId: held.user.id, provider: 'google', uid: event.uid, detail },
        null,
      );
      if (endSessions) await ProviderCallbacks.endSessions(trx, held.user.id, detail, held.link.id);
    });
    return 'done';
  }

  /** A data-deletion request's status, or 404 deletion_request_not_found. */
  async deletionStatus(confirmationCode: string) {
    const row = await this.services.storage.db
      .selectFrom('provider_deletion_requests')
      .selectAll()
      .where('confirmation_code', '=', confirmationCode)
      .executeTakeFirst();
    if (!row) throw apiError('deletion_request_not_found');
    return {
      confirmationCode: row.confirmation_code,
      provider: row.provider,
      status: row.status,
      requestedAt: new Date(row.requested_at).toISOString(),
    };
  }
}
