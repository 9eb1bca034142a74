import { apiError } from '../lib/errors.js';
import type { ActedBy, Client, User } from '../store/storage.js';
import type { Services } from './services.js';

/** Who unlinks, and whether the user keeps a way in without the link (asked under the user's lock). */
export interface UnlinkTerms {
  client: Client | null;
  /** A password, the host app's own answer given beforehand; an operator may force it. */
  hasOtherWayIn(user: User): boolean;
  detail?: string;
  by?: ActedBy;
}

/**
 * Unlinks one of the user's accounts, refusing to remove the last way in of a user who has no other; kept
 * provider tokens are revoked after. The app's own request, the admin use case and the CLI all unlink here.
 */
export async function unlinkAccount(
  services: Services,
  userId: number,
  provider: string,
  uid: string,
  how: UnlinkTerms,
): Promise<void> {
  const removed = await services.storage.transaction(async (trx) => {
    // The lock makes concurrent unlinks of one user's last two links take turns.
    const user = await trx.users.lock(userId);
    const links = await trx.links.ofUser(userId);
    if (!user || !links.some((link) => link.provider === provider && link.uid === uid))
      throw apiError('association_not_found');
    if (links.length === 1 && !how.hasOtherWayIn(user)) throw apiError('last_login_method');
    const link = await trx.links.delete(userId, provider, uid);
    await trx.audit.record({ event: 'unlinked', userId, provider, uid, detail: how.detail, ...how.by }, how.client);
    return link;
  });
  await services.revokeKept(removed);
}
