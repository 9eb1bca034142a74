import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

describe.each(databaseKinds())('social linking on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    // A provider too slow or hanging is given up on after 1 s (the faults below); startStack's default is longer.
    stack = await startStack(kind, { SOCIAL_AUTH_PROVIDER_TIMEOUT_MS: '1000' });
  });
  afterAll(() => stack.close());
  beforeEach(() => stack.emulator.clearFaults());

  const linkCount = async () =>
    Number(
      (
        await stack.db
          .selectFrom('social_associations')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const userCount = async () =>
    Number(
      (
        await stack.db
          .selectFrom('users')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  describe('facebook', () => {
    it('associates, then auth finds the same user with a new session (takeover on a new phone)', async () => {
      const user = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken({ user: { name: 'Ada Lovelace', email: 'ada@example.com' } });

      const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expect(linked.status).toBe(200);
      expect(linked.body).toEqual({
        success: true,
        association: { provider: 'facebook', uid: fb.user_id, created: true },
      });

      // New phone: a fresh SDK token for the same Facebook user, no session of ours.
      const newPhoneToken = await stack.emulator.mintFacebookToken({ user: { id: fb.user_id } });
      const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: newPhoneToken.access_token },
      });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body).toMatchObject({ id: user.id, username: user.username, token_type: 'Bearer' });
      expect(signedIn.body.refresh_token).not.toBe(user.refresh_token);

      const me = await call(stack.api, 'GET', '/api/me/', { token: signedIn.body.access_token });
      expect(me.status).toBe(200);
      expect(me.body.associations).toHaveLength(1);
      expect(me.body.associations[0]).toMatchObject({
        provider: 'facebook',
        uid: fb.user_id,
        extra_data: { name: 'Ada Lovelace', email: 'ada@example.com' },
      });
      expect(JSON.stringify(me.body)).not.toContain(fb.access_token);
    });

    it('is idempotent: linking the same account to the same user again answers created=false', async () => {
      const user = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      const first = await call(stack.api, 'POST', '/api/associate/facebook', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      const again = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expect(first.body.association.created).toBe(true);
      expect(again.status).toBe(200);
      expect(again.body.association).toEqual({ provider: 'facebook', uid: fb.user_id, created: false });
    });

    it('refuses to link an account already linked to another user (409 already_associated)', async () => {
      const owner = await guest(stack.api);
      const intruder = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: owner.access_token,
        body: { access_token: fb.access_token },
      });
      const stolen = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: intruder.access_token,
        body: { access_token: fb.access_token },
      });
      expectError(stolen, 409, 'already_associated');
      const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: fb.access_token },
      });
      expect(signedIn.body.id).toBe(owner.id);
    });

    it('refuses a token issued to another Facebook app, even when Facebook does not check appsecret_proof', async () => {
      const user = await guest(stack.api);
      const victim = await stack.emulator.mintFacebookToken();
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: victim.access_token },
      });
      // Another app got a token from the same Facebook user. With appsecret_proof not enforced by
      // Facebook, only debug_token's app_id tells the two apps apart.
      await stack.emulator.setFault('facebook', { appsecret_proof: 'ignore' });
      const foreign = await stack.emulator.mintFacebookToken({
        app_id: 'someone-elses-app',
        user: { id: victim.user_id },
      });
      const takeover = await call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: foreign.access_token },
      });
      expectError(takeover, 400, 'invalid_token');
      expect(takeover.body.errors).toBe('Error with social authentication');
      expect(takeover.body.detail).toBe('the token was issued to another app');

      await stack.emulator.clearFaults();
      const withProof = await call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: foreign.access_token },
      });
      expectError(withProof, 400, 'invalid_token');
    });

    it('refuses invalid and expired tokens with 400 invalid_token and writes nothing', async () => {
      const user = await guest(stack.api);
      const before = await linkCount();
      const bogus = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: 'EAAnotatoken' },
      });
      expectError(bogus, 400, 'invalid_token');
      const fb = await stack.emulator.mintFacebookToken();
      await stack.emulator.expireToken(fb.access_token);
      const expired = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expectError(expired, 400, 'invalid_token');
      const alreadyExpired = await stack.emulator.mintFacebookToken({ expires_in: -60 });
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: alreadyExpired.access_token } }),
        400,
        'invalid_token',
      );
      expect(await linkCount()).toBe(before);
    });

    it('auth answers 404 User Not Found for an account linked to nobody, and creates no user', async () => {
      const before = await userCount();
      const fb = await stack.emulator.mintFacebookToken();
      const answer = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
      expectError(answer, 404, 'user_not_found');
      expect(answer.body.errors).toBe('User Not Found');
      expect(await userCount()).toBe(before);
    });
  });

  describe('twitter', () => {
    it('associates with an OAuth 1.0a token and secret, and auth finds the user by id_str', async () => {
      const user = await guest(stack.api);
      const tw = await stack.emulator.mintTwitterToken({ user: { screen_name: 'ada', name: 'Ada' } });
      const linked = await call(stack.api, 'POST', '/api/associate/twitter/', {
        token: user.access_token,
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      });
      expect(linked.status).toBe(200);
      expect(linked.body.association).toEqual({ provider: 'twitter', uid: tw.user_id, created: true });
      const signedIn = await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.id).toBe(user.id);
      const list = await call(stack.api, 'GET', '/api/associations/', { token: user.access_token });
      expect(list.body).toEqual([
        expect.objectContaining({
          provider: 'twitter',
          uid: tw.user_id,
          extra_data: expect.objectContaining({ screen_name: 'ada' }),
        }),
      ]);
    });

    it('keeps ids above 2^53 exact (id_str, never the JSON number)', async () => {
      const user = await guest(stack.api);
      const tw = await stack.emulator.mintTwitterToken({ user: { id: '1234567890123456789' } });
      const linked = await call(stack.api, 'POST', '/api/associate/twitter/', {
        token: user.access_token,
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      });
      expect(linked.body.association.uid).toBe('1234567890123456789');
    });

    it('refuses a wrong secret, a token of another consumer, and an expired token', async () => {
      const user = await guest(stack.api);
      const tw = await stack.emulator.mintTwitterToken();
      const wrongSecret = await call(stack.api, 'POST', '/api/associate/twitter/', {
        token: user.access_token,
        body: { access_token: tw.access_token, access_token_secret: 'not-the-secret' },
      });
      expectError(wrongSecret, 400, 'invalid_token');
      const foreign = await stack.emulator.mintTwitterToken({ consumer_key: 'another-apps-key' });
      expectError(
        await call(stack.api, 'POST', '/api/auth/twitter/', {
          body: { access_token: foreign.access_token, access_token_secret: foreign.access_token_secret },
        }),
        400,
        'invalid_token',
      );
      await stack.emulator.expireToken(tw.access_token);
      expectError(
        await call(stack.api, 'POST', '/api/auth/twitter/', {
          body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
        }),
        400,
        'invalid_token',
      );
    });

    it('requires access_token_secret (400 invalid_request naming it)', async () => {
      const tw = await stack.emulator.mintTwitterToken();
      const answer = await call(stack.api, 'POST', '/api/auth/twitter/', { body: { access_token: tw.access_token } });
      expectError(answer, 400, 'invalid_request');
      expect(answer.body.message).toContain('access_token_secret');
    });
  });

  describe('request errors', () => {
    it('401 without a valid access token on associate', async () => {
      const fb = await stack.emulator.mintFacebookToken();
      expectError(
        await call(stack.api, 'POST', '/api/associate/facebook/', { body: { access_token: fb.access_token } }),
        401,
        'not_authenticated',
      );
      expectError(
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: 'not.a.jwt',
          body: { access_token: fb.access_token },
        }),
        401,
        'invalid_access_token',
      );
    });

    it('404 unknown_provider for an unknown or disabled provider', async () => {
      const user = await guest(stack.api);
      expectError(
        await call(stack.api, 'POST', '/api/auth/myspace/', { body: { access_token: 'x' } }),
        404,
        'unknown_provider',
      );
      expectError(
        await call(stack.api, 'POST', '/api/associate/myspace/', {
          token: user.access_token,
          body: { access_token: 'x' },
        }),
        404,
        'unknown_provider',
      );
    });

    it('400 invalid_request for a missing field, a wrong type, or a body that is not JSON', async () => {
      expectError(await call(stack.api, 'POST', '/api/auth/facebook/', { body: {} }), 400, 'invalid_request');
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 42 } }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: '' } }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x', unexpected: 1 } }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', {
          raw: '{"access_token":',
          headers: { 'content-type': 'application/json' },
        }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', { body: ['access_token'] }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', {
          raw: 'access_token=x',
          headers: { 'content-type': 'text/plain' },
        }),
        415,
        'unsupported_media_type',
      );
    });
  });

  describe('provider failures', () => {
    const failures = [
      ['down (HTTP 500)', { mode: 'error_500' }],
      ['answering garbage', { mode: 'garbage' }],
      ['resetting connections', { mode: 'reset' }],
      ['too slow (over the timeout)', { latency_ms: 1500 }],
      ['hanging', { mode: 'hang' }],
    ] as const;

    it.each(failures)('502 provider_unavailable when Facebook is %s, and nothing is written', async (_name, fault) => {
      const user = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      const before = await linkCount();
      await stack.emulator.setFault('facebook', fault);
      const answer = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expectError(answer, 502, 'provider_unavailable');
      // Bounded by SOCIAL_AUTH_PROVIDER_TIMEOUT_MS=1000 (above), said by the server itself rather than by a clock
      // that a busy machine slows: a slow or hanging Facebook is given up on at the timeout (before the slow answer
      // could come), any other failure is answered as it is, without waiting for the timeout.
      const timedOut = 'latency_ms' in fault || fault.mode === 'hang';
      expect(answer.body.detail === 'did not answer within 1000 ms').toBe(timedOut);
      expect(await linkCount()).toBe(before);
      expect(JSON.stringify(answer.body)).not.toContain(fb.access_token);
    });

    it('502 provider_unavailable when Twitter is down', async () => {
      const tw = await stack.emulator.mintTwitterToken();
      await stack.emulator.setFault('twitter', { mode: 'error_500' });
      const answer = await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      });
      expectError(answer, 502, 'provider_unavailable');
    });

    it('works again once the provider is back', async () => {
      const user = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      await stack.emulator.setFault('facebook', { mode: 'error_500' });
      expectError(
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: fb.access_token },
        }),
        502,
        'provider_unavailable',
      );
      await stack.emulator.clearFaults();
      const answer = await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expect(answer.status).toBe(200);
    });
  });

  describe('associations', () => {
    it('lists and unlinks; refuses to remove the last login method of a user without a password', async () => {
      const user = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      const tw = await stack.emulator.mintTwitterToken();
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      await call(stack.api, 'POST', '/api/associate/twitter/', {
        token: user.access_token,
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      });
      const list = await call(stack.api, 'GET', '/api/associations/', { token: user.access_token });
      expect(list.body.map((link: { provider: string }) => link.provider)).toEqual(['facebook', 'twitter']);

      const removed = await call(stack.api, 'DELETE', `/api/associations/facebook/${fb.user_id}/`, {
        token: user.access_token,
      });
      expect(removed.status).toBe(204);
      expectError(
        await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } }),
        404,
        'user_not_found',
      );

      const last = await call(stack.api, 'DELETE', `/api/associations/twitter/${tw.user_id}`, {
        token: user.access_token,
      });
      expectError(last, 409, 'last_login_method');
      expectError(
        await call(stack.api, 'DELETE', `/api/associations/facebook/${fb.user_id}/`, { token: user.access_token }),
        404,
        'association_not_found',
      );
      expect((await call(stack.api, 'GET', '/api/associations/', { token: user.access_token })).body).toHaveLength(1);
    });

    it("a password user may remove its last link; nobody may remove another user's link", async () => {
      const created = await call(stack.api, 'POST', '/api/users/', {
        body: { username: `pw_${kind}_owner`, password: 'correct horse battery' },
      });
      const other = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: created.body.access_token,
        body: { access_token: fb.access_token },
      });
      expectError(
        await call(stack.api, 'DELETE', `/api/associations/facebook/${fb.user_id}/`, { token: other.access_token }),
        404,
        'association_not_found',
      );
      expect(
        (
          await call(stack.api, 'DELETE', `/api/associations/facebook/${fb.user_id}/`, {
            token: created.body.access_token,
          })
        ).status,
      ).toBe(204);
    });
  });
});

describe.each(databaseKinds())('SOCIAL_AUTH_CREATE_USER=true on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_AUTH_CREATE_USER: 'true' });
  });
  afterAll(() => stack.close());

  it('auth creates a user linked to the account (201), and finds it next time (200)', async () => {
    const fb = await stack.emulator.mintFacebookToken({ user: { name: 'Grace Hopper' } });
    const first = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    expect(first.status).toBe(201);
    expect(first.body.username).toMatch(/^GraceHopper_[0-9a-f]{12}$/);
    const again = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
  });
});
