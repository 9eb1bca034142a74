import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { verifySignedRequest } from '../../src/providers/facebook/signed-request.js';
import { call, databaseKinds, expectError } from '../helpers.js';
import { extraDataOf, linkToGuest, providerRequests, realBreakerStack, sharedStack, signInWith } from './flows.js';

// Facebook: its signed_request against the cited vectors (test/fixtures/callbacks/facebook/), then through HTTP against
// the emulator: Graph's token check and profile, a wrong app secret, Limited Login's ID tokens, and the data-deletion and
// deauthorize callbacks. Elsewhere: the recorded answers replayed (fixtures.test.ts), what Graph requires of a request
// (requests.test.ts), Limited Login among the ID-token providers (id-tokens.test.ts), a rate limit's refusal
// (refusals.test.ts), a callback played again (callbacks.test.ts, callbacks-abuse.test.ts).

const vectors = JSON.parse(
  readFileSync(new URL('../fixtures/callbacks/facebook/signed_request.vectors.json', import.meta.url), 'utf8'),
) as {
  vectors: Array<{
    id: string;
    secret: string;
    signed_request: string;
    expect: { verify: string; payload?: Record<string, unknown>; recommended?: string };
  }>;
};

describe("Facebook's signed_request", () => {
  it.each(vectors.vectors.map((vector) => [vector.id, vector] as const))('%s', (_id, vector) => {
    const payload = verifySignedRequest(vector.signed_request, vector.secret);
    const accept = vector.expect.verify === 'accept' || vector.expect.recommended === 'accept';
    if (accept) expect(payload).toEqual(vector.expect.payload ?? expect.any(Object));
    else expect(payload).toBeUndefined();
  });
});

// The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
// test/fixtures/providers/), through HTTP: server, emulator and database for real.

describe.each(databaseKinds())('real-provider behaviour on %s', (kind) => {
  const stack = realBreakerStack(kind);
  const graphCalls = () => providerRequests(stack, 'facebook');

  describe('Facebook', () => {
    it("refuses another app's token 400 invalid_token; 100 foreign or garbage tokens leave the circuit closed", async () => {
      const mine = await stack.emulator.mintFacebookToken();
      expect((await linkToGuest(stack, 'facebook', { access_token: mine.access_token })).answer.status).toBe(200);
      for (let i = 0; i < 50; i++) {
        const foreign = await stack.emulator.mintFacebookToken({ app_id: `9${i}0000000000` });
        const answer = await signInWith(stack, 'facebook', { access_token: foreign.access_token });
        expectError(answer, 400, 'invalid_token');
        expect(answer.body.detail).toMatch(/another app/);
        expectError(await signInWith(stack, 'facebook', { access_token: `EAAgarbage${i}` }), 400, 'invalid_token');
      }
      // The circuit is closed: a valid token signs in at once (an open one would answer 503 without asking Graph).
      expect((await signInWith(stack, 'facebook', { access_token: mine.access_token })).status).toBe(200);
    });

    it('signs a linked account in with one Graph call; a new link reads the profile too; a stale profile is read again', async () => {
      const token = await stack.emulator.mintFacebookToken({ user: { name: 'Ada Lovelace' } });
      let before = await graphCalls();
      const { user } = await linkToGuest(stack, 'facebook', { access_token: token.access_token });
      expect(await graphCalls()).toBe(before + 2); // debug_token and /me
      expect(await extraDataOf(stack, user.access_token, 'facebook')).toMatchObject({
        name: 'Ada Lovelace',
        profile_read_at: expect.any(Number),
      });

      before = await graphCalls();
      expect((await signInWith(stack, 'facebook', { access_token: token.access_token })).body.id).toBe(user.id);
      expect(await graphCalls()).toBe(before + 1); // debug_token alone
      expect(await extraDataOf(stack, user.access_token, 'facebook')).toMatchObject({ name: 'Ada Lovelace' }); // kept, not erased

      // A day later (SOCIAL_AUTH_PROFILE_MAX_AGE), the name changed at Facebook: read again.
      await stack.emulator.mintFacebookToken({ user: { id: token.user_id, name: 'Ada King' } });
      await stack.db
        .updateTable('social_associations')
        .set({
          extra_data: JSON.stringify({
            ...(await extraDataOf(stack, user.access_token, 'facebook')),
            profile_read_at: 1,
          }),
        })
        .where('provider', '=', 'facebook')
        .where('uid', '=', token.user_id)
        .execute();
      before = await graphCalls();
      expect((await signInWith(stack, 'facebook', { access_token: token.access_token })).status).toBe(200);
      expect(await graphCalls()).toBe(before + 2);
      expect(await extraDataOf(stack, user.access_token, 'facebook')).toMatchObject({ name: 'Ada King' });
    });

    it('refuses a token the user revoked (code 190, subcode 460)', async () => {
      const token = await stack.emulator.mintFacebookToken();
      await stack.emulator.revokeToken(token.access_token);
      expectError(await signInWith(stack, 'facebook', { access_token: token.access_token }), 400, 'invalid_token');
    });
  });
});

describe.each(databaseKinds())('a server with the wrong Facebook app secret, on %s', (kind) => {
  const stack = sharedStack(kind, { SOCIAL_AUTH_FACEBOOK_SECRET: 'not-the-app-secret' });

  it("answers 502, not the user's fault, and the log names the setting to fix", async () => {
    const token = await stack.emulator.mintFacebookToken();
    const answer = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: token.access_token } });
    expectError(answer, 502, 'provider_unavailable');
    const line = stack.logs
      .map((text) => JSON.parse(text) as Record<string, unknown>)
      .find((entry) => entry.request_id === answer.body.request_id && entry.level === 40);
    expect(String(line?.msg)).toMatch(/SOCIAL_AUTH_FACEBOOK_SECRET/);
  });
});

describe('Facebook Limited Login', () => {
  const stack = sharedStack('sqlite');

  it("takes www.facebook.com and limited.facebook.com as issuer (Meta moved Limited Login's endpoints there), no other", async () => {
    for (const [iss, status] of [
      ['https://www.facebook.com', 404],
      ['https://limited.facebook.com', 404],
      ['https://facebook.com.example.net', 400],
    ] as const) {
      const token = await stack.emulator.mintIdToken('facebook', { iss });
      expect(
        (await call(stack.api, 'POST', '/api/auth/facebook/', { body: { id_token: token.id_token } })).status,
        iss,
      ).toBe(status);
    }
  });
});

// The providers' lifecycle callbacks (src/core/provider-callbacks.ts), checked against the cited vectors of
// test/fixtures/callbacks/ and driven through HTTP by the emulator, which signs them as the provider does.

describe.each(databaseKinds())('Facebook callbacks on %s', (kind) => {
  const stack = sharedStack(kind, {
    SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
    SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 3).toString('base64')}`,
  });

  async function linked() {
    const facebook = await stack.emulator.mintFacebookToken({});
    const { user } = await linkToGuest(stack, 'facebook', { access_token: facebook.access_token });
    return { user, uid: facebook.user_id };
  }

  it('data deletion: the link and what it kept are deleted; the answer is {url, confirmation_code}; the status page says so', async () => {
    const { user, uid } = await linked();
    const sent = await stack.emulator.sendFacebookCallback({
      kind: 'data_deletion',
      user_id: uid,
      url: `${stack.api}/api/providers/facebook/data-deletion`,
    });
    expect(sent.status).toBe(200);
    const answer = JSON.parse(sent.body) as { url: string; confirmation_code: string };
    expect(Object.keys(answer).sort()).toEqual(['confirmation_code', 'url']);
    expect(answer.confirmation_code).toMatch(/^[0-9a-f]{24}$/);
    expect(
      await stack.db
        .selectFrom('social_associations')
        .select('id')
        .where('provider', '=', 'facebook')
        .where('uid', '=', uid)
        .execute(),
    ).toEqual([]);
    const page = await fetch(answer.url.replace(/^https?:\/\/[^/]+/, stack.api));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('Done');
    const events = await stack.db
      .selectFrom('outbox')
      .select(['type', 'payload'])
      .where('user_id', '=', user.id)
      .execute();
    expect(events.map((event) => event.type)).toContain('link.removed');
    // Again (Facebook may retry): a new confirmation, nothing left to delete.
    expect(
      (
        await stack.emulator.sendFacebookCallback({
          kind: 'data_deletion',
          user_id: uid,
          url: `${stack.api}/api/providers/facebook/data-deletion`,
        })
      ).status,
    ).toBe(200);
  });

  it('deauthorize: recorded for the app (provider.event), the link stays', async () => {
    const { user, uid } = await linked();
    const sent = await stack.emulator.sendFacebookCallback({
      kind: 'deauthorize',
      user_id: uid,
      url: `${stack.api}/api/providers/facebook/deauthorize`,
    });
    expect(sent.status).toBe(200);
    const events = await stack.db
      .selectFrom('outbox')
      .select(['type', 'payload'])
      .where('user_id', '=', user.id)
      .execute();
    expect(
      events.some((event) => event.type === 'provider.event' && JSON.parse(event.payload).data.kind === 'deauthorized'),
    ).toBe(true);
    expect(await stack.db.selectFrom('social_associations').select('id').where('uid', '=', uid).execute()).toHaveLength(
      1,
    );
  });

  it('a signed_request not signed with our app secret, or none, is refused (400) and deletes nothing', async () => {
    const { uid } = await linked();
    const forged = vectors.vectors.find((vector) => vector.id === 'data-deletion-wrong-secret')!;
    for (const body of [`signed_request=${encodeURIComponent(forged.signed_request)}`, 'nothing=here', '']) {
      const answer = await fetch(`${stack.api}/api/providers/facebook/data-deletion`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
      expect(answer.status).toBe(400);
      expect(((await answer.json()) as { code: string }).code).toBe('invalid_request');
    }
    expect(await stack.db.selectFrom('social_associations').select('id').where('uid', '=', uid).execute()).toHaveLength(
      1,
    );
    expectError(
      await call(stack.api, 'GET', '/api/providers/facebook/data-deletion/0123456789abcdef01234567'),
      404,
      'deletion_request_not_found',
    );
  });
});
