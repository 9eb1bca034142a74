import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  SignJWT,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  generateKeyPair,
  importJWK,
  jwtVerify,
  type JWK,
} from 'jose';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

describe.each(databaseKinds())('users and sessions on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  describe('POST /api/users/', () => {
    it('an empty body, or none at all, makes a guest user with a token pair', async () => {
      for (const options of [{}, { body: {} }, { raw: '', headers: { 'content-type': 'application/json' } }]) {
        const answer = await call(stack.api, 'POST', '/api/users/', options);
        expect(answer.status).toBe(201);
        expect(answer.body).toMatchObject({
          id: expect.any(Number),
          username: expect.stringMatching(/^guest_/),
          token_type: 'Bearer',
          expires_in: 900,
        });
        expect(answer.body.access_token).toEqual(expect.any(String));
        expect(answer.body.refresh_token).toEqual(expect.any(String));
      }
    });

    it('{username, password} makes a password user who can sign in; a taken username is 409', async () => {
      const created = await call(stack.api, 'POST', '/api/users', {
        body: { username: 'grace', password: 'correct horse battery' },
      });
      expect(created.status).toBe(201);
      expect(created.body.username).toBe('grace');
      expectError(
        await call(stack.api, 'POST', '/api/users/', { body: { username: 'grace', password: 'another password' } }),
        409,
        'username_taken',
      );
      const signedIn = await call(stack.api, 'POST', '/api/token/', {
        body: { username: 'grace', password: 'correct horse battery' },
      });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.id).toBe(created.body.id);
      const me = await call(stack.api, 'GET', '/api/me/', { token: signedIn.body.access_token });
      expect(me.body).toMatchObject({ id: created.body.id, username: 'grace', has_password: true, associations: [] });
      expect(me.body.last_login).toEqual(expect.any(String));
    });

    it('usernames differing only in case are one name: taken at sign-up (even racing), any case signs in', async () => {
      const created = await call(stack.api, 'POST', '/api/users/', {
        body: { username: 'rtalice', password: 'correct horse battery' },
      });
      expect(created.status).toBe(201);
      expectError(
        await call(stack.api, 'POST', '/api/users/', { body: { username: 'RTAlice', password: 'another password' } }),
        409,
        'username_taken',
      );
      const signedIn = await call(stack.api, 'POST', '/api/token/', {
        body: { username: 'RTALICE', password: 'correct horse battery' },
      });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.id).toBe(created.body.id);
      // Both pass the read before the insert: the unique key decides.
      const raced = await Promise.all(
        ['bob_case', 'BOB_CASE', 'Bob_Case'].map((username) =>
          call(stack.api, 'POST', '/api/users/', { body: { username, password: 'correct horse battery' } }),
        ),
      );
      expect(raced.map((answer) => answer.status).sort()).toEqual([201, 409, 409]);
    });

    it('a new user has not signed in yet: last_login is null until it does', async () => {
      const created = await call(stack.api, 'POST', '/api/users/');
      expect(
        (await call(stack.api, 'GET', '/api/me/', { token: created.body.access_token })).body.last_login,
      ).toBeNull();
    });

    it('validates usernames and passwords', async () => {
      expectError(
        await call(stack.api, 'POST', '/api/users/', { body: { username: 'ok_name' } }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/users/', { body: { username: 'ok_name', password: 'short' } }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/users/', {
          body: { username: 'no spaces!', password: 'long enough password' },
        }),
        400,
        'invalid_request',
      );
      expectError(
        await call(stack.api, 'POST', '/api/users/', {
          body: { username: 'x'.repeat(151), password: 'long enough password' },
        }),
        400,
        'invalid_request',
      );
    });
  });

  describe('POST /api/token/', () => {
    it('answers the same 401 for a wrong password, an unknown user and a guest user', async () => {
      await call(stack.api, 'POST', '/api/users/', { body: { username: 'linus', password: 'penguins rule ok' } });
      const guestUser = await guest(stack.api);
      for (const body of [
        { username: 'linus', password: 'wrong password' },
        { username: 'nobody_here', password: 'penguins rule ok' },
        { username: guestUser.username, password: 'anything at all' },
      ]) {
        const answer = await call(stack.api, 'POST', '/api/token/', { body });
        expectError(answer, 401, 'invalid_credentials');
        expect(answer.body.message).toBe('Unable to log in with provided credentials');
      }
    });
  });

  describe('access tokens', () => {
    it('are ES256 JWTs verifiable with /.well-known/jwks.json', async () => {
      const user = await guest(stack.api);
      const jwks = await call(stack.api, 'GET', '/.well-known/jwks.json');
      expect(jwks.status).toBe(200);
      expect(jwks.body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      expect(jwks.body.keys[0].d).toBeUndefined(); // never the private part
      const remote = createRemoteJWKSet(new URL(`${stack.api}/.well-known/jwks.json`));
      const { payload, protectedHeader } = await jwtVerify(user.access_token, remote, {
        issuer: 'social-link',
        audience: 'social-link',
      });
      expect(protectedHeader.alg).toBe('ES256');
      expect(payload.sub).toBe(String(user.id));
      expect(payload.exp! - payload.iat!).toBe(900);
    });

    it('refuses a forged token: alg none, a token signed by another key, and a tampered payload', async () => {
      const user = await guest(stack.api);
      const [header, payload, signature] = user.access_token.split('.');
      const claims = decodeJwt(user.access_token);
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const none = `${b64({ alg: 'none', typ: 'at+jwt' })}.${payload}.`;
      const tampered = `${header}.${b64({ ...claims, sub: '1' })}.${signature}`;
      for (const token of [none, tampered, `${header}.${payload}.${'A'.repeat(86)}`]) {
        expectError(await call(stack.api, 'GET', '/api/me/', { token }), 401, 'invalid_access_token');
      }
      // Our own keys do not verify it either once tampered: the refusal is the signature, not a DB miss.
      const jwks = createLocalJWKSet((await call(stack.api, 'GET', '/.well-known/jwks.json')).body);
      await expect(jwtVerify(tampered, jwks)).rejects.toThrow();
    });

    it('refuses tokens made with a key or claims we did not sign: alg confusion, foreign key, unknown kid, wrong typ/aud/iss', async () => {
      const keySet = await generateSigningKeySet();
      const own = await startStack(kind, { SOCIAL_LINK_SIGNING_KEYS: keySet });
      try {
        const user = await guest(own.api);
        const claims = decodeJwt(user.access_token);
        const privateJwk = (JSON.parse(keySet) as { keys: JWK[] }).keys[0]!;
        const { d: _d, ...publicJwk } = privateJwk;
        const ourKey = await importJWK(privateJwk, 'ES256');
        const foreign = (await generateKeyPair('ES256')).privateKey;
        const signed = (
          header: Record<string, unknown>,
          body: Record<string, unknown>,
          key: Parameters<SignJWT['sign']>[0],
        ) =>
          new SignJWT(body)
            .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: privateJwk.kid, ...header } as { alg: string })
            .sign(key);
        const hmacWith = (secret: string) => signed({ alg: 'HS256' }, claims, new TextEncoder().encode(secret));
        // The control: our key, our claims, verifies.
        expect((await call(own.api, 'GET', '/api/me/', { token: await signed({}, claims, ourKey) })).status).toBe(200);
        const attacks = {
          'HS256 keyed with our public JWK': await hmacWith(JSON.stringify(publicJwk)),
          'HS256 keyed with our public x coordinate': await hmacWith(publicJwk.x!),
          'another ES256 key claiming our kid': await signed({}, claims, foreign),
          'an unknown kid': await signed({ kid: 'not-ours' }, claims, ourKey),
          'no kid': await signed({ kid: undefined }, claims, ourKey),
          'typ JWT (not an access token)': await signed({ typ: 'JWT' }, claims, ourKey),
          'another audience': await signed({}, { ...claims, aud: 'someone-else' }, ourKey),
          'another issuer': await signed({}, { ...claims, iss: 'someone-else' }, ourKey),
          'no session id': await signed({}, { ...claims, sid: undefined }, ourKey),
          'no audience': await signed({}, { ...claims, aud: undefined }, ourKey),
          'no issuer': await signed({}, { ...claims, iss: undefined }, ourKey),
          'no expiry': await signed({}, { ...claims, exp: undefined }, ourKey),
        };
        for (const [name, token] of Object.entries(attacks)) {
          const answer = await call(own.api, 'GET', '/api/me/', { token });
          expect({ name, status: answer.status, code: answer.body.code }).toEqual({
            name,
            status: 401,
            code: 'invalid_access_token',
          });
        }
      } finally {
        await own.close();
      }
    });

    it('refuses an expired access token', async () => {
      const short = await startStack(kind, { SOCIAL_LINK_ACCESS_TOKEN_TTL: '30' });
      try {
        const user = await guest(short.api);
        expect((await call(short.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(200);
        // The server runs in this process: move its clock past the token's expiry (and jose's 0 s tolerance).
        vi.useFakeTimers({ toFake: ['Date'] });
        vi.setSystemTime(Date.now() + 31_000);
        try {
          expectError(
            await call(short.api, 'GET', '/api/me/', { token: user.access_token }),
            401,
            'invalid_access_token',
          );
        } finally {
          vi.useRealTimers();
        }
      } finally {
        await short.close();
      }
    });
  });

  describe('refresh tokens', () => {
    it('rotate on use: the new pair works, and the old refresh token is single use', async () => {
      const user = await guest(stack.api);
      const refreshed = await call(stack.api, 'POST', '/api/token/refresh/', {
        body: { refresh_token: user.refresh_token },
      });
      expect(refreshed.status).toBe(200);
      expect(refreshed.body).toMatchObject({ id: user.id, username: user.username, token_type: 'Bearer' });
      expect(refreshed.body.refresh_token).not.toBe(user.refresh_token);
      expect((await call(stack.api, 'GET', '/api/me/', { token: refreshed.body.access_token })).status).toBe(200);
      const again = await call(stack.api, 'POST', '/api/token/refresh/', {
        body: { refresh_token: refreshed.body.refresh_token },
      });
      expect(again.status).toBe(200);
    });

    it('a replayed (already rotated) refresh token revokes the whole session', async () => {
      const user = await guest(stack.api);
      const stolenCopy = user.refresh_token;
      const legit = await call(stack.api, 'POST', '/api/token/refresh/', {
        body: { refresh_token: user.refresh_token },
      });
      expect(legit.status).toBe(200);

      const replay = await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: stolenCopy } });
      expectError(replay, 401, 'refresh_token_reused');
      // Every token of the session is dead now, including the legitimate client's newest pair.
      expectError(
        await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: legit.body.refresh_token } }),
        401,
        'invalid_refresh_token',
      );
      expectError(
        await call(stack.api, 'GET', '/api/me/', { token: legit.body.access_token }),
        401,
        'invalid_access_token',
      );
      // Other sessions of the same user are untouched.
      const other = await call(stack.api, 'POST', '/api/users/', {
        body: { username: `replay_${kind}`, password: 'a good long password' },
      });
      const second = await call(stack.api, 'POST', '/api/token/', {
        body: { username: `replay_${kind}`, password: 'a good long password' },
      });
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: second.body.refresh_token } });
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: second.body.refresh_token } });
      expect((await call(stack.api, 'GET', '/api/me/', { token: other.body.access_token })).status).toBe(200);
    });

    it('concurrent refreshes of one token give at most one new pair', async () => {
      const user = await guest(stack.api);
      const answers = await Promise.all(
        Array.from({ length: 8 }, () =>
          call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
        ),
      );
      expect(answers.filter((answer) => answer.status === 200).length).toBeLessThanOrEqual(1);
      for (const answer of answers.filter((a) => a.status !== 200)) {
        expect(answer.status).toBe(401);
        expect(['refresh_token_reused', 'invalid_refresh_token']).toContain(answer.body.code);
      }
    });

    it('refuses an unknown refresh token and a missing field', async () => {
      expectError(
        await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: 'made-up' } }),
        401,
        'invalid_refresh_token',
      );
      expectError(await call(stack.api, 'POST', '/api/token/refresh/', { body: {} }), 400, 'invalid_request');
    });
  });

  describe('POST /api/logout/', () => {
    it('ends the session: its access and refresh tokens stop working at once', async () => {
      const user = await guest(stack.api);
      const answer = await call(stack.api, 'POST', '/api/logout/', { token: user.access_token });
      expect(answer.status).toBe(204);
      expectError(await call(stack.api, 'GET', '/api/me/', { token: user.access_token }), 401, 'invalid_access_token');
      expectError(
        await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
        401,
        'invalid_refresh_token',
      );
      expectError(await call(stack.api, 'POST', '/api/logout/'), 401, 'not_authenticated');
    });
  });

  describe('the HTTP surface', () => {
    it('every path works with and without its trailing slash', async () => {
      const user = await guest(stack.api);
      for (const path of ['/api/me', '/api/me/', '/api/associations', '/api/associations/']) {
        expect((await call(stack.api, 'GET', path, { token: user.access_token })).status).toBe(200);
      }
    });

    it('unknown routes and methods answer JSON 404', async () => {
      expectError(await call(stack.api, 'GET', '/api/nothing-here/'), 404, 'not_found');
      expectError(await call(stack.api, 'PATCH', '/api/me/'), 404, 'not_found');
    });

    it('refuses bodies over the size limit with 413', async () => {
      const answer = await call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: 'x'.repeat(70_000) },
      });
      expectError(answer, 413, 'payload_too_large');
    });

    it('serves the OpenAPI document and the interactive docs', async () => {
      const spec = await call(stack.api, 'GET', '/openapi.json');
      expect(spec.status).toBe(200);
      expect(spec.body.openapi).toMatch(/^3\./);
      for (const path of [
        '/api/users/',
        '/api/token/',
        '/api/token/refresh/',
        '/api/logout/',
        '/api/me/',
        '/api/associate/{provider}/',
        '/api/auth/{provider}/',
        '/api/associations/',
        '/api/associations/{provider}/{uid}/',
      ]) {
        expect(Object.keys(spec.body.paths)).toContain(path);
      }
      const docs = await fetch(`${stack.api}/docs/`);
      expect(docs.status).toBe(200);
      const page = await docs.text();
      expect(page).toContain('swagger');
      // Every script and stylesheet the page loads answers 200 with a body (they once came back empty).
      const assets = [...page.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map((match) =>
        new URL(match[1]!, `${stack.api}/docs/`).toString(),
      );
      expect(assets.length).toBeGreaterThanOrEqual(3);
      for (const asset of assets) {
        const answer = await fetch(asset);
        expect(answer.status, asset).toBe(200);
        expect((await answer.text()).length, asset).toBeGreaterThan(100);
      }
    });
  });
});
