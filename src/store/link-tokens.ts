import type { Kysely, Selectable } from 'kysely';
import { now } from './rows.js';
import type { Database } from './schema.js';

/** A proven social account waiting to be linked to the user whose verified e-mail it shares. */
export interface PendingLink {
  userId: number;
  provider: string;
  uid: string;
  /** The proven identity's details and extra data, as JSON. */
  identity: string;
  sealedTokens: string | null;
}

const toPending = (row: Selectable<Database['link_tokens']>): PendingLink => ({
  userId: row.user_id,
  provider: row.provider,
  uid: row.uid,
  identity: row.identity,
  sealedTokens: row.sealed_tokens,
});

/** The link tokens of core/email-linking.ts, by their SHA-256: single use, until they expire. */
export class LinkTokens {
  constructor(private readonly db: Kysely<Database>) {}

  async issue(tokenHash: string, pending: PendingLink, expiresAt: string): Promise<void> {
    await this.db
      .insertInto('link_tokens')
      .values({
        token_hash: tokenHash,
        user_id: pending.userId,
        provider: pending.provider,
        uid: pending.uid,
        identity: pending.identity,
        sealed_tokens: pending.sealedTokens,
        created_at: now(),
        expires_at: expiresAt,
      })
      .execute();
  }

  /** The pending link of an unexpired token, left as it is, or undefined. */
  async find(tokenHash: string): Promise<PendingLink | undefined> {
    const row = await this.db
      .selectFrom('link_tokens')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .where('expires_at', '>', now())
      .executeTakeFirst();
    return row && toPending(row);
  }

  /** The pending link of an unexpired token, used up (in the caller's transaction), or undefined. */
  async use(tokenHash: string): Promise<PendingLink | undefined> {
    const row = await this.db
      .deleteFrom('link_tokens')
      .where('token_hash', '=', tokenHash)
      .where('expires_at', '>', now())
      .returningAll()
      .executeTakeFirst();
    return row && toPending(row);
  }

  /** Removes every token of this account (it is linked now); their grants are not revoked: see revokeUnlinkedGrants. */
  async forgetAccount(provider: string, uid: string): Promise<void> {
    await this.db.deleteFrom('link_tokens').where('provider', '=', provider).where('uid', '=', uid).execute();
  }

  /** Removes the user's tokens and answers them (the user is being deleted: their kept provider tokens are to be revoked). */
  async takeOfUser(userId: number): Promise<PendingLink[]> {
    const rows = await this.db.deleteFrom('link_tokens').where('user_id', '=', userId).returningAll().execute();
    return rows.map(toPending);
  }

  /** Removes the expired tokens and answers them: their kept provider tokens are to be revoked. */
  async takeExpired(): Promise<PendingLink[]> {
    const rows = await this.db.deleteFrom('link_tokens').where('expires_at', '<=', now()).returningAll().execute();
    return rows.map(toPending);
  }
}
