import type { Kysely } from 'kysely';
import { now } from './rows.js';
import type { Database } from './schema.js';

export interface MergeClaim {
  guestId: number;
  ownerId: number;
  provider: string;
  uid: string;
}

/** The merge tokens of core/guest-merge.ts, by their SHA-256: single use, until they expire. */
export class MergeTokens {
  constructor(private readonly db: Kysely<Database>) {}

  async issue(tokenHash: string, claim: MergeClaim, expiresAt: string): Promise<void> {
    await this.db
      .insertInto('merge_tokens')
      .values({
        token_hash: tokenHash,
        guest_id: claim.guestId,
        owner_id: claim.ownerId,
        provider: claim.provider,
        uid: claim.uid,
        created_at: now(),
        expires_at: expiresAt,
      })
      .execute();
  }

  /** The claim of an unexpired token, left as it is (read before taking the users' rows), or undefined. */
  async find(tokenHash: string): Promise<MergeClaim | undefined> {
    const row = await this.db
      .selectFrom('merge_tokens')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .where('expires_at', '>', now())
      .executeTakeFirst();
    return row && { guestId: row.guest_id, ownerId: row.owner_id, provider: row.provider, uid: row.uid };
  }

  /** The claim of an unexpired token, used up (in the caller's transaction), or undefined. */
  async use(tokenHash: string): Promise<MergeClaim | undefined> {
    const row = await this.db
      .deleteFrom('merge_tokens')
      .where('token_hash', '=', tokenHash)
      .where('expires_at', '>', now())
      .returningAll()
      .executeTakeFirst();
    return row && { guestId: row.guest_id, ownerId: row.owner_id, provider: row.provider, uid: row.uid };
  }

  /** The merge tokens that would sign in as this user: gone (its provider ended its sessions). */
  async forgetOwner(ownerId: number): Promise<void> {
    await this.db.deleteFrom('merge_tokens').where('owner_id', '=', ownerId).execute();
  }

  async purge(): Promise<void> {
    await this.db.deleteFrom('merge_tokens').where('expires_at', '<=', now()).execute();
  }
}
