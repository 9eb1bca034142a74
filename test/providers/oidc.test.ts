import { beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest } from '../helpers.js';
import { linkToGuest, realBreakerStack, sharedStack, signInWith } from './flows.js';

// OpenID Connect issuers through HTTP against the emulator: Microsoft's multi-tenant issuers (accepted tenants, a key
// of another tenant, one account per tenant and sub), its issuer aliases and keys without an issuer. Elsewhere: a plain
// issuer's ID tokens among the others (id-tokens.test.ts), the recorded answers replayed (fixtures.test.ts), what an
// issuer requires of a request (requests.test.ts).

const TENANT_A = '3c1a5f0e-8a7b-4c2d-9e6f-112233445566';
const TENANT_B = '7d2b6e1f-9b8c-4d3e-8f70-665544332211';
const CONSUMERS = '9188040d-6c67-4c5b-b112-36a304b66dad';

// The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
// test/fixtures/providers/), through HTTP: server, emulator and database for real.

describe.each(databaseKinds())('real-provider behaviour on %s', (kind) => {
  const stack = realBreakerStack(kind, { SOCIAL_AUTH_OIDC_MICROSOFT_TENANTS: `${TENANT_A},${CONSUMERS}` });

  describe('Microsoft (multi-tenant OpenID Connect)', () => {
    it('signs in users of the accepted tenants; refuses another tenant, and an iss that names another tenant than tid', async () => {
      const a = await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A });
      const { answer } = await linkToGuest(stack, 'oidc:microsoft', { id_token: a.id_token });
      expect(answer.status).toBe(200);
      expect(
        (
          await signInWith(stack, 'oidc:microsoft', {
            id_token: (await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A })).id_token,
          })
        ).status,
      ).toBe(404);
      const personal = await stack.emulator.mintMicrosoftIdToken();
      expect((await linkToGuest(stack, 'oidc:microsoft', { id_token: personal.id_token })).answer.status).toBe(200);
      expectError(
        await signInWith(stack, 'oidc:microsoft', {
          id_token: (await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_B })).id_token,
        }),
        400,
        'invalid_token',
      );
      const forged = await stack.emulator.mintMicrosoftIdToken({
        tid: TENANT_A,
        iss: stack.emulator.microsoftIssuerUrl(TENANT_B),
      });
      expectError(await signInWith(stack, 'oidc:microsoft', { id_token: forged.id_token }), 400, 'invalid_token');
    });

    it('refuses a token of one tenant signed with a key Microsoft publishes for another tenant only', async () => {
      const genuine = await stack.emulator.mintMicrosoftIdToken({ tid: CONSUMERS, signing_key: 'consumers' });
      expect((await linkToGuest(stack, 'oidc:microsoft', { id_token: genuine.id_token })).answer.status).toBe(200);
      const crossTenant = await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A, signing_key: 'consumers' });
      const answer = await signInWith(stack, 'oidc:microsoft', { id_token: crossTenant.id_token });
      expectError(answer, 400, 'invalid_token');
      expect(answer.body.detail).toMatch(/key of another issuer/);
    });

    it('names an account by its tenant and sub: the same sub in two tenants is two accounts', async () => {
      const a = await stack.emulator.mintMicrosoftIdToken({ tid: TENANT_A, sub: 'same-person-id' });
      const { answer } = await linkToGuest(stack, 'oidc:microsoft', { id_token: a.id_token });
      expect(answer.body.association.uid).toBe(`${TENANT_A}:${a.claims.sub}`);
      const other = await stack.emulator.mintMicrosoftIdToken({ tid: CONSUMERS, sub: 'same-person-id' });
      expect(other.claims.sub).toBe(a.claims.sub);
      expect((await signInWith(stack, 'oidc:microsoft', { id_token: other.id_token })).status).toBe(404);
    });
  });
});

// Microsoft's issuer aliases and keys without an issuer, through HTTP against the emulator.

describe.each(databaseKinds())('Microsoft on %s', (kind) => {
  const stack = sharedStack(kind, (emulator) => ({
    // Personal accounts only, and one organisation named by its domain: each discovery document names the tenant's id.
    SOCIAL_AUTH_OIDC_PERSONAL_ISSUER: `${emulator}/microsoft/consumers/v2.0`,
    SOCIAL_AUTH_OIDC_PERSONAL_KEY: '00000000-0000-4000-8000-00000000dev1',
    SOCIAL_AUTH_OIDC_CONTOSO_ISSUER: `${emulator}/microsoft/contoso.onmicrosoft.com/v2.0`,
    SOCIAL_AUTH_OIDC_CONTOSO_KEY: '00000000-0000-4000-8000-00000000dev1',
  }));
  let contosoTenant: string;
  beforeAll(async () => {
    const discovery = (await (
      await fetch(`${stack.emulatorUrl}/microsoft/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration`)
    ).json()) as { issuer: string };
    contosoTenant = /\/([0-9a-f-]{36})\/v2\.0$/.exec(discovery.issuer)![1]!;
  });

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
