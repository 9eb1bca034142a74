/**
 * What makes two usernames the same: compatibility-normalised (NFKC, as Django's normalize_username) and
 * lower-cased, so that `rtalice` and `RTAlice` are one name. `users.username_key` holds it, unique.
 */
export function usernameKey(username: string): string {
  return username.normalize('NFKC').toLowerCase();
}

/**
 * The key given, when keys came (migration 0006), to a user whose name was the same as an older user's but
 * for case: both keep their accounts, the newer signs in with its exact spelling only. No name we accept
 * holds "#", so it is no one's key. `social-link users collisions` lists them.
 */
export const collidedUsernameKey = (id: number, username: string): string => `#${id}:${usernameKey(username)}`;

/** What operators read about such users (migrate, start-up), or undefined when there are none. */
export function caseCollisionReport(
  collisions: Array<{ id: number; username: string; sameAs?: { id: number; username: string } }>,
): string | undefined {
  if (collisions.length === 0) return undefined;
  const lines = collisions.map(
    ({ id, username, sameAs }) =>
      `  user ${id} "${username}" is the same name as user ${sameAs?.id ?? '?'} "${sameAs?.username ?? '?'}" but for case`,
  );
  return [
    `${collisions.length} username(s) were taken twice but for case before usernames were compared without case.`,
    'Each user keeps its account and signs in with its exact spelling; rename the newer to end it:',
    ...lines,
    '  social-link users rename ID NEW_USERNAME',
  ].join('\n');
}
