import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// What real providers do at the edges, each through HTTP against the emulator: Microsoft's issuer aliases and keys
// without an issuer, a phone's clock, and Sign in with Apple's web flow (Android) with its redirect URI.

const APPLE_APP = 'com.example.sociallink';
const APPLE_SERVICES_ID = 'com.example.sociallink.android';
const REDIRECT_URI = 'https://app.example.com/callbacks/sign_in_with_apple';

describe.each(databaseKinds())('Microsoft on %s', (kind) => {
  let stack: Stack;
  let contosoTenant: string;
  beforeAll(async () => {
    stack = await startStack(kind, (emulator) => ({
      // Personal accounts only, and one organisation named by its domain: each discovery document names the tenant's id.
      SOCIAL_AUTH_OIDC_PERSONAL_ISSUER: `${emulator}/microsoft/consumers/v2.0`,
      SOCIAL_AUTH_OIDC_PERSONAL_KEY: '00000000-0000-4000-8000-00000000dev1',
      SOCIAL_AUTH_OIDC_CONTOSO_ISSUER: `${emulator}/microsoft/contoso.onmicrosoft.com/v2.0`,
      SOCIAL_AUTH_OIDC_CONTOSO_KEY: '00000000-0000-4000-8000-00000000dev1',
    }));
    const discovery = (await (
      await fetch(`${stack.emulatorUrl}/microsoft/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration`)
    ).json()) as { issuer: string };
    contosoTenant = /\/([0-9a-f-]{36})\/v2\.0$/.exec(discovery.issuer)![1]!;
  });
  afterAll(() => stack.close());

  it('an issuer configured as …/consumers/v2.0 signs personal accounts in (its document names the tenant id), and no other tenant', async () => {
    const personal = await stack.emulator.mintMicrosoftIdToken({ signing_key: 'consumers' });
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', '/api/associate/oidc:personal/', {
      token: user.access_token,
      body: { id_token: personal.id_token },
    });
    expect(linked.status, JSON.stringify(linked.body)).toBe(200);
    expect(linked.body.association.uid).toBe(personal.claims.sub);
    const work = await stack.emulator.mintMicrosoftIdToken({ tid: contosoTenant });
    expectError(
      await call(stack.api, 'POST', '/api/auth/oidc:personal/', { body: { id_token: work.id_token } }),
      400,
      'invalid_token',
    );
  });

  it("an issuer configured with the tenant's domain name signs its users in, and no other tenant's", async () => {
    const member = await stack.emulator.mintMicrosoftIdToken({ tid: contosoTenant });
    const user = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/oidc:contoso/', {
          token: user.access_token,
          body: { id_token: member.id_token },
        })
      ).status,
    ).toBe(200);
    expect(
      (await call(stack.api, 'POST', '/api/auth/oidc:contoso/', { body: { id_token: member.id_token } })).body.id,
    ).toBe(user.id);
    const personal = await stack.emulator.mintMicrosoftIdToken();
    expectError(
      await call(stack.api, 'POST', '/api/auth/oidc:contoso/', { body: { id_token: personal.id_token } }),
      400,
      'invalid_token',
    );
  });

  it("a key published without an issuer may sign (Microsoft's validator checks a key's issuer only when it names one); a key of another tenant may not", async () => {
    const unbound = await stack.emulator.mintMicrosoftIdToken({
      tid: '72f988bf-86f1-41af-91ab-2d7cd011db47',
      signing_key: 'unbound',
    });
    expectError(
      await call(stack.api, 'POST', '/api/auth/oidc:microsoft/', { body: { id_token: unbound.id_token } }),
      404,
      'user_not_found',
    ); // verified: just unknown
    const crossTenant = await stack.emulator.mintMicrosoftIdToken({
      tid: '72f988bf-86f1-41af-91ab-2d7cd011db47',
      signing_key: 'consumers',
    });
    expectError(
      await call(stack.api, 'POST', '/api/auth/oidc:microsoft/', { body: { id_token: crossTenant.id_token } }),
      400,
      'invalid_token',
    );
  });
});

describe('Facebook Limited Login', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite');
  });
  afterAll(() => stack.close());

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
