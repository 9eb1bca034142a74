import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { IdTokenProvider, MintIdTokenInput } from '@social-link/emulator';
import { loadConfig } from '../../src/config/config.js';
import { call, databaseKinds, expectError, startStack, type Stack } from '../helpers.js';
import { linkThenSignIn, linkToGuest, providerRequests, refusedSignIn, sharedStack } from './flows.js';

// Every provider whose app sends an OpenID Connect ID token (Google, Apple, Facebook Limited Login, an OpenID Connect
// issuer), through HTTP against the emulator: one table of what each must accept and refuse; then what they share: the
// clock tolerance, the JWKS cache, and keys that cannot be fetched.

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

describe.each(databaseKinds())('every provider on %s', (kind) => {
  const stack = sharedStack(kind);

  // The providers whose app sends an OpenID Connect ID token, verified here against the provider's keys.
  const idTokenProviders: Array<{
    name: string;
    emulator: IdTokenProvider;
    audience: () => string;
    nonce: (raw: string) => string;
  }> = [
    { name: 'google', emulator: 'google', audience: () => stack.apps.google.clientIds[0]!, nonce: (raw) => raw },
    { name: 'apple', emulator: 'apple', audience: () => stack.apps.apple.clientIds[0]!, nonce: sha256 },
    { name: 'facebook', emulator: 'facebook', audience: () => stack.apps.facebook.appId, nonce: (raw) => raw },
    {
      name: 'oidc:example',
      emulator: 'oidc:example',
      audience: () => stack.apps.oidc.clientIds[0]!,
      nonce: (raw) => raw,
    },
  ];

  describe.each(idTokenProviders)('$name ID tokens', ({ name, emulator, audience, nonce }) => {
    it('associate, then auth finds the user from a new token of the same account', async () => {
      const first = await stack.emulator.mintIdToken(emulator, { email: 'ada@example.com', name: 'Ada' });
      const second = await stack.emulator.mintIdToken(emulator, { sub: first.sub });
      const { uid } = await linkThenSignIn(stack, name, { id_token: first.id_token }, { id_token: second.id_token });
      expect(uid).toBe(first.sub);
    });

    it('binds on aud alone: any authorized party (azp) is accepted when aud is ours', async () => {
      const token = await stack.emulator.mintIdToken(emulator, {
        aud: audience(),
        azp: 'an-android-client-id-nobody-configured',
      });
      await linkThenSignIn(stack, name, { id_token: token.id_token });
    });

    it('checks the nonce when the app sends one', async () => {
      const token = await stack.emulator.mintIdToken(emulator, { nonce: nonce('raw-nonce-123') });
      await linkThenSignIn(stack, name, { id_token: token.id_token, nonce: 'raw-nonce-123' });
      await refusedSignIn(stack, name, { id_token: token.id_token, nonce: 'another-nonce' }, /nonce/);
    });

    const attacks: Array<[string, MintIdTokenInput | 'several-audiences', RegExp]> = [
      ['a token for another app (aud)', { aud: 'someone-elses-client-id' }, /another app/],
      ['a token of another issuer', { iss: 'https://evil.example.com' }, /issuer/],
      ['an expired token', { expires_in: -120 }, /expired/],
      ['a token issued in the future', { iat_offset: 3600 }, /iat/],
      ['alg none', { forge: 'none_alg' }, /algorithm|malformed/],
      ['HS256 signed with the public key (alg confusion)', { forge: 'hs256_with_public_key' }, /algorithm/],
      ['a key that is not published (unknown kid)', { forge: 'unknown_kid' }, /unknown key/],
      ['a bad signature', { forge: 'bad_signature' }, /signature/],
      ["another key claiming the published key's kid", { forge: 'foreign_key' }, /signature/],
      // Ours among several audiences, with one we do not trust (OpenID Connect Core 3.1.3.7, errata set 2).
      ['a token that also names an audience we do not trust', 'several-audiences', /audience that is not ours/],
    ];
    it.each(attacks)('refuses %s', async (_attack, attack, detail) => {
      const input = attack === 'several-audiences' ? { aud: ['someone-elses-client-id', audience()] } : attack;
      const token = await stack.emulator.mintIdToken(emulator, input);
      await refusedSignIn(stack, name, { id_token: token.id_token }, detail);
      const { answer } = await linkToGuest(stack, name, { id_token: token.id_token });
      expectError(answer, 400, 'invalid_token');
    });
  });
});

describe('SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS', () => {
  let strict: Stack;
  let lenient: Stack;
  beforeAll(async () => {
    [strict, lenient] = await Promise.all([
      startStack('sqlite'),
      startStack('sqlite', { SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS: '300' }),
    ]);
  });
  afterAll(() => Promise.all([strict.close(), lenient.close()]));

  it("60 s by default; 300 s (what Google's own library allows) when set: a phone or a provider two minutes off signs in", async () => {
    for (const [stack, expected] of [
      [strict, 400],
      [lenient, 404],
    ] as const) {
      for (const skew of [{ iat_offset: 120 }, { expires_in: -120 }]) {
        const token = await stack.emulator.mintIdToken('google', skew);
        const answer = await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: token.id_token } });
        expect(answer.status, `${JSON.stringify(skew)} ${JSON.stringify(answer.body)}`).toBe(expected);
      }
    }
    // Past the tolerance, refused all the same.
    const late = await lenient.emulator.mintIdToken('google', { expires_in: -400 });
    expectError(
      await call(lenient.api, 'POST', '/api/auth/google/', { body: { id_token: late.id_token } }),
      400,
      'invalid_token',
    );
  });

  it('is a number of seconds up to 600', () => {
    expect(() => loadConfig({ SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS: '601' })).toThrow(
      /SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS/,
    );
    expect(() => loadConfig({ SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS: 'lots' })).toThrow(
      /SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS/,
    );
  });
});

describe('JWKS caching', () => {
  const stack = sharedStack('sqlite');
  afterAll(() => vi.useRealTimers());

  const googleFetches = () => providerRequests(stack, 'google');
  const signIn = async (idToken: string) => (await linkToGuest(stack, 'google', { id_token: idToken })).answer;

  it('verifies ID tokens with no call to the provider once the keys are cached', async () => {
    expect((await signIn((await stack.emulator.mintIdToken('google')).id_token)).status).toBe(200); // keys cached (or warmed up)
    const before = await googleFetches();
    for (let i = 0; i < 10; i++)
      expect((await signIn((await stack.emulator.mintIdToken('google')).id_token)).status).toBe(200);
    expect(await googleFetches()).toBe(before);
  });

  it('a flood of unknown kids refetches the keys at most once per interval', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 31_000); // past the refetch interval since the last fetch
    const before = await googleFetches();
    const forged = await Promise.all(
      Array.from({ length: 20 }, () => stack.emulator.mintIdToken('google', { forge: 'unknown_kid' })),
    );
    const answers = await Promise.all(
      forged.map((token) => call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: token.id_token } })),
    );
    for (const answer of answers) expectError(answer, 400, 'invalid_token');
    expect((await googleFetches()) - before).toBeLessThanOrEqual(1);
    vi.useRealTimers();
  });

  it('picks up rotated keys (one refetch on the new kid)', async () => {
    await stack.emulator.rotateKeys('google', { retire_old: true });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 62_000);
    const token = await stack.emulator.mintIdToken('google');
    expect((await signIn(token.id_token)).status).toBe(200);
    vi.useRealTimers();
  });

  it('survives a JWKS outage with the cached keys, even once they are stale', async () => {
    await stack.emulator.setFault('google', { mode: 'error_500' });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 2 * 3_600_000); // past Google's max-age: a background refresh fails
    const token = await stack.emulator.mintIdToken('google', {
      claims: { iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 },
    });
    expect((await signIn(token.id_token)).status).toBe(200);
    expect((await signIn(token.id_token)).status).toBe(409); // linked by the first: the point is it is not a 502
    vi.useRealTimers();
    await stack.emulator.clearFaults();
  });
});

describe('a provider whose keys were never fetched and cannot be', () => {
  const stack = sharedStack('sqlite', { SOCIAL_AUTH_GOOGLE_JWKS_URL: 'http://127.0.0.1:1/certs' });

  it('answers 502 provider_unavailable, not invalid_token', async () => {
    const token = await stack.emulator.mintIdToken('google');
    expectError(
      await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: token.id_token } }),
      502,
      'provider_unavailable',
    );
  });
});
