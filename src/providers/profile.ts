import type { SocialIdentity } from './types.js';

/**
 * When is an account's profile read? A provider whose token check does not give the profile (Facebook's
 * debug_token, GitHub's token check) proves the token with one call and reads the profile with a second
 * one only when it is needed: a new link, a new user, or a kept profile older than the configured age.
 * A sign-in of a linked account with a fresh profile then costs one provider call instead of two.
 */

/** The identity with its profile read (a no-op when it already has it). The read time is kept in extra_data. */
export async function withProfile(identity: SocialIdentity): Promise<SocialIdentity> {
  if (!identity.loadProfile) return identity;
  const profile = await identity.loadProfile();
  // Assigned, not spread: see mergeFacts.
  const extraData = Object.assign({}, identity.extraData, profile.extraData, {
    profile_read_at: Math.floor(Date.now() / 1000),
  });
  return Object.assign({}, identity, {
    details: Object.assign({}, identity.details, profile.details),
    extraData,
    keptFacts: identity.keptFacts?.filter((key) => !(key in extraData)),
    loadProfile: undefined,
  });
}

/**
 * The identity of a sign-in that did not read the profile: its details come from the profile kept on the
 * link (pipeline steps see a name and an e-mail as usual), and it can no longer call the provider.
 */
export function withKeptProfile(
  identity: SocialIdentity,
  link: { extraData: Record<string, unknown>; verifiedEmail: string | null } | undefined,
): SocialIdentity {
  const kept = link?.extraData ?? {};
  const text = (key: string) => (typeof kept[key] === 'string' && kept[key] !== '' ? (kept[key] as string) : undefined);
  const name = text('name');
  const email = text('email');
  const verified = email ? link?.verifiedEmail === email.trim().toLowerCase() : undefined; // as links keep it
  // What this sign-in did read wins; what it did not (undefined) is the kept profile's.
  const details: Record<string, unknown> = {
    username: name ?? text('login'),
    email,
    email_verified: verified,
    fullname: name,
  };
  for (const [key, value] of Object.entries(identity.details)) if (value !== undefined) details[key] = value;
  return { ...identity, details: details as SocialIdentity['details'], loadProfile: undefined };
}

/**
 * The facts to keep on a link after this sign-in: what it read, and the kept facts it did not read.
 * Assigned, not spread ({ ...unread, ...read }), as on every sign-in's path: on Node 20 (V8 11) each key added to an
 * object a spread made (a second spread, a property after it) gives that object a new hidden class, ~1 µs each
 * time; assigned to a new object, keys follow hidden classes V8 keeps. The keys are ours (the providers' mappings),
 * never `__proto__`, which assignment would take for the prototype.
 */
export function mergeFacts(
  kept: Record<string, unknown>,
  identity: Pick<SocialIdentity, 'extraData' | 'keptFacts'>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const key of identity.keptFacts ?? []) if (key in kept) merged[key] = kept[key];
  return Object.assign(merged, identity.extraData);
}

/** Is the profile kept on a link older than `maxAgeSeconds` (or never read)? */
export function profileIsStale(extraData: Record<string, unknown>, maxAgeSeconds: number): boolean {
  const readAt = extraData.profile_read_at;
  return typeof readAt !== 'number' || Date.now() / 1000 - readAt >= maxAgeSeconds;
}
