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
  return {
    ...identity,
    details: { ...identity.details, ...profile.details },
    extraData: { ...identity.extraData, ...profile.extraData, profile_read_at: Math.floor(Date.now() / 1000) },
    loadProfile: undefined,
  };
}

/** Is the profile kept on a link older than `maxAgeSeconds` (or never read)? */
export function profileIsStale(extraData: Record<string, unknown>, maxAgeSeconds: number): boolean {
  const readAt = extraData.profile_read_at;
  return typeof readAt !== 'number' || Date.now() / 1000 - readAt >= maxAgeSeconds;
}
