/**
 * What the store needs of e-mails: how links keep and match them. Which e-mails a provider vouches for is its
 * declaration's rule (src/providers/, `vouchesFor`), applied when the identity is made; links made before
 * migration 0011 were back-filled by that migration's frozen copy of the rules (store/migrations.ts).
 */

/** An e-mail as links are matched by it: trimmed, lower-cased. */
export const normalizeEmail = (email: string): string => email.trim().toLowerCase();

/** RFC 5321's longest address; a longer one is no address (and no column holds it). */
const MAX_EMAIL_LENGTH = 320;
const kept = (email: string): string | undefined => {
  const normal = normalizeEmail(email);
  return normal.length <= MAX_EMAIL_LENGTH ? normal : undefined;
};

/** The e-mail the provider says it verified, as links keep it; undefined when it said nothing of the kind. */
export function verifiedEmailOf(identity: {
  details: { email?: string; email_verified?: boolean };
}): string | undefined {
  const { email, email_verified: verified } = identity.details;
  return email && verified ? kept(email) : undefined;
}
