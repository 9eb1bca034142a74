import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
// test/fixtures/providers/), through HTTP: server, emulator and database for real.

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
const APPLE_WEB_ID = 'com.example.sociallink.web';
const TENANT_A = '3c1a5f0e-8a7b-4c2d-9e6f-112233445566';
const TENANT_B = '7d2b6e1f-9b8c-4d3e-8f70-665544332211';
const CONSUMERS = '9188040d-6c67-4c5b-b112-36a304b66dad';

describe.each(databaseKinds())('real-provider behaviour on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, {
      // The real breaker: a flood of refused tokens must not open it.
      SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '5',
      SOCIAL_AUTH_APPLE_KEY: `com.example.sociallink,${APPLE_WEB_ID}`,
      SOCIAL_AUTH_OIDC_MICROSOFT_TENANTS: `${TENANT_A},${CONSUMERS}`,
    });
  });
  afterAll(() => stack.close());
  afterEach(() => stack.emulator.clearFaults());

  const auth = (provider: string, body: Record<string, unknown>) =>
    call(stack.api, 'POST', `/api/auth/${provider}/`, { body });
  const associate = async (provider: string, body: Record<string, unknown>) => {
    const user = await guest(stack.api);
    const answer = await call(stack.api, 'POST', `/api/associate/${provider}/`, { token: user.access_token, body });
    return { user, answer };
  };
  const extraData = async (accessToken: string, provider: string) => {
    const links = (await call(stack.api, 'GET', '/api/associations/', { token: accessToken })).body as Array<{
      provider: string;
      extra_data: Record<string, unknown>;
    }>;
    return links.find((link) => link.provider === provider)?.extra_data;
  };
  const graphCalls = async () => (await stack.emulator.stats()).requests.facebook ?? 0;

  describe('Facebook', () => {
    it("refuses another app's token 400 invalid_token; 100 foreign or garbage tokens leave the circuit closed", async () => {
      const mine = await stack.emulator.mintFacebookToken();
      expect((await associate('facebook', { access_token: mine.access_token })).answer.status).toBe(200);
      for (let i = 0; i < 50; i++) {
        const foreign = await stack.emulator.mintFacebookToken({ app_id: `9${i}0000000000` });
        const answer = await auth('facebook', { access_token: foreign.access_token });
        expectError(answer, 400, 'invalid_token');
        expect(answer.body.detail).toMatch(/another app/);
        expectError(await auth('facebook', { access_token: `EAAgarbage${i}` }), 400, 'invalid_token');
      }
      // The circuit is closed: a valid token signs in at once (an open one would answer 503 without asking Graph).
      expect((await auth('facebook', { access_token: mine.access_token })).status).toBe(200);
    });

    it('signs a linked account in with one Graph call; a new link reads the profile too; a stale profile is read again', async () => {
      const token = await stack.emulator.mintFacebookToken({ user: { name: 'Ada Lovelace' } });
      let before = await graphCalls();
      const { user } = await associate('facebook', { access_token: token.access_token });
      expect(await graphCalls()).toBe(before + 2); // debug_token and /me
      expect(await extraData(user.access_token, 'facebook')).toMatchObject({
        name: 'Ada Lovelace',
        profile_read_at: expect.any(Number),
      });

      before = await graphCalls();
      expect((await auth('facebook', { access_token: token.access_token })).body.id).toBe(user.id);
      expect(await graphCalls()).toBe(before + 1); // debug_token alone
      expect(await extraData(user.access_token, 'facebook')).toMatchObject({ name: 'Ada Lovelace' }); // kept, not erased

      // A day later (SOCIAL_AUTH_PROFILE_MAX_AGE), the name changed at Facebook: read again.
      await stack.emulator.mintFacebookToken({ user: { id: token.user_id, name: 'Ada King' } });
      await stack.db
        .updateTable('social_associations')
        .set({
          extra_data: JSON.stringify({ ...(await extraData(user.access_token, 'facebook')), profile_read_at: 1 }),
        })
        .where('provider', '=', 'facebook')
        .where('uid', '=', token.user_id)
        .execute();
      before = await graphCalls();
      expect((await auth('facebook', { access_token: token.access_token })).status).toBe(200);
      expect(await graphCalls()).toBe(before + 2);
      expect(await extraData(user.access_token, 'facebook')).toMatchObject({ name: 'Ada King' });
    });

    it('refuses a token the user revoked (code 190, subcode 460)', async () => {
      const token = await stack.emulator.mintFacebookToken();
      await stack.emulator.revokeToken(token.access_token);
      expectError(await auth('facebook', { access_token: token.access_token }), 400, 'invalid_token');
    });
  });

  describe('Google', () => {
    it("signs in a native app's token: aud = our web client id, azp = any Android or iOS client id", async () => {
      const native = await stack.emulator.mintIdToken('google'); // aud web id, azp the emulated Android app
      expect(native.claims.azp).not.toBe(native.claims.aud);
      const { user, answer } = await associate('google', { id_token: native.id_token });
      expect(answer.status).toBe(200);
      const other = await stack.emulator.mintIdToken('google', {
        sub: native.sub,
        azp: '999-another-signing-key.apps.googleusercontent.com',
      });
      expect((await auth('google', { id_token: other.id_token })).body.id).toBe(user.id);
    });
  });

  describe('Apple', () => {
    it('accepts the nonce as the app passed it to Apple, or as its SHA-256', async () => {
      const raw = await stack.emulator.mintIdToken('apple', { nonce: 'raw-nonce-1' });
      expect((await associate('apple', { id_token: raw.id_token, nonce: 'raw-nonce-1' })).answer.status).toBe(200);
      const hashed = await stack.emulator.mintIdToken('apple', { nonce: sha256('raw-nonce-2') });
      expect((await associate('apple', { id_token: hashed.id_token, nonce: 'raw-nonce-2' })).answer.status).toBe(200);
      expectError(await auth('apple', { id_token: hashed.id_token, nonce: 'raw-nonce-1' }), 400, 'invalid_token');
    });

    it('accepts a token without nonce from a device that says nonce_supported: false', async () => {
      const token = await stack.emulator.mintIdToken('apple', { claims: { nonce_supported: false } });
      expect((await associate('apple', { id_token: token.id_token, nonce: 'sent-anyway' })).answer.status).toBe(200);
      const supported = await stack.emulator.mintIdToken('apple');
      expectError(await auth('apple', { id_token: supported.id_token, nonce: 'sent-anyway' }), 400, 'invalid_token');
    });

    it('keeps the name of the first authorization for display, and a later sign-in without it never erases it', async () => {
      const code = await stack.emulator.mintAppleCode({ name: 'Grace Hopper' });
      expect(code.user).toBeDefined();
      const { user, answer } = await associate('apple', { id_token: code.id_token, code: code.code, user: code.user });
      expect(answer.status).toBe(200);
      expect(await extraData(user.access_token, 'apple')).toMatchObject({ first_name: 'Grace', last_name: 'Hopper' });
      const again = await stack.emulator.mintIdToken('apple', { sub: code.sub });
      expect((await auth('apple', { id_token: again.id_token })).body.id).toBe(user.id);
      expect(
        (await auth('apple', { id_token: again.id_token, user: { name: { firstName: '', lastName: '' } } })).status,
      ).toBe(200);
      expect(await extraData(user.access_token, 'apple')).toMatchObject({ first_name: 'Grace', last_name: 'Hopper' });
      // The object form (what a native app forwards) works as well as the web's JSON text; garbage is a 400.
      const other = await stack.emulator.mintIdToken('apple');
      expect(
        (
          await associate('apple', {
            id_token: other.id_token,
            user: { name: { firstName: 'Alan', lastName: 'Turing' } },
          })
        ).answer.status,
      ).toBe(200);
      expectError(await auth('apple', { id_token: other.id_token, user: '{not json' }), 400, 'invalid_request');
    });

    it('redeems a code sent alone whichever configured client id it was issued to, or the one the app names', async () => {
      const web = await stack.emulator.mintAppleCode({ client_id: APPLE_WEB_ID });
      const { answer } = await associate('apple', { code: web.code });
      expect(answer.body.association?.uid).toBe(web.sub);
      const named = await stack.emulator.mintAppleCode({ client_id: APPLE_WEB_ID });
      expect((await associate('apple', { code: named.code, client_id: APPLE_WEB_ID })).answer.status).toBe(200);
      expectError(
        (await associate('apple', { code: named.code, client_id: 'com.unknown.app' })).answer,
        400,
        'invalid_request',
      );
    });
  });

  describe('GitHub', () => {
    it('keeps the primary verified e-mail, which /user does not show; without the scope, none', async () => {
      const token = await stack.emulator.mintGithubToken({ user: { primary_email: 'private@users.example.com' } });
      const { user } = await associate('github', { access_token: token.access_token });
      expect(await extraData(user.access_token, 'github')).toMatchObject({ email: 'private@users.example.com' });
      const noScope = await stack.emulator.mintGithubToken({
        scopes: ['read:user'],
        user: { primary_email: 'hidden@users.example.com' },
      });
      const other = await associate('github', { access_token: noScope.access_token });
      expect(await extraData(other.user.access_token, 'github')).toMatchObject({ email: null });
    });
  });

  describe('GitHub, one call', () => {
    it('signs a linked account in with the token check alone; a new link reads /user and /user/emails too', async () => {
      const calls = async () => (await stack.emulator.stats()).requests.github ?? 0;
      const token = await stack.emulator.mintGithubToken();
      let before = await calls();
      const { user } = await associate('github', { access_token: token.access_token });
      expect(await calls()).toBe(before + 3);
      before = await calls();
      expect((await auth('github', { access_token: token.access_token })).body.id).toBe(user.id);
      expect(await calls()).toBe(before + 1);
    });
  });

  describe('Microsoft (multi-tenant OpenID Connect)', () => {
    it('signs in users of the accepted tenants; refuses another tenant, and an iss that names another tenant than tid', async () => {
      const a = await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A });
      const { answer } = await associate('oidc:microsoft', { id_token: a.id_token });
      expect(answer.status).toBe(200);
      expect(
        (
          await auth('oidc:microsoft', {
            id_token: (await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A })).id_token,
          })
        ).status,
      ).toBe(404);
      const personal = await stack.emulator.mintMicrosoftIdToken();
      expect((await associate('oidc:microsoft', { id_token: personal.id_token })).answer.status).toBe(200);
      expectError(
        await auth('oidc:microsoft', {
          id_token: (await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_B })).id_token,
        }),
        400,
        'invalid_token',
      );
      const forged = await stack.emulator.mintMicrosoftIdToken({
        tid: TENANT_A,
        iss: stack.emulator.microsoftIssuerUrl(TENANT_B),
      });
      expectError(await auth('oidc:microsoft', { id_token: forged.id_token }), 400, 'invalid_token');
    });

    it('refuses a token of one tenant signed with a key Microsoft publishes for another tenant only', async () => {
      const genuine = await stack.emulator.mintMicrosoftIdToken({ tid: CONSUMERS, signing_key: 'consumers' });
      expect((await associate('oidc:microsoft', { id_token: genuine.id_token })).answer.status).toBe(200);
      const crossTenant = await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A, signing_key: 'consumers' });
      const answer = await auth('oidc:microsoft', { id_token: crossTenant.id_token });
      expectError(answer, 400, 'invalid_token');
      expect(answer.body.detail).toMatch(/key of another issuer/);
    });

    it('names an account by its tenant and sub: the same sub in two tenants is two accounts', async () => {
      const a = await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A, sub: 'same-person-id' });
      const { answer } = await associate('oidc:microsoft', { id_token: a.id_token });
      expect(answer.body.association.uid).toBe(`${TENANT_A}:${a.claims.sub}`);
      const other = await stack.emulator.mintMicrosoftIdToken({ tid: CONSUMERS, sub: 'same-person-id' });
      expect(other.claims.sub).toBe(a.claims.sub);
      expect((await auth('oidc:microsoft', { id_token: other.id_token })).status).toBe(404);
    });
  });

  describe("refusals that are the operator's or the provider's problem", () => {
    const warnLines = () =>
      stack.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.level === 40);

    it('answer 502/503 with a detail, and a warn line that says what to fix; the app never sees the hint', async () => {
      const cases: Array<{
        provider: string;
        fault: Parameters<Stack['emulator']['setFault']>[1];
        body: () => Promise<Record<string, string>>;
        status: number;
        hint: RegExp;
      }> = [
        {
          provider: 'facebook',
          fault: { mode: 'rate_limited', code: 17 },
          body: async () => ({ access_token: (await stack.emulator.mintFacebookToken()).access_token }),
          status: 503,
          hint: /throttles/,
        },
        {
          provider: 'twitter',
          fault: { mode: 'app_access_denied' },
          body: async () => {
            const t = await stack.emulator.mintTwitterToken();
            return { access_token: t.access_token, access_token_secret: t.access_token_secret };
          },
          status: 502,
          hint: /access level/,
        },
        {
          provider: 'line',
          fault: { mode: 'app_access_denied' },
          body: async () => ({ access_token: (await stack.emulator.mintLineToken()).access_token }),
          status: 502,
          hint: /plan and permissions/,
        },
        {
          provider: 'line',
          fault: { mode: 'rate_limited' },
          body: async () => ({ access_token: (await stack.emulator.mintLineToken()).access_token }),
          status: 503,
          hint: /throttles/,
        },
        {
          provider: 'github',
          fault: { mode: 'rate_limited' },
          body: async () => ({ access_token: (await stack.emulator.mintGithubToken()).access_token }),
          status: 503,
          hint: /throttles/,
        },
      ];
      for (const { provider, fault, body, status, hint } of cases) {
        const sent = await body();
        await stack.emulator.setFault(provider, fault);
        const answer = await auth(provider, sent);
        await stack.emulator.clearFaults();
        expectError(answer, status, 'provider_unavailable');
        expect(answer.body.detail, provider).toMatch(/rate-limiting this server's app|refused this server's app/);
        expect(JSON.stringify(answer.body)).not.toMatch(/SOCIAL_AUTH_|developer portal|Console/);
        const line = warnLines().find(
          (entry) => entry.provider === provider && entry.request_id === answer.body.request_id,
        );
        expect(line, `${provider}: a warn line for the operator`).toBeDefined();
        expect(String(line!.msg)).toMatch(hint);
      }
      // A rate limit may be one user's (Graph 17, X 88): ten in a row leave the circuit closed for everyone else.
      const mine = await stack.emulator.mintFacebookToken();
      expect((await associate('facebook', { access_token: mine.access_token })).answer.status).toBe(200);
      await stack.emulator.setFault('facebook', { mode: 'rate_limited', code: 17, count: 10 });
      for (let i = 0; i < 10; i++)
        expectError(await auth('facebook', { access_token: mine.access_token }), 503, 'provider_unavailable');
      expect((await auth('facebook', { access_token: mine.access_token })).status).toBe(200);
      // GitHub said when its window resets: the app is told when to try again.
      await stack.emulator.setFault('github', { mode: 'rate_limited' });
      const throttled = await auth('github', { access_token: (await stack.emulator.mintGithubToken()).access_token });
      expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(3000);
    });
  });
});

describe.each(databaseKinds())('a server with the wrong Facebook app secret, on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_AUTH_FACEBOOK_SECRET: 'not-the-app-secret' });
  });
  afterAll(() => stack.close());

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

describe.each(databaseKinds())('SOCIAL_AUTH_CREATE_USER=true with Sign in with Apple, on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_AUTH_CREATE_USER: 'true' });
  });
  afterAll(() => stack.close());

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
