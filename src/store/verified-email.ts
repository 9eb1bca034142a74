/** An e-mail as links are matched by it: trimmed, lower-cased. */
export const normalizeEmail = (email: string): string => email.trim().toLowerCase();

/** RFC 5321's longest address; a longer one is no address (and no column holds it). */
const MAX_EMAIL_LENGTH = 320;
const kept = (email: string): string | undefined => {
  const normal = normalizeEmail(email);
  return normal.length <= MAX_EMAIL_LENGTH ? normal : undefined;
};

/**
 * The verified e-mail a link's kept facts (extra_data) show, for the links made before the verified_email
 * column (migration 0011): the providers' own rules, as the provider modules apply them to new sign-ins
 * (sources: test/fixtures/providers/email-trust.json).
 */
export function verifiedEmailOfKeptFacts(provider: string, extraData: unknown): string | undefined {
  if (typeof extraData !== 'object' || extraData === null) return undefined;
  const { email, email_verified: verified } = extraData as { email?: unknown; email_verified?: unknown };
  if (typeof email !== 'string' || !email.includes('@')) return undefined;
  // GitHub's kept e-mail is the primary verified one (/user/emails); X returns an e-mail only once verified.
  let said = provider === 'github' || provider === 'twitter' ? true : verified === true || verified === 'true';
  if (provider === 'google') said &&= googleIsAuthoritative(email, (extraData as { hd?: unknown }).hd);
  return said ? kept(email) : undefined;
}

/** The e-mail the provider says it verified, as links keep it; undefined when it said nothing of the kind. */
export function verifiedEmailOf(identity: {
  details: { email?: string; email_verified?: boolean };
}): string | undefined {
  const { email, email_verified: verified } = identity.details;
  return email && verified ? kept(email) : undefined;
}

/**
 * Google vouches for an address it marks verified only when it is a Gmail address or the account is in a
 * Google Workspace domain (`hd`); another address was checked once, when the account was made, and its
 * mailbox may have changed hands since (Google's "Verify the Google ID token" guide).
 */
export function googleIsAuthoritative(email: string, hd: unknown): boolean {
  return normalizeEmail(email).endsWith('@gmail.com') || (typeof hd === 'string' && hd !== '');
}
