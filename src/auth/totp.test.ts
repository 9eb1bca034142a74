import { Secret, TOTP } from 'otpauth';
import { describe, expect, it } from 'vitest';
import { newTotpSecret, totpCode, totpStep, totpUri } from './totp.js';

// RFC 6238, Appendix B: the SHA-1 test vectors (seed "12345678901234567890", 30-second steps, 8 digits).
// https://www.rfc-editor.org/rfc/rfc6238#appendix-B
const RFC_6238_SHA1 = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
] as const;
const SEED_BASE32 = Secret.fromLatin1('12345678901234567890').base32;

describe('TOTP (RFC 6238)', () => {
  it('the library computes the RFC test vectors', () => {
    for (const [seconds, code] of RFC_6238_SHA1) {
      expect(
        TOTP.generate({
          secret: Secret.fromBase32(SEED_BASE32),
          algorithm: 'SHA1',
          digits: 8,
          period: 30,
          timestamp: seconds * 1000,
        }),
      ).toBe(code);
    }
  });

  it('our 6-digit codes are the vectors truncated (mod 10^6), and each verifies to its own step', () => {
    for (const [seconds, code] of RFC_6238_SHA1) {
      expect(totpCode(SEED_BASE32, seconds * 1000)).toBe(code.slice(2));
      expect(totpStep(SEED_BASE32, code.slice(2), seconds * 1000)).toBe(Math.floor(seconds / 30));
    }
  });

  it('accepts the step before and after (clock drift), nothing further', () => {
    const at = 1_234_567_890_000;
    expect(totpStep(SEED_BASE32, totpCode(SEED_BASE32, at - 30_000), at)).toBe(Math.floor(at / 30_000) - 1);
    expect(totpStep(SEED_BASE32, totpCode(SEED_BASE32, at + 30_000), at)).toBe(Math.floor(at / 30_000) + 1);
    expect(totpStep(SEED_BASE32, totpCode(SEED_BASE32, at - 90_000), at)).toBeUndefined();
  });

  it('refuses a wrong, short or non-numeric code', () => {
    const secret = newTotpSecret();
    const code = totpCode(secret);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    expect(totpStep(secret, wrong)).toBeUndefined();
    expect(totpStep(secret, code.slice(1))).toBeUndefined();
    expect(totpStep(secret, 'abcdef')).toBeUndefined();
  });

  it('a new secret is 160 bits, and its URI is what authenticator apps read', () => {
    const secret = newTotpSecret();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    const uri = new URL(totpUri(secret, 'alice', 'social-link'));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(uri.searchParams.get('secret')).toBe(secret);
    expect(uri.searchParams.get('issuer')).toBe('social-link');
    expect(uri.searchParams.get('digits')).toBe('6');
    expect(uri.searchParams.get('period')).toBe('30');
  });
});
