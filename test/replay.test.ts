import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdTokenProvider } from '@social-link/emulator';
import { loadConfig } from '../src/config/config.js';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse (README "Security"): an ID token signs in once, so a stolen one cannot be used
// again before it expires; the same client's quick retry is let through; a failed attempt uses nothing up.
// Server-issued nonces are used once, whatever the setting. The default (allow) is at the end of this file.

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
const from = (agent: string) => ({ 'user-agent': agent });

describe.each(databaseKinds())('SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_AUTH_ID_TOKEN_REPLAY: 'refuse' });
  });
  afterAll(() => stack.close());

  const auth = (provider: string, body: Record<string, string>, agent = 'Phone/1') =>
    call(stack.api, 'POST', `/api/auth/${provider}/`, { body, headers: from(agent) });

  // Every provider whose app sends an ID token; LINE's is checked by LINE itself, the others against keys.
  const providers: Array<{ name: string; mint: () => Promise<string> }> = [
    ...(['google', 'apple', 'facebook', 'oidc:example'] as IdTokenProvider[]).map((name) => ({
      name,
      mint: async () => (await stack.emulator.mintIdToken(name)).id_token,
    })),
    { name: 'line', mint: async () => (await stack.emulator.mintLineToken()).id_token! },
  ];

  it.each(providers)('$name: a used ID token is refused from another client', async ({ name, mint }) => {
    const idToken = await mint();
    const user = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', `/api/associate/${name}/`, {
          token: user.access_token,
          body: { id_token: idToken },
          headers: from('Phone/1'),
        })
      ).status,
    ).toBe(200);
    const thief = await auth(name, { id_token: idToken }, 'Thief/1');
    expectError(thief, 400, 'invalid_token');
    expect(thief.body.detail).toMatch(/used already/);
  });

  it.each(['google', 'apple', 'facebook', 'oidc:example'] as IdTokenProvider[])(
    "%s: another spelling of a used token (padding, the signature's spare bits) is the same token",
    async (name) => {
      const { id_token: idToken } = await stack.emulator.mintIdToken(name);
      const user = await guest(stack.api);
      expect(
        (
          await call(stack.api, 'POST', `/api/associate/${name}/`, {
            token: user.access_token,
            body: { id_token: idToken },
          })
        ).status,
      ).toBe(200);
      // RS256 signatures are 256 bytes: base64url leaves 4 spare bits in the last character, which decoders ignore.
      const last = idToken.at(-1)!;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const sameBits = alphabet
        .slice(alphabet.indexOf(last) & ~0b1111, (alphabet.indexOf(last) & ~0b1111) + 16)
        .replace(last, '');
      for (const variant of [
        `${idToken}==`,
        `${idToken.slice(0, -1)}${sameBits[0]}`,
        `${idToken.slice(0, -1)}${sameBits[7]}`,
      ]) {
        const answer = await auth(name, { id_token: variant }, 'Thief/2');
        expectError(answer, 400, 'invalid_token');
        expect(answer.body.detail).toMatch(/used already/); // it verified: only its use is refused
      }
    },
  );

  it("lets the same client's retry through within the window, twice: the same user, a new session", async () => {
    const token = await stack.emulator.mintIdToken('google');
    const user = await guest(stack.api);
    await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: token.id_token },
    });
    const fresh = await stack.emulator.mintIdToken('google', { sub: token.sub, name: 'another token' }); // RS256 is deterministic: other claims, other token
    const first = await auth('google', { id_token: fresh.id_token });
    const retry = await auth('google', { id_token: fresh.id_token });
    expect([first.status, retry.status]).toEqual([200, 200]);
    expect(retry.body.id).toBe(user.id);
    expect(retry.body.refresh_token).not.toBe(first.body.refresh_token);
    // Twice at most: more is not a phone that lost an answer.
    expect((await auth('google', { id_token: fresh.id_token })).status).toBe(200);
    expectError(await auth('google', { id_token: fresh.id_token }), 400, 'invalid_token');
  });

  it('a failed attempt uses nothing up: auth 404, then associate with the same token, then sign in', async () => {
    const token = await stack.emulator.mintIdToken('google');
    expectError(await auth('google', { id_token: token.id_token }, 'Phone/2'), 404, 'user_not_found');
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: token.id_token },
      headers: from('Phone/2'),
    });
    expect(linked.status).toBe(200);
    expectError(await auth('google', { id_token: token.id_token }, 'Elsewhere/1'), 400, 'invalid_token');
  });

  it('of concurrent first uses from different clients, exactly one signs in', async () => {
    const token = await stack.emulator.mintIdToken('google');
    const user = await guest(stack.api);
    const seed = await stack.emulator.mintIdToken('google', { sub: token.sub, name: 'another token' });
    await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: seed.id_token },
    });
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => auth('google', { id_token: token.id_token }, `Racer/${i}`)),
    );
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1);
    for (const answer of answers.filter((answer) => answer.status !== 200)) expectError(answer, 400, 'invalid_token');
  });

  it('a server-issued nonce is used once: by the token that carries it (Apple: its SHA-256), never by another', async () => {
    const issued = await call(stack.api, 'POST', '/api/nonce/');
    expect(issued.status).toBe(200);
    expect(issued.body).toEqual({ nonce: expect.stringMatching(/^sln_[\w-]{32}$/), expires_in: 600 });
    const { nonce } = issued.body as { nonce: string };
    const token = await stack.emulator.mintAppleCode({ nonce: sha256(nonce) });
    const user = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/apple/', {
          token: user.access_token,
          body: { id_token: token.id_token, nonce },
        })
      ).status,
    ).toBe(200);
    // Another token minted with the same nonce (the SDK asked twice): the nonce is used up.
    const again = await stack.emulator.mintIdToken('apple', { sub: token.sub, nonce: sha256(nonce) });
    const refused = await auth('apple', { id_token: again.id_token, nonce });
    expectError(refused, 400, 'invalid_token');
    expect(refused.body.detail).toMatch(/nonce has expired, was used already/);
    // A nonce that looks issued but was not.
    const forged = await stack.emulator.mintIdToken('google', { nonce: 'sln_made-up-by-the-app' });
    expectError(
      await auth('google', { id_token: forged.id_token, nonce: 'sln_made-up-by-the-app' }),
      400,
      'invalid_token',
    );
  });

  it('expired nonces and used tokens are forgotten by the sweep, not before', async () => {
    const storage = new Storage(stack.db);
    const past = new Date(Date.now() - 1000).toISOString();
    await storage.proofs.issueNonce(sha256('expired'), past);
    await storage.proofs.issueNonce(sha256('live'), new Date(Date.now() + 60_000).toISOString());
    await storage.proofs.purge();
    const left = (await stack.db.selectFrom('nonces').select('nonce_hash').execute()).map((row) => row.nonce_hash);
    expect(left).toContain(sha256('live'));
    expect(left).not.toContain(sha256('expired'));
    expect(
      await stack.db
        .selectFrom('id_token_uses')
        .select('token_hash')
        .where('expires_at', '<', new Date().toISOString())
        .execute(),
    ).toEqual([]);
  });
});

describe('SOCIAL_AUTH_<P>_REQUIRE_NONCE and SOCIAL_AUTH_ID_TOKEN_REPLAY', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      SOCIAL_AUTH_GOOGLE_REQUIRE_NONCE: 'issued',
      SOCIAL_AUTH_APPLE_REQUIRE_NONCE: 'true',
      SOCIAL_AUTH_ID_TOKEN_REPLAY: 'allow',
    });
  });
  afterAll(() => stack.close());

  const auth = (provider: string, body: Record<string, string>) =>
    call(stack.api, 'POST', `/api/auth/${provider}/`, { body });
  const nonce = async () => (await call(stack.api, 'POST', '/api/nonce/')).body.nonce as string;

  it('true: a nonce must be sent and carried by the token; a device without nonces is refused', async () => {
    const without = await stack.emulator.mintIdToken('apple');
    expectError(await auth('apple', { id_token: without.id_token }), 400, 'invalid_request');
    expectError(await auth('apple', { id_token: without.id_token, nonce: 'n-1' }), 400, 'invalid_token');
    const unsupported = await stack.emulator.mintIdToken('apple', { claims: { nonce_supported: false } });
    expectError(await auth('apple', { id_token: unsupported.id_token, nonce: 'n-1' }), 400, 'invalid_token');
    const carried = await stack.emulator.mintIdToken('apple', { nonce: sha256('n-2') });
    expectError(await auth('apple', { id_token: carried.id_token, nonce: 'n-2' }), 404, 'user_not_found'); // verified: just unknown
  });

  it('issued: only a nonce from POST /api/nonce/ passes, and an access token (no nonce) is refused', async () => {
    const chosen = await stack.emulator.mintIdToken('google', { nonce: 'chosen-by-the-app' });
    const refused = await auth('google', { id_token: chosen.id_token, nonce: 'chosen-by-the-app' });
    expectError(refused, 400, 'invalid_token');
    expect(refused.body.detail).toMatch(/not issued by this server/);
    const issued = await nonce();
    const token = await stack.emulator.mintIdToken('google', { nonce: issued });
    expectError(await auth('google', { id_token: token.id_token, nonce: issued }), 404, 'user_not_found');
    const access = await stack.emulator.mintGoogleAccessToken();
    expectError(await auth('google', { access_token: access.access_token }), 400, 'invalid_request');
  });

  it('ID_TOKEN_REPLAY=allow: a used ID token signs in again, from anywhere', async () => {
    const token = await stack.emulator.mintIdToken('oidc:example');
    const user = await guest(stack.api);
    await call(stack.api, 'POST', '/api/associate/oidc:example/', {
      token: user.access_token,
      body: { id_token: token.id_token },
    });
    for (const agent of ['A/1', 'B/1']) {
      expect(
        (
          await call(stack.api, 'POST', '/api/auth/oidc:example/', {
            body: { id_token: token.id_token },
            headers: from(agent),
          })
        ).body.id,
      ).toBe(user.id);
    }
  });

  it('refuses settings it does not know', () => {
    expect(() => loadConfig({ SOCIAL_AUTH_GOOGLE_KEY: 'web', SOCIAL_AUTH_GOOGLE_REQUIRE_NONCE: 'always' })).toThrow(
      /SOCIAL_AUTH_GOOGLE_REQUIRE_NONCE must be false, true or issued/,
    );
    expect(() => loadConfig({ SOCIAL_AUTH_ID_TOKEN_REPLAY: 'sometimes' })).toThrow(
      /SOCIAL_AUTH_ID_TOKEN_REPLAY must be refuse or allow/,
    );
  });
});

describe('SOCIAL_AUTH_ID_TOKEN_RETRY_SECONDS', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      SOCIAL_AUTH_ID_TOKEN_REPLAY: 'refuse',
      SOCIAL_AUTH_ID_TOKEN_RETRY_SECONDS: '1',
    });
  });
  afterAll(() => stack.close());

  it("past the window the same client's second use is a replay too", async () => {
    const token = await stack.emulator.mintIdToken('google');
    const user = await guest(stack.api);
    const link = () =>
      call(stack.api, 'POST', '/api/associate/google/', {
        token: user.access_token,
        body: { id_token: token.id_token },
      });
    expect((await link()).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expectError(await link(), 400, 'invalid_token');
  });
});

describe.each(databaseKinds())('the default (SOCIAL_AUTH_ID_TOKEN_REPLAY=allow) on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  const auth = (provider: string, body: Record<string, string>, agent = 'Phone/1') =>
    call(stack.api, 'POST', `/api/auth/${provider}/`, { body, headers: from(agent) });

  // Google's silentSignIn, GoogleSignIn-iOS's restorePreviousSignIn and Facebook's AuthenticationToken.current hand
  // the app the token it already has (test/fixtures/sdk-flows/): the next launch sends it again.
  it.each(['google', 'apple', 'facebook', 'oidc:example'] as IdTokenProvider[])(
    "%s: an app's cached ID token signs in again at the next launch, until it expires",
    async (name) => {
      const token = await stack.emulator.mintIdToken(name);
      const user = await guest(stack.api);
      expect(
        (
          await call(stack.api, 'POST', `/api/associate/${name}/`, {
            token: user.access_token,
            body: { id_token: token.id_token },
          })
        ).status,
      ).toBe(200);
      for (const launch of ['Phone/1', 'Phone/1', 'Phone/1 (after an update)']) {
        const again = await auth(name, { id_token: token.id_token }, launch);
        expect(again.status, JSON.stringify(again.body)).toBe(200);
        expect(again.body.id).toBe(user.id);
      }
      const expired = await stack.emulator.mintIdToken(name, { sub: token.sub, expires_in: -120 });
      expectError(await auth(name, { id_token: expired.id_token }), 400, 'invalid_token');
    },
  );

  it('a server-issued nonce stays single use: the token that carried it does not sign in twice', async () => {
    const { nonce } = (await call(stack.api, 'POST', '/api/nonce/')).body as { nonce: string };
    // Firebase's and Supabase's convention: the SDK gets the SHA-256 of the nonce, the backend the nonce.
    const token = await stack.emulator.mintIdToken('google', { nonce: sha256(nonce) });
    const user = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/google/', {
          token: user.access_token,
          body: { id_token: token.id_token, nonce },
        })
      ).status,
    ).toBe(200);
    // Whatever is sent beside it: nothing, or the hash the token shows, or the nonce again.
    for (const body of [
      { id_token: token.id_token },
      { id_token: token.id_token, nonce: sha256(nonce) },
      { id_token: token.id_token, nonce },
    ] as Array<Record<string, string>>) {
      const again = await auth('google', body, 'Elsewhere/1');
      expectError(again, 400, 'invalid_token');
      expect(again.body.detail).toMatch(/used already/);
    }
    // The same holds for an issued nonce the SDK was given as it is.
    const { nonce: raw } = (await call(stack.api, 'POST', '/api/nonce/')).body as { nonce: string };
    const plain = await stack.emulator.mintIdToken('apple', { nonce: raw });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/apple/', {
          token: user.access_token,
          body: { id_token: plain.id_token, nonce: raw },
        })
      ).status,
    ).toBe(200);
    expectError(await auth('apple', { id_token: plain.id_token }, 'Elsewhere/2'), 400, 'invalid_token');
  });

  it.each(['google', 'apple', 'facebook', 'oidc:example'] as IdTokenProvider[])(
    '%s: the nonce the app sent, or its SHA-256 hex in the token; any other is refused',
    async (name) => {
      for (const [inToken, sent] of [
        ['n-raw-1', 'n-raw-1'],
        [sha256('n-raw-2'), 'n-raw-2'],
      ]) {
        const token = await stack.emulator.mintIdToken(name, { nonce: inToken });
        expectError(await auth(name, { id_token: token.id_token, nonce: sent! }), 404, 'user_not_found'); // verified: just unknown
      }
      const hashedSent = await stack.emulator.mintIdToken(name, { nonce: 'n-raw-3' });
      expectError(await auth(name, { id_token: hashedSent.id_token, nonce: sha256('n-raw-3') }), 400, 'invalid_token');
      const other = await stack.emulator.mintIdToken(name, { nonce: sha256('n-raw-4') });
      expectError(await auth(name, { id_token: other.id_token, nonce: 'n-raw-5' }), 400, 'invalid_token');
    },
  );
});
