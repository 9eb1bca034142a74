import type { Kysely } from 'kysely';
import { now } from './rows.js';
import type { Database } from './schema.js';

/** A phone that lost an answer retries once or twice; more is someone else with the same address and agent. */
export const MAX_RETRIES = 2;

/** How the first use of an ID token went, or why a later one is refused. */
export type IdTokenUse = 'first' | 'retry' | 'replayed';

/**
 * What makes an ID token good for one sign-in only: the nonces this server issued, each used once, and the
 * ID tokens already used, each kept until it expires. Writes happen in the sign-in's transaction, so a
 * sign-in that fails (a 404, a refusal) uses nothing up.
 */
export class Proofs {
  constructor(private readonly db: Kysely<Database>) {}

  async issueNonce(nonceHash: string, expiresAt: string): Promise<void> {
    await this.db.insertInto('nonces').values({ nonce_hash: nonceHash, expires_at: expiresAt }).execute();
  }

  /** Was this nonce (by its hash) issued here, used or not? */
  async isIssuedNonce(nonceHash: string): Promise<boolean> {
    return (
      (await this.db
        .selectFrom('nonces')
        .select('nonce_hash')
        .where('nonce_hash', '=', nonceHash)
        .executeTakeFirst()) !== undefined
    );
  }

  /** Uses an issued, unexpired nonce, once; `retry`: the ID token that used it presents it again. */
  async useNonce(nonceHash: string, tokenHash: string, retry: boolean): Promise<boolean> {
    const at = now();
    const result = await this.db
      .updateTable('nonces')
      .set({ used_at: at, token_hash: tokenHash })
      .where('nonce_hash', '=', nonceHash)
      .where('expires_at', '>', at)
      .where((where) =>
        retry
          ? where.or([where('used_at', 'is', null), where('token_hash', '=', tokenHash)])
          : where('used_at', 'is', null),
      )
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * Records the use of an ID token. Used before: a retry when by the same client within `retrySeconds` of the
   * first use (a phone that lost the answer), at most MAX_RETRIES times, else a replay. Of concurrent first
   * uses the database keeps one.
   */
  async useIdToken(
    tokenHash: string,
    clientHash: string,
    expiresAt: string,
    retrySeconds: number,
  ): Promise<IdTokenUse> {
    const at = now();
    const inserted = await this.db
      .insertInto('id_token_uses')
      .values({ token_hash: tokenHash, client_hash: clientHash, used_at: at, expires_at: expiresAt })
      .onConflict((conflict) => conflict.column('token_hash').doNothing())
      .executeTakeFirst();
    if ((inserted.numInsertedOrUpdatedRows ?? 0n) > 0n) return 'first';
    if (retrySeconds === 0) return 'replayed';
    const retried = await this.db
      .updateTable('id_token_uses')
      .set((set) => ({ retries: set('retries', '+', 1) }))
      .where('token_hash', '=', tokenHash)
      .where('client_hash', '=', clientHash)
      .where('retries', '<', MAX_RETRIES)
      .where('used_at', '>=', new Date(Date.parse(at) - retrySeconds * 1000).toISOString())
      .executeTakeFirst();
    return retried.numUpdatedRows > 0n ? 'retry' : 'replayed';
  }

  /** Forgets expired nonces and ID tokens (they prove nothing any more). */
  async purge(): Promise<void> {
    const at = now();
    await this.db.deleteFrom('nonces').where('expires_at', '<', at).execute();
    await this.db.deleteFrom('id_token_uses').where('expires_at', '<', at).execute();
  }
}
