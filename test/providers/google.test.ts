import { describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest } from '../helpers.js';
import { linkThenSignIn, linkToGuest, realBreakerStack, refusedSignIn, sharedStack, signInWith } from './flows.js';

// Google through HTTP against the emulator: access tokens (tokeninfo), a native app's ID token, and Cross-Account
// Protection (RISC). Elsewhere: its ID tokens among the others and the JWKS cache (id-tokens.test.ts), the recorded
// answers replayed (fixtures.test.ts), what Google requires of a request (requests.test.ts), the recorded RISC tokens
// (test/callback-contract.test.ts).

describe.each(databaseKinds())('google on %s', (kind) => {
  const stack = realBreakerStack(kind);

  describe('google access tokens (tokeninfo)', () => {
    it('links and signs in; refuses a token of another client and an expired one', async () => {
      const token = await stack.emulator.mintGoogleAccessToken();
      await linkThenSignIn(stack, 'google', { access_token: token.access_token });
      const foreign = await stack.emulator.mintGoogleAccessToken({
        client_id: 'someone-elses.apps.googleusercontent.com',
      });
      await refusedSignIn(stack, 'google', { access_token: foreign.access_token }, /another app/);
      await stack.emulator.expireToken(token.access_token);
      await refusedSignIn(stack, 'google', { access_token: token.access_token });
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

  // The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
  // test/fixtures/providers/), through HTTP: server, emulator and database for real.

  describe('Google', () => {
    it("signs in a native app's token: aud = our web client id, azp = any Android or iOS client id", async () => {
      const native = await stack.emulator.mintIdToken('google'); // aud web id, azp the emulated Android app
      expect(native.claims.azp).not.toBe(native.claims.aud);
      const { user, answer } = await linkToGuest(stack, 'google', { id_token: native.id_token });
      expect(answer.status).toBe(200);
      const other = await stack.emulator.mintIdToken('google', {
        sub: native.sub,
        azp: '999-another-signing-key.apps.googleusercontent.com',
      });
      expect((await signInWith(stack, 'google', { id_token: other.id_token })).body.id).toBe(user.id);
    });
  });
});

// The providers' lifecycle callbacks (src/core/provider-callbacks.ts), driven through HTTP by the emulator, which signs
// them as the provider does (the recorded tokens of test/fixtures/callbacks/: test/callback-contract.test.ts).

describe.each(databaseKinds())('Google Cross-Account Protection (RISC) on %s', (kind) => {
  const stack = sharedStack(kind, {
    SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
    SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 9).toString('base64')}`,
  });

  const send = (input: { event: string; sub: string; reason?: string; client_id?: string; forge?: string }) =>
    stack.emulator.sendGoogleSecurityEvent({ ...input, url: `${stack.api}/api/providers/google/risc` });
  async function googleUser() {
    const minted = await stack.emulator.mintIdToken('google', {});
    const { user } = await linkToGuest(stack, 'google', { id_token: minted.id_token });
    return { user, sub: minted.sub };
  }

  it.each([
    ['sessions-revoked', undefined, true],
    ['tokens-revoked', undefined, true],
    ['account-disabled', 'hijacking', true],
    ['account-disabled', 'bulk-account', false],
    ['account-credential-change-required', undefined, false],
    ['verification', undefined, false],
  ] as const)(
    '%s %s: sessions ended: %s; told to the app (provider.event), answered 202',
    async (event, reason, ended) => {
      const { user, sub } = await googleUser();
      expect((await send({ event, sub, ...(reason ? { reason } : {}) })).status).toBe(202);
      const me = await call(stack.api, 'GET', '/api/me/', { token: user.access_token });
      expect(me.status).toBe(ended ? 401 : 200);
      const kinds = (
        await stack.db.selectFrom('outbox').select(['type', 'payload']).where('user_id', '=', user.id).execute()
      )
        .filter((row) => row.type === 'provider.event')
        .map((row) => JSON.parse(row.payload).data.kind);
      expect(kinds).toEqual([`google ${event}${reason ? ` ${reason}` : ''}`]);
    },
  );

  it('a token not signed by Google for our client ids is refused (400); the sessions live on', async () => {
    const { user, sub } = await googleUser();
    for (const forge of ['bad_signature', 'foreign_key', 'none_alg', 'hs256_with_public_key'])
      expect((await send({ event: 'sessions-revoked', sub, forge })).status, forge).toBe(400);
    expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(200);
  });

  it('a token Google signed for another client id of the project (its Android or iOS client) is acknowledged (202) and not acted on', async () => {
    const { user, sub } = await googleUser();
    // Google sends a project's events to each client id; a refusal would count as a failed delivery (mozilla/fxa acknowledges them too).
    expect(
      (await send({ event: 'sessions-revoked', sub, client_id: 'android-client.apps.googleusercontent.com' })).status,
    ).toBe(202);
    expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(200);
    expect(
      (await stack.db.selectFrom('outbox').select('type').where('user_id', '=', user.id).execute()).map(
        (row) => row.type,
      ),
    ).not.toContain('provider.event');
  });

  it.each(['sessions-revoked', 'tokens-revoked'])(
    '%s: an ID token Google issued before it (a stolen one, cached on a phone) signs in no more; a new one does',
    async (event) => {
      const user = await guest(stack.api);
      const stolen = await stack.emulator.mintIdToken('google', { iat_offset: -5 });
      await call(stack.api, 'POST', '/api/associate/google/', {
        token: user.access_token,
        body: { id_token: stolen.id_token },
      });
      expect((await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: stolen.id_token } })).status).toBe(
        200,
      ); // the default lets it sign in again
      expect((await send({ event, sub: stolen.sub })).status).toBe(202);
      const refused = await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: stolen.id_token } });
      expectError(refused, 400, 'invalid_token');
      expect(refused.body.detail).toMatch(/ended this account's sessions/);
      const fresh = await stack.emulator.mintIdToken('google', { sub: stolen.sub, iat_offset: 1 });
      expect((await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: fresh.id_token } })).body.id).toBe(
        user.id,
      );
    },
  );

  it('sessions-revoked tells the app (session.revoked, reason provider)', async () => {
    const { user, sub } = await googleUser();
    expect((await send({ event: 'sessions-revoked', sub })).status).toBe(202);
    const revoked = (
      await stack.db.selectFrom('outbox').select(['type', 'payload']).where('user_id', '=', user.id).execute()
    ).filter((row) => row.type === 'session.revoked');
    expect(revoked.map((row) => JSON.parse(row.payload).data)).toEqual([
      { user_id: user.id, reason: 'provider', detail: 'google sessions-revoked: 1 sessions' },
    ]);
  });
});
