import { describe, expect, it } from 'vitest';
import { factRows } from './facts.js';

describe("a link's kept facts as the console shows them", () => {
  it('shows Unix times of time-named keys as UTC dates with the stored number, and every other fact as text', () => {
    expect(
      factRows({
        expires_at: 1_767_225_600,
        profile_read_at: 1_767_225_661,
        name: 'Ada',
        email: null,
        scopes: ['email', 'public_profile'],
        limited_login: true,
        picture: { url: 'x' },
      }),
    ).toEqual([
      { name: 'expires_at', value: '2026-01-01 00:00:00 UTC', stored: '1767225600' },
      { name: 'profile_read_at', value: '2026-01-01 00:01:01 UTC', stored: '1767225661' },
      { name: 'name', value: 'Ada' },
      { name: 'email', value: '-' },
      { name: 'scopes', value: 'email, public_profile' },
      { name: 'limited_login', value: 'true' },
      { name: 'picture', value: '{"url":"x"}' },
    ]);
  });

  it('leaves numbers alone that are not Unix seconds, or under a key that is not a time', () => {
    expect(factRows({ expires_at: 0, id: 1_767_225_600, auth_time: 1_767_225_600_000 })).toEqual([
      { name: 'expires_at', value: '0' },
      { name: 'id', value: '1767225600' },
      { name: 'auth_time', value: '1767225600000' },
    ]);
  });
});
