import { flag, text } from '../../lib/narrowing.js';
import { normalizeEmail } from '../../store/verified-email.js';
import type { Account } from '../define.js';

/**
 * An ID token's claims, or tokeninfo's answer (the same names, every value a string: email_verified "true"), as the
 * account social-link keeps.
 */
export const claimsAccount = (claims: Record<string, unknown>): Account => ({
  uid: String(claims.sub),
  name: text(claims, 'name'),
  email: text(claims, 'email'),
  email_verified: flag(claims.email_verified),
  first_name: text(claims, 'given_name'),
  last_name: text(claims, 'family_name'),
  extraData: {
    sub: String(claims.sub),
    email: text(claims, 'email') ?? null,
    email_verified: flag(claims.email_verified),
    name: text(claims, 'name') ?? null,
    hd: text(claims, 'hd') ?? null,
    expires_at: Number(claims.exp) || null,
  },
});

/**
 * Google vouches for an address it marks verified only when it is a Gmail address or the account is in a
 * Google Workspace domain (`hd`); another address was checked once, when the account was made, and its
 * mailbox may have changed hands since (Google's "Verify the Google ID token" guide).
 */
export const vouchesFor = (email: string, { hd }: Record<string, unknown>): boolean =>
  normalizeEmail(email).endsWith('@gmail.com') || (typeof hd === 'string' && hd !== '');
