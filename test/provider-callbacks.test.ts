import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySignedRequest } from '../src/providers/facebook/signed-request.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// The providers' lifecycle callbacks (src/core/provider-callbacks.ts), checked against the cited vectors of
// test/fixtures/callbacks/ and driven through HTTP by the emulator, which signs them as the provider does.

const vectors = JSON.parse(
  readFileSync(new URL('./fixtures/callbacks/facebook/signed_request.vectors.json', import.meta.url), 'utf8'),
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

describe.each(databaseKinds())('Facebook callbacks on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, {
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 3).toString('base64')}`,
    });
  });
  afterAll(() => stack.close());

  async function linked() {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: facebook.access_token },
    });
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

describe.each(databaseKinds())('Apple server-to-server notifications on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, {
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 5).toString('base64')}`,
    });
  });
  afterAll(() => stack.close());

  const notify = (input: { type: string; sub: string; email?: string; client_id?: string; forge?: string }) =>
    stack.emulator.sendAppleNotification({ ...input, url: `${stack.api}/api/providers/apple/notifications` });

  async function appleUser(withCode = false) {
    const user = await guest(stack.api);
    const body = withCode
      ? { code: (await stack.emulator.mintAppleCode({})).code }
      : { id_token: (await stack.emulator.mintIdToken('apple', {})).id_token };
    const linked = await call(stack.api, 'POST', '/api/associate/apple/', { token: user.access_token, body });
    return { user, sub: linked.body.association.uid as string };
  }
  const facts = (value: unknown) => (typeof value === 'string' ? JSON.parse(value) : value) as Record<string, unknown>;
  const link = (sub: string) =>
    stack.db
      .selectFrom('social_associations')
      .selectAll()
      .where('provider', '=', 'apple')
      .where('uid', '=', sub)
      .executeTakeFirst();
  const kinds = async (userId: number) =>
    (await stack.db.selectFrom('outbox').select(['type', 'payload']).where('user_id', '=', userId).execute())
      .filter((row) => row.type === 'provider.event')
      .map((row) => JSON.parse(row.payload).data.kind as string);

  it('email-disabled and email-enabled are kept on the link; consent-revoked drops the kept tokens and keeps the link; each is a provider.event', async () => {
    const { user, sub } = await appleUser(true);
    expect((await link(sub))?.provider_tokens).toBeTruthy();
    expect((await notify({ type: 'email-disabled', sub, email: 'x1y2@privaterelay.appleid.com' })).status).toBe(200);
    expect(facts((await link(sub))!.extra_data)).toMatchObject({ email_forwarding: false });
    expect((await notify({ type: 'email-enabled', sub, email: 'x1y2@privaterelay.appleid.com' })).status).toBe(200);
    expect(facts((await link(sub))!.extra_data)).toMatchObject({ email_forwarding: true });
    expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(200); // e-mail changes sign nobody out
    expect((await notify({ type: 'consent-revoked', sub })).status).toBe(200);
    expect((await link(sub))?.provider_tokens).toBeNull();
    expect(await kinds(user.id)).toEqual(['apple email-disabled', 'apple email-enabled', 'apple consent-revoked']);
  });

  it('consent-revoked: an identity token Apple issued before it signs in no more', async () => {
    const user = await guest(stack.api);
    const stolen = await stack.emulator.mintIdToken('apple', { iat_offset: -5 });
    await call(stack.api, 'POST', '/api/associate/apple/', {
      token: user.access_token,
      body: { id_token: stolen.id_token },
    });
    expect((await notify({ type: 'consent-revoked', sub: stolen.sub })).status).toBe(200);
    expectError(
      await call(stack.api, 'POST', '/api/auth/apple/', { body: { id_token: stolen.id_token } }),
      400,
      'invalid_token',
    );
    const fresh = await stack.emulator.mintIdToken('apple', { sub: stolen.sub, iat_offset: 1 });
    expect((await call(stack.api, 'POST', '/api/auth/apple/', { body: { id_token: fresh.id_token } })).body.id).toBe(
      user.id,
    );
  });

  // TN3194: on a revocation the app returns to a signed-out state (test/fixtures/callbacks/apple/).
  it.each(['consent-revoked', 'account-delete'])(
    '%s ends every session of the user, and tells the app (session.revoked, reason provider)',
    async (type) => {
      const { user, sub } = await appleUser();
      const refresh = user.refresh_token;
      expect((await notify({ type, sub })).status).toBe(200);
      expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(401);
      expect((await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: refresh } })).status).toBe(
        401,
      );
      const revoked = (
        await stack.db.selectFrom('outbox').select(['type', 'payload']).where('user_id', '=', user.id).execute()
      ).filter((row) => row.type === 'session.revoked');
      expect(revoked.map((row) => JSON.parse(row.payload).data)).toEqual([
        { user_id: user.id, reason: 'provider', detail: `apple ${type}: 1 sessions` },
      ]);
    },
  );

  it('account-delete removes the link (link.removed); an unknown account is answered 200 all the same', async () => {
    const { user, sub } = await appleUser();
    expect((await notify({ type: 'account-delete', sub })).status).toBe(200);
    expect(await link(sub)).toBeUndefined();
    const types = (await stack.db.selectFrom('outbox').select('type').where('user_id', '=', user.id).execute()).map(
      (row) => row.type,
    );
    expect(types).toContain('link.removed');
    expect((await notify({ type: 'account-delete', sub: '000000.00000000000000000000000000000000.0000' })).status).toBe(
      200,
    );
  });

  it('a notification not signed by Apple, or for another app, is refused (400) and changes nothing', async () => {
    const { sub } = await appleUser();
    for (const forge of ['bad_signature', 'foreign_key', 'none_alg', 'hs256_with_public_key']) {
      const answer = await notify({ type: 'account-delete', sub, forge });
      expect(answer.status, forge).toBe(400);
      expect(JSON.parse(answer.body).code).toBe('invalid_token');
    }
    const otherApp = await notify({ type: 'account-delete', sub, client_id: 'com.example.someone-else' });
    expect(otherApp.status).toBe(400);
    const missing = await fetch(`${stack.api}/api/providers/apple/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(missing.status).toBe(400);
    expect(await link(sub)).toBeDefined();
  });
});

describe.each(databaseKinds())('Google Cross-Account Protection (RISC) on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, {
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 9).toString('base64')}`,
    });
  });
  afterAll(() => stack.close());

  const send = (input: { event: string; sub: string; reason?: string; client_id?: string; forge?: string }) =>
    stack.emulator.sendGoogleSecurityEvent({ ...input, url: `${stack.api}/api/providers/google/risc` });
  async function googleUser() {
    const user = await guest(stack.api);
    const minted = await stack.emulator.mintIdToken('google', {});
    await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: minted.id_token },
    });
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

describe.each(databaseKinds())('a callback acts once on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  const signed = (payload: Record<string, unknown>) => {
    const body = Buffer.from(JSON.stringify({ algorithm: 'HMAC-SHA256', ...payload })).toString('base64url');
    return `${createHmac('sha256', stack.apps.facebook.appSecret).update(body).digest('base64url')}.${body}`;
  };
  const post = (path: string, signedRequest: string) =>
    fetch(`${stack.api}/api/providers/facebook/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `signed_request=${signedRequest}`,
    });

  it('a data-deletion request played again after the person linked Facebook again deletes nothing; one too old is refused', async () => {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    const link = () =>
      call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
    await link();
    const request = signed({
      issued_at: Math.floor(Date.now() / 1000),
      expires: Math.floor(Date.now() / 1000) + 3600,
      user_id: facebook.user_id,
    });
    expect((await post('data-deletion', request)).status).toBe(200);
    await link(); // the person came back and linked the account again
    expect((await post('data-deletion', request)).status).toBe(200); // a captured request, played again
    expect(
      await stack.db.selectFrom('social_associations').select('id').where('uid', '=', facebook.user_id).execute(),
    ).toHaveLength(1);

    const old = signed({ issued_at: Math.floor(Date.now() / 1000) - 8 * 86_400, user_id: facebook.user_id });
    expect((await post('data-deletion', old)).status).toBe(400);
    expect((await post('deauthorize', signed({ user_id: facebook.user_id }))).status).toBe(400); // says not when
    expect(
      await stack.db.selectFrom('social_associations').select('id').where('uid', '=', facebook.user_id).execute(),
    ).toHaveLength(1);
  });
});
