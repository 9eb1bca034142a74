import { describe, expect, it } from 'vitest';
import { tokenClaims, type Claims } from './claims.js';

// Claims as a row holds them: JSON text, parsed (a hand-edited row may hold anything).
const row = (json: string) => JSON.parse(json) as Claims;

describe("tokenClaims: an access token's custom claims", () => {
  it("are the user's, with the session's over them", () => {
    expect(tokenClaims(row('{"role":"a","plan":"free"}'), row('{"plan":"pro"}'))).toEqual({ role: 'a', plan: 'pro' });
    const user = row('{"role":"a"}');
    expect(tokenClaims(user, undefined)).toBe(user);
    expect(tokenClaims(user, {})).toBe(user);
  });

  it('never carry a reserved name, whatever a row holds', () => {
    expect(tokenClaims(row('{"role":"a","sub":"9","iat":1}'), row('{"exp":2,"plan":"pro"}'))).toEqual({
      role: 'a',
      plan: 'pro',
    });
  });

  it('drop a __proto__ a row holds: no prototype set, no iat inherited by the signed payload', () => {
    for (const claims of [
      tokenClaims(row('{"role":"a","__proto__":{"iat":1}}'), undefined),
      tokenClaims(row('{"role":"a"}'), row('{"__proto__":{"iat":1}}')),
    ]) {
      expect(claims).toEqual({ role: 'a' });
      expect(Object.getPrototypeOf(claims)).toBe(Object.prototype);
      // As Tokens.pairOf builds the payload it signs.
      const payload = Object.assign({}, claims, { sub: '1' }) as Record<string, unknown>;
      expect(payload.iat).toBeUndefined();
    }
  });
});
