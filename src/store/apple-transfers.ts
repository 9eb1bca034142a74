import type { Kysely, Selectable } from 'kysely';
import { now } from './rows.js';
import type { Database } from './schema.js';

export type AppleTransfer = Selectable<Database['apple_transfers']>;

/** The rows of a Sign in with Apple team transfer (core/apple-transfer.ts), one per Apple link, by its old sub. */
export class AppleTransfers {
  constructor(private readonly db: Kysely<Database>) {}

  /** Apple links after `after` (by uid) with no transfer identifier for this target yet (or a failed attempt), not moved already. */
  async linksToExport(target: string, after: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('social_associations as link')
      .leftJoin('apple_transfers as transfer', 'transfer.old_sub', 'link.uid')
      .select('link.uid')
      .where('link.provider', '=', 'apple')
      .where('link.uid', '>', after)
      .where((where) =>
        where.or([
          where('transfer.old_sub', 'is', null),
          where('transfer.status', '=', 'failed'),
          where('transfer.target_team', '!=', target),
        ]),
      )
      // A link moved to the new team's id already is the new team's: nothing to export.
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('apple_transfers as moved').select('moved.old_sub').whereRef('moved.new_sub', '=', 'link.uid'),
          ),
        ),
      )
      .orderBy('link.uid')
      .limit(limit)
      .execute();
    return rows.map((row) => row.uid);
  }

  /** Records the outcome of one export: the transfer identifier, or why there is none. */
  async exported(oldSub: string, target: string, outcome: { transferSub: string } | { error: string }): Promise<void> {
    const values =
      'transferSub' in outcome
        ? { transfer_sub: outcome.transferSub, status: 'exported', error: null }
        : { transfer_sub: null, status: 'failed', error: outcome.error };
    await this.db
      .insertInto('apple_transfers')
      .values({ old_sub: oldSub, target_team: target, new_sub: null, updated_at: now(), ...values })
      .onConflict((conflict) =>
        conflict.column('old_sub').doUpdateSet({ target_team: target, new_sub: null, updated_at: now(), ...values }),
      )
      .execute();
  }

  /** Exported rows not imported yet, after `after` (by old sub). */
  async toImport(after: string, limit: number): Promise<AppleTransfer[]> {
    return this.db
      .selectFrom('apple_transfers')
      .selectAll()
      .where('status', '=', 'exported')
      .where('old_sub', '>', after)
      .orderBy('old_sub')
      .limit(limit)
      .execute();
  }

  async byTransferSub(transferSub: string): Promise<AppleTransfer | undefined> {
    return this.db.selectFrom('apple_transfers').selectAll().where('transfer_sub', '=', transferSub).executeTakeFirst();
  }

  async imported(oldSub: string, newSub: string): Promise<void> {
    await this.db
      .updateTable('apple_transfers')
      .set({ new_sub: newSub, status: 'imported', error: null, updated_at: now() })
      .where('old_sub', '=', oldSub)
      .execute();
  }

  async importFailed(oldSub: string, error: string): Promise<void> {
    await this.db
      .updateTable('apple_transfers')
      .set({ error, updated_at: now() })
      .where('old_sub', '=', oldSub)
      .execute();
  }

  async errorOf(oldSub: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('apple_transfers')
      .select('error')
      .where('old_sub', '=', oldSub)
      .executeTakeFirst();
    return row?.error ?? undefined;
  }

  /** How many rows are in each status. */
  async counts(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('apple_transfers')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('status')
      .execute();
    return Object.fromEntries(rows.map((row) => [row.status, Number(row.n)]));
  }
}
