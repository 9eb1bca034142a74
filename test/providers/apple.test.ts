import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from '../helpers.js';
import {
  extraDataOf,
  linkThenSignIn,
  linkToGuest,
  realBreakerStack,
  refusedSignIn,
  sharedStack,
  signInWith,
} from './flows.js';

// Sign in with Apple through HTTP against the emulator: authorization codes and the grant kept (and revoked), the nonce,
// the first authorization's name, the web flow (Android) with its redirect URIs, and the server-to-server notifications.
// Elsewhere: team transfer and Apple's user-migration exchanges (apple-transfer.test.ts), its ID tokens among the others
// (id-tokens.test.ts), the recorded answers replayed (fixtures.test.ts), what Apple requires of a request
// (requests.test.ts), the recorded notification tokens (test/callback-contract.test.ts).

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
const APPLE_WEB_ID = 'com.example.sociallink.web';
const APPLE_APP = 'com.example.sociallink';
const APPLE_SERVICES_ID = 'com.example.sociallink.android';
const REDIRECT_URI = 'https://app.example.com/callbacks/sign_in_with_apple';

describe.each(databaseKinds())('apple on %s', (kind) => {
  const stack = realBreakerStack(kind, { SOCIAL_AUTH_APPLE_KEY: `${APPLE_APP},${APPLE_WEB_ID}` });

  describe('Sign in with Apple authorization codes', () => {
    it('exchanges the code, keeps the refresh token sealed, and revokes it when the link is removed', async () => {
      const minted = await stack.emulator.mintAppleCode({ email: 'hidden@privaterelay.appleid.com' });
      const { user, uid } = await linkThenSignIn(
        stack,
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
      await refusedSignIn(stack, 'apple', { code: minted.code }, /code/);
      // The identity token proves the account; the grant kept by the first use stays (the web flow's tests, below).
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
      await refusedSignIn(stack, 'apple', { id_token: stranger.id_token, code: other.code }, /another user/);
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

  // The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
  // test/fixtures/providers/), through HTTP: server, emulator and database for real.

  describe('Apple', () => {
    it('accepts the nonce as the app passed it to Apple, or as its SHA-256', async () => {
      const raw = await stack.emulator.mintIdToken('apple', { nonce: 'raw-nonce-1' });
      expect((await linkToGuest(stack, 'apple', { id_token: raw.id_token, nonce: 'raw-nonce-1' })).answer.status).toBe(
        200,
      );
      const hashed = await stack.emulator.mintIdToken('apple', { nonce: sha256('raw-nonce-2') });
      expect(
        (await linkToGuest(stack, 'apple', { id_token: hashed.id_token, nonce: 'raw-nonce-2' })).answer.status,
      ).toBe(200);
      expectError(
        await signInWith(stack, 'apple', { id_token: hashed.id_token, nonce: 'raw-nonce-1' }),
        400,
        'invalid_token',
      );
    });

    it('accepts a token without nonce from a device that says nonce_supported: false', async () => {
      const token = await stack.emulator.mintIdToken('apple', { claims: { nonce_supported: false } });
      expect(
        (await linkToGuest(stack, 'apple', { id_token: token.id_token, nonce: 'sent-anyway' })).answer.status,
      ).toBe(200);
      const supported = await stack.emulator.mintIdToken('apple');
      expectError(
        await signInWith(stack, 'apple', { id_token: supported.id_token, nonce: 'sent-anyway' }),
        400,
        'invalid_token',
      );
    });

    it('keeps the name of the first authorization for display, and a later sign-in without it never erases it', async () => {
      const code = await stack.emulator.mintAppleCode({ name: 'Grace Hopper' });
      expect(code.user).toBeDefined();
      const { user, answer } = await linkToGuest(stack, 'apple', {
        id_token: code.id_token,
        code: code.code,
        user: code.user,
      });
      expect(answer.status).toBe(200);
      expect(await extraDataOf(stack, user.access_token, 'apple')).toMatchObject({
        first_name: 'Grace',
        last_name: 'Hopper',
      });
      const again = await stack.emulator.mintIdToken('apple', { sub: code.sub });
      expect((await signInWith(stack, 'apple', { id_token: again.id_token })).body.id).toBe(user.id);
      expect(
        (
          await signInWith(stack, 'apple', {
            id_token: again.id_token,
            user: { name: { firstName: '', lastName: '' } },
          })
        ).status,
      ).toBe(200);
      expect(await extraDataOf(stack, user.access_token, 'apple')).toMatchObject({
        first_name: 'Grace',
        last_name: 'Hopper',
      });
      // The object form (what a native app forwards) works as well as the web's JSON text; garbage is a 400.
      const other = await stack.emulator.mintIdToken('apple');
      expect(
        (
          await linkToGuest(stack, 'apple', {
            id_token: other.id_token,
            user: { name: { firstName: 'Alan', lastName: 'Turing' } },
          })
        ).answer.status,
      ).toBe(200);
      expectError(
        await signInWith(stack, 'apple', { id_token: other.id_token, user: '{not json' }),
        400,
        'invalid_request',
      );
    });

    it('redeems a code sent alone whichever configured client id it was issued to, or the one the app names', async () => {
      const web = await stack.emulator.mintAppleCode({ client_id: APPLE_WEB_ID });
      const { answer } = await linkToGuest(stack, 'apple', { code: web.code });
      expect(answer.body.association?.uid).toBe(web.sub);
      const named = await stack.emulator.mintAppleCode({ client_id: APPLE_WEB_ID });
      expect((await linkToGuest(stack, 'apple', { code: named.code, client_id: APPLE_WEB_ID })).answer.status).toBe(
        200,
      );
      expectError(
        (await linkToGuest(stack, 'apple', { code: named.code, client_id: 'com.unknown.app' })).answer,
        400,
        'invalid_request',
      );
    });
  });
});

describe.each(databaseKinds())('SOCIAL_AUTH_CREATE_USER=true with Sign in with Apple, on %s', (kind) => {
  const stack = sharedStack(kind, { SOCIAL_AUTH_CREATE_USER: 'true' });

  it("names the new user after the first authorization's name, and keeps it", async () => {
    const code = await stack.emulator.mintAppleCode({ name: 'Katherine Johnson' });
    const created = await call(stack.api, 'POST', '/api/auth/apple/', {
      body: { id_token: code.id_token, user: code.user },
    });
    expect(created.status).toBe(201);
    expect(created.body.username).toMatch(/^KatherineJohnson_/);
    const links = (await call(stack.api, 'GET', '/api/associations/', { token: created.body.access_token })).body;
    expect(links[0].extra_data).toMatchObject({ first_name: 'Katherine', last_name: 'Johnson' });
  });
});

// Sign in with Apple's web flow (Android) with its redirect URI, through HTTP against the emulator.

describe.each(databaseKinds())("Sign in with Apple's web flow (Android) on %s", (kind) => {
  let configured: Stack;
  let unconfigured: Stack;
  beforeAll(async () => {
    const apps = { SOCIAL_AUTH_APPLE_KEY: `${APPLE_APP},${APPLE_SERVICES_ID}` };
    [configured, unconfigured] = await Promise.all([
      startStack(kind, {
        ...apps,
        SOCIAL_AUTH_APPLE_REDIRECT_URIS: `${APPLE_SERVICES_ID}=${REDIRECT_URI},${APPLE_SERVICES_ID}=https://app.example.com/other`,
      }),
      startStack(kind, apps),
    ]);
  });
  afterAll(() => Promise.all([configured.close(), unconfigured.close()]));

  const grantKept = async (stack: Stack, uid: string) =>
    (
      await stack.db
        .selectFrom('social_associations')
        .select('provider_tokens')
        .where('provider', '=', 'apple')
        .where('uid', '=', uid)
        .executeTakeFirstOrThrow()
    ).provider_tokens !== null;

  it('redeems the code with the redirect URI configured for its Services ID: the grant is kept, to be revoked on deletion', async () => {
    const minted = await configured.emulator.mintAppleCode({
      client_id: APPLE_SERVICES_ID,
      redirect_uri: REDIRECT_URI,
    });
    const user = await guest(configured.api);
    const linked = await call(configured.api, 'POST', '/api/associate/apple/', {
      token: user.access_token,
      body: { id_token: minted.id_token, code: minted.code },
    });
    expect(linked.status, JSON.stringify(linked.body)).toBe(200);
    expect(await grantKept(configured, minted.sub)).toBe(true);
    // A code sent alone (no identity token) is redeemed the same way.
    const alone = await configured.emulator.mintAppleCode({ client_id: APPLE_SERVICES_ID, redirect_uri: REDIRECT_URI });
    expectError(
      await call(configured.api, 'POST', '/api/auth/apple/', {
        body: { code: alone.code, client_id: APPLE_SERVICES_ID },
      }),
      404,
      'user_not_found',
    );
  });

  it('the app may name another of the redirect URIs configured for that Services ID, never one that is not', async () => {
    const minted = await configured.emulator.mintAppleCode({
      client_id: APPLE_SERVICES_ID,
      redirect_uri: 'https://app.example.com/other',
    });
    const user = await guest(configured.api);
    const body = { id_token: minted.id_token, code: minted.code };
    expectError(
      await call(configured.api, 'POST', '/api/associate/apple/', {
        token: user.access_token,
        body: { ...body, redirect_uri: 'https://evil.example.com/cb' },
      }),
      400,
      'invalid_request',
    );
    expect(
      (
        await call(configured.api, 'POST', '/api/associate/apple/', {
          token: user.access_token,
          body: { ...body, redirect_uri: 'https://app.example.com/other' },
        })
      ).status,
    ).toBe(200);
    expect(await grantKept(configured, minted.sub)).toBe(true);
    // A code sent alone with its redirect URI: only the client ids it is configured for are tried.
    const alone = await configured.emulator.mintAppleCode({ client_id: APPLE_SERVICES_ID, redirect_uri: REDIRECT_URI });
    expectError(
      await call(configured.api, 'POST', '/api/auth/apple/', {
        body: { code: alone.code, redirect_uri: REDIRECT_URI },
      }),
      404,
      'user_not_found',
    );
  });

  it('a code Apple will not redeem beside a valid identity token: the sign-in goes on without a grant, and the operator is told what to set', async () => {
    const minted = await unconfigured.emulator.mintAppleCode({
      client_id: APPLE_SERVICES_ID,
      redirect_uri: REDIRECT_URI,
    });
    const user = await guest(unconfigured.api);
    const linked = await call(unconfigured.api, 'POST', '/api/associate/apple/', {
      token: user.access_token,
      body: { id_token: minted.id_token, code: minted.code },
    });
    expect(linked.status, JSON.stringify(linked.body)).toBe(200);
    expect(await grantKept(unconfigured, minted.sub)).toBe(false);
    const warning = unconfigured.logs
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.level === 40 && line.provider === 'apple');
    expect(warning).toMatchObject({
      reason: expect.stringMatching(/invalid_grant/),
      hint: expect.stringContaining(`SOCIAL_AUTH_APPLE_REDIRECT_URIS=${APPLE_SERVICES_ID}=`),
    });
    expect(JSON.stringify(linked.body)).not.toMatch(/SOCIAL_AUTH_/);
    // With no identity token the code is the only proof: refused.
    const alone = await unconfigured.emulator.mintAppleCode({
      client_id: APPLE_SERVICES_ID,
      redirect_uri: REDIRECT_URI,
    });
    expectError(
      await call(unconfigured.api, 'POST', '/api/auth/apple/', {
        body: { code: alone.code, client_id: APPLE_SERVICES_ID },
      }),
      400,
      'invalid_token',
    );
  });

  it('refuses settings that Apple would refuse', () => {
    const base = { SOCIAL_AUTH_APPLE_KEY: APPLE_SERVICES_ID };
    expect(() =>
      loadConfig({ ...base, SOCIAL_AUTH_APPLE_REDIRECT_URIS: `${APPLE_SERVICES_ID}=http://app.example.com/cb` }),
    ).toThrow(/must be an https URL/);
    expect(() => loadConfig({ ...base, SOCIAL_AUTH_APPLE_REDIRECT_URIS: `com.unknown=${REDIRECT_URI}` })).toThrow(
      /client id of SOCIAL_AUTH_APPLE_KEY/,
    );
    expect(() => loadConfig({ ...base, SOCIAL_AUTH_APPLE_REDIRECT_URIS: REDIRECT_URI })).toThrow(
      /SOCIAL_AUTH_APPLE_REDIRECT_URIS/,
    );
  });
});

// The providers' lifecycle callbacks (src/core/provider-callbacks.ts), driven through HTTP by the emulator, which signs
// them as the provider does (the recorded tokens of test/fixtures/callbacks/: test/callback-contract.test.ts).

describe.each(databaseKinds())('Apple server-to-server notifications on %s', (kind) => {
  const stack = sharedStack(kind, {
    SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
    SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 5).toString('base64')}`,
  });

  const notify = (input: { type: string; sub: string; email?: string; client_id?: string; forge?: string }) =>
    stack.emulator.sendAppleNotification({ ...input, url: `${stack.api}/api/providers/apple/notifications` });

  async function appleUser(withCode = false) {
    const body = withCode
      ? { code: (await stack.emulator.mintAppleCode({})).code }
      : { id_token: (await stack.emulator.mintIdToken('apple', {})).id_token };
    const { user, answer: linked } = await linkToGuest(stack, 'apple', body);
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
