import { Secret, TOTP } from 'otpauth';

/**
 * Time-based one-time passwords (RFC 6238) for staff sign-in, with the otpauth library: HMAC-SHA1, 6 digits,
 * 30-second steps — what every authenticator app reads from an otpauth:// URI. A code of the step before or
 * after is accepted (clock drift); the caller remembers the step used, so that a code works once.
 */
const PARAMS = { algorithm: 'SHA1', digits: 6, period: 30 } as const;

/** A new secret (160 random bits, as RFC 4226 recommends), base32 as authenticator apps take it. */
export const newTotpSecret = (): string => new Secret({ size: 20 }).base32;

/** The otpauth:// URI an authenticator app reads (from the enrolment QR code). */
export const totpUri = (secret: string, account: string, issuer: string): string =>
  new TOTP({ ...PARAMS, issuer, label: account, secret: Secret.fromBase32(secret) }).toString();

/** The code of this moment (dev mode's helper command and tests). */
export const totpCode = (secret: string, at = Date.now()): string =>
  TOTP.generate({ ...PARAMS, secret: Secret.fromBase32(secret), timestamp: at });

/** The time step the code belongs to (now, or one step before or after), or undefined when it is wrong. */
export function totpStep(secret: string, code: string, at = Date.now()): number | undefined {
  if (!/^\d{6}$/.test(code)) return undefined;
  const delta = TOTP.validate({ ...PARAMS, token: code, secret: Secret.fromBase32(secret), timestamp: at, window: 1 });
  return delta === null ? undefined : TOTP.counter({ period: PARAMS.period, timestamp: at }) + delta;
}
