import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { IdTokenProvider, MintIdTokenInput } from '@social-link/emulator';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

describe.each(databaseKinds())('every provider on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  /** Links the account behind `body` to a new guest, then signs in with `again` (a new phone's token). */
  async function linkThenSignIn(provider: string, body: Record<string, string>, again: Record<string, string> = body) {
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', `/api/associate/${provider}/`, { token: user.access_token, body });
    expect(linked.status, JSON.stringify(linked.body)).toBe(200);
    expect(linked.body.association.created).toBe(true);
    const signedIn = await call(stack.api, 'POST', `/api/auth/${provider}/`, { body: again });
    expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
    expect(signedIn.body.id).toBe(user.id);
    return { user, uid: linked.body.association.uid as string };
  }

  const refused = async (provider: string, body: Record<string, string>, detail?: RegExp) => {
    const answer = await call(stack.api, 'POST', `/api/auth/${provider}/`, { body });
    expectError(answer, 400, 'invalid_token');
    if (detail) expect(answer.body.detail).toMatch(detail);
  };

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
      const { uid } = await linkThenSignIn(name, { id_token: first.id_token }, { id_token: second.id_token });
      expect(uid).toBe(first.sub);
    });

    it('binds on aud alone: any authorized party (azp) is accepted when aud is ours', async () => {
      const token = await stack.emulator.mintIdToken(emulator, {
        aud: audience(),
        azp: 'an-android-client-id-nobody-configured',
      });
      await linkThenSignIn(name, { id_token: token.id_token });
    });

    it('checks the nonce when the app sends one', async () => {
      const token = await stack.emulator.mintIdToken(emulator, { nonce: nonce('raw-nonce-123') });
      await linkThenSignIn(name, { id_token: token.id_token, nonce: 'raw-nonce-123' });
      await refused(name, { id_token: token.id_token, nonce: 'another-nonce' }, /nonce/);
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
      await refused(name, { id_token: token.id_token }, detail);
      const user = await guest(stack.api);
      const answer = await call(stack.api, 'POST', `/api/associate/${name}/`, {
        token: user.access_token,
        body: { id_token: token.id_token },
      });
      expectError(answer, 400, 'invalid_token');
    });
  });

  describe('google access tokens (tokeninfo)', () => {
    it('links and signs in; refuses a token of another client and an expired one', async () => {
      const token = await stack.emulator.mintGoogleAccessToken();
      await linkThenSignIn('google', { access_token: token.access_token });
      const foreign = await stack.emulator.mintGoogleAccessToken({
        client_id: 'someone-elses.apps.googleusercontent.com',
      });
      await refused('google', { access_token: foreign.access_token }, /another app/);
      await stack.emulator.expireToken(token.access_token);
      await refused('google', { access_token: token.access_token });
    });

    it('an ID token and an access token of one account find the same link', async () => {
      const idToken = await stack.emulator.mintIdToken('google');
      const user = await guest(stack.api);
      await call(stack.api, 'POST', '/api/associate/google/', {
        token: user.access_token,
        body: { id_token: idToken.id_token },
      });
      const access = await stack.emulator.mintGoogleAccessToken({ sub: idToken.sub });
      expect(
        (await call(stack.api, 'POST', '/api/auth/google/', { body: { access_token: access.access_token } })).body.id,
      ).toBe(user.id);
    });
  });

  describe('Sign in with Apple authorization codes', () => {
    it('exchanges the code, keeps the refresh token sealed, and revokes it when the link is removed', async () => {
      const minted = await stack.emulator.mintAppleCode({ email: 'hidden@privaterelay.appleid.com' });
      const { user, uid } = await linkThenSignIn(
        'apple',
        { id_token: minted.id_token, code: minted.code },
        { id_token: minted.id_token },
      );
      const row = await stack.db
        .selectFrom('social_associations')
        .selectAll()
        .where('provider', '=', 'apple')
        .where('uid', '=', uid)
        .executeTakeFirstOrThrow();
      expect(row.provider_tokens).toMatch(/^v1\./);
      const links = (await call(stack.api, 'GET', '/api/associations/', { token: user.access_token })).body;
      expect(JSON.stringify(links)).not.toContain('refresh_token');

      // Give the user a second way in, then unlink Apple: Apple must be told.
      const fb = await stack.emulator.mintFacebookToken();
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expect(
        (await call(stack.api, 'DELETE', `/api/associations/apple/${uid}/`, { token: user.access_token })).status,
      ).toBe(204);
      const { revoked } = await stack.emulator.appleRevocations();
      expect(revoked.some((entry) => entry.token_type_hint === 'refresh_token')).toBe(true);
    });

    it('deleting the account revokes the Apple refresh token', async () => {
      const minted = await stack.emulator.mintAppleCode();
      const user = await guest(stack.api);
      await call(stack.api, 'POST', '/api/associate/apple/', {
        token: user.access_token,
        body: { id_token: minted.id_token, code: minted.code },
      });
      const before = (await stack.emulator.appleRevocations()).revoked.length;
      expect((await call(stack.api, 'DELETE', '/api/me/', { token: user.access_token })).status).toBe(204);
      expect((await stack.emulator.appleRevocations()).revoked.length).toBe(before + 1);
    });

    it('refuses a used code sent alone, and a code of another user than the identity token; a used code beside its identity token keeps the grant it has', async () => {
      const minted = await stack.emulator.mintAppleCode();
      const user = await guest(stack.api);
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/apple/', {
            token: user.access_token,
            body: { id_token: minted.id_token, code: minted.code },
          })
        ).status,
      ).toBe(200);
      await refused('apple', { code: minted.code }, /code/);
      // The identity token proves the account; the grant kept by the first use stays (test/provider-edges.test.ts).
      expect(
        (await call(stack.api, 'POST', '/api/auth/apple/', { body: { id_token: minted.id_token, code: minted.code } }))
          .body.id,
      ).toBe(user.id);
      const kept = await stack.db
        .selectFrom('social_associations')
        .select('provider_tokens')
        .where('uid', '=', minted.sub)
        .executeTakeFirstOrThrow();
      expect(kept.provider_tokens).not.toBeNull();
      const other = await stack.emulator.mintAppleCode();
      const stranger = await stack.emulator.mintIdToken('apple');
      await refused('apple', { id_token: stranger.id_token, code: other.code }, /another user/);
    });

    it('accepts a code alone', async () => {
      const minted = await stack.emulator.mintAppleCode();
      const user = await guest(stack.api);
      const linked = await call(stack.api, 'POST', '/api/associate/apple/', {
        token: user.access_token,
        body: { code: minted.code },
      });
      expect(linked.body.association?.uid).toBe(minted.sub);
    });

    it('revokes the grant of a code redeemed for an account nobody has linked (sign-in 404), never that of a linked one', async () => {
      const before = (await stack.emulator.appleRevocations()).revoked.length;
      const stranger = await stack.emulator.mintAppleCode();
      expectError(
        await call(stack.api, 'POST', '/api/auth/apple/', { body: { code: stranger.code } }),
        404,
        'user_not_found',
      );
      const revoked = (await stack.emulator.appleRevocations()).revoked;
      expect(revoked.length).toBe(before + 1);
      expect(revoked.at(-1)).toMatchObject({ token_type_hint: 'refresh_token' });

      // Linked to its owner: another user's refused attempt must not end the owner's authorization.
      const owned = await stack.emulator.mintAppleCode();
      const owner = await guest(stack.api);
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/apple/', {
            token: owner.access_token,
            body: { code: owned.code },
          })
        ).status,
      ).toBe(200);
      const again = await stack.emulator.mintAppleCode({ sub: owned.sub });
      const intruder = await guest(stack.api);
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/apple/', {
            token: intruder.access_token,
            body: { code: again.code },
          })
        ).status,
      ).toBe(409);
      expect((await stack.emulator.appleRevocations()).revoked.length).toBe(before + 1);
    });
  });

  describe('LINE', () => {
    it('access tokens: links and signs in; refuses another channel and an expired token', async () => {
      const token = await stack.emulator.mintLineToken({ user: { displayName: 'Taro' } });
      const { uid } = await linkThenSignIn('line', { access_token: token.access_token });
      expect(uid).toBe(token.user_id);
      const foreign = await stack.emulator.mintLineToken({ channel_id: '9999999999' });
      await refused('line', { access_token: foreign.access_token }, /another channel/);
      await stack.emulator.expireToken(token.access_token);
      await refused('line', { access_token: token.access_token });
    });

    it('ID tokens: verified by LINE for our channel, with the nonce', async () => {
      const token = await stack.emulator.mintLineToken({ nonce: 'line-nonce' });
      const user = await guest(stack.api);
      const linked = await call(stack.api, 'POST', '/api/associate/line/', {
        token: user.access_token,
        body: { id_token: token.id_token, nonce: 'line-nonce' },
      });
      expect(linked.body.association.uid).toBe(token.user_id);
      await refused('line', { id_token: token.id_token, nonce: 'wrong' });
      const foreign = await stack.emulator.mintLineToken({ channel_id: '8888888888' });
      await refused('line', { id_token: foreign.id_token });
    });
  });

  describe('GitHub', () => {
    it('links and signs in; refuses a token of another OAuth app and an unknown token', async () => {
      const token = await stack.emulator.mintGithubToken({ user: { login: 'octocat' } });
      const { uid } = await linkThenSignIn('github', { access_token: token.access_token });
      expect(uid).toBe(String(token.user_id));
      const foreign = await stack.emulator.mintGithubToken({
        client_id: 'someone-elses-oauth-app',
        user: { id: token.user_id },
      });
      await refused('github', { access_token: foreign.access_token }, /another app/);
      await refused('github', { access_token: 'gho_not_a_real_token_000000000000000000' });
    });
  });

  describe('X OAuth 2 user tokens', () => {
    it('are refused unless the operator opts in (no way to prove they were issued to us)', async () => {
      const token = await stack.emulator.mintTwitterOAuth2Token();
      const answer = await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: token.access_token },
      });
      expectError(answer, 400, 'invalid_request');
      expect(answer.body.message).toContain('SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS');
    });
  });
});

describe('X OAuth 2 user tokens when accepted', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS: 'true' });
  });
  afterAll(() => stack.close());

  it('find the same link as the OAuth 1.0a token of the same account', async () => {
    const oauth1 = await stack.emulator.mintTwitterToken();
    const user = await guest(stack.api);
    await call(stack.api, 'POST', '/api/associate/twitter/', {
      token: user.access_token,
      body: { access_token: oauth1.access_token, access_token_secret: oauth1.access_token_secret },
    });
    const oauth2 = await stack.emulator.mintTwitterOAuth2Token({ user: { id: oauth1.user_id } });
    const signedIn = await call(stack.api, 'POST', '/api/auth/twitter/', {
      body: { access_token: oauth2.access_token },
    });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.id).toBe(user.id);
    await stack.emulator.expireToken(oauth2.access_token);
    expectError(
      await call(stack.api, 'POST', '/api/auth/twitter/', { body: { access_token: oauth2.access_token } }),
      400,
      'invalid_token',
    );
  });
});

describe('JWKS caching', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite');
  });
  afterAll(async () => {
    vi.useRealTimers();
    await stack.close();
  });

  const googleFetches = async () => (await stack.emulator.stats()).requests.google ?? 0;
  const signIn = async (idToken: string) =>
    call(stack.api, 'POST', '/api/associate/google/', {
      token: (await guest(stack.api)).access_token,
      body: { id_token: idToken },
    });

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
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { SOCIAL_AUTH_GOOGLE_JWKS_URL: 'http://127.0.0.1:1/certs' });
  });
  afterAll(() => stack.close());

  it('answers 502 provider_unavailable, not invalid_token', async () => {
    const token = await stack.emulator.mintIdToken('google');
    expectError(
      await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: token.id_token } }),
      502,
      'provider_unavailable',
    );
  });
});
