import type { Client, Storage, User } from '../store/storage.js';
import { UserDisabledError } from '../lib/errors.js';

/**
 * A disabled user (an operator's decision, core/admin.ts) opens no session and links nothing: every sign-in and
 * link checks the user row it holds, inside its transaction, so nothing of the attempt is kept (no session, no
 * spent ID token). The refusal, 403 user_disabled, is kept in the user's audit log after the rollback so that the
 * operator sees the attempts.
 */
export function refuseIfDisabled(user: User): void {
  if (user.disabledAt) throw new UserDisabledError(user.id);
}

/** Runs a sign-in or link; its refusal for a disabled user is recorded on that user's log (with the account it tried). */
export async function recordingDisabled<T>(
  storage: Storage,
  client: Client,
  about: { provider?: string; uid?: string },
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof UserDisabledError)
      await storage.audit.record(
        { event: 'refused', userId: error.userId, provider: about.provider, uid: about.uid, detail: 'user_disabled' },
        client,
      );
    throw error;
  }
}
