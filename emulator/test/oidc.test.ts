import { createHash, createHmac, createPublicKey } from 'node:crypto';
import {
  SignJWT,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  EmulatorClient,
  startEmulator,
  type EmulatorOptions,
  type Forgery,
  type RunningEmulator,
} from '@social-link/emulator';
import { http, type HttpResult } from '../../test/http-result.js';

const FB_APP_ID = '1234567890123456';
const GOOGLE_WEB_CLIENT = '111111111111-web.apps.googleusercontent.com';
const GOOGLE_IOS_CLIENT = '111111111111-ios.apps.googleusercontent.com';
const GOOGLE_ANDROID_CLIENT = '111111111111-android.apps.googleusercontent.com';
const APPLE_BUNDLE_ID = 'com.example.linkapp';
const APPLE_TEAM_ID = 'TEAM123456';
const APPLE_KEY_ID = 'KEY1234567';
const OIDC_CLIENT = 'acme-client';

let emulator: RunningEmulator;
let client: EmulatorClient;
/** Our Sign in with Apple key: its public JWK is registered with the emulator, the private key signs client secrets. */
let applePrivateKey: CryptoKey;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  applePrivateKey = privateKey;
  const options: EmulatorOptions = {
    facebook: { apps: { [FB_APP_ID]: 'fb-app-secret' } },
    google: { clientIds: [GOOGLE_WEB_CLIENT, GOOGLE_IOS_CLIENT], androidClientId: GOOGLE_ANDROID_CLIENT },
    apple: {
      clientIds: [APPLE_BUNDLE_ID],
      teamId: APPLE_TEAM_ID,
      keys: { [APPLE_KEY_ID]: await exportJWK(publicKey) },
    },
    oidc: { acme: { clientIds: [OIDC_CLIENT] } },
  };
  emulator = await startEmulator({ ...options, reuseKeyPairs: true });
  client = new EmulatorClient(emulator.url);
});

afterAll(async () => {
  await emulator.close();
});

beforeEach(async () => {
  await client.reset();
});

function control(method: string, path: string, body?: unknown): Promise<HttpResult> {
  return http(`${emulator.url}/_emulator${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
}

function form(path: string, fields: Record<string, string>): Promise<HttpResult> {
  return http(`${emulator.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

const JWKS_PATHS = {
  google: '/google/oauth2/v3/certs',
  apple: '/apple/auth/keys',
  facebook: '/facebook-limited/.well-known/oauth/openid/jwks/',
  'oidc:acme': '/oidc/acme/jwks',
} as const;

/** A fresh remote key set each time: no cache carried between assertions. */
function keySet(provider: keyof typeof JWKS_PATHS) {
  return createRemoteJWKSet(new URL(`${emulator.url}${JWKS_PATHS[provider]}`));
}

async function kidsOf(provider: keyof typeof JWKS_PATHS): Promise<string[]> {
  const { body } = await http(`${emulator.url}${JWKS_PATHS[provider]}`);
  return body.keys.map((key: JWK) => key.kid);
}

async function verifyGoogle(token: string): Promise<JWTPayload> {
  const { payload } = await jwtVerify(token, keySet('google'), {
    issuer: 'https://accounts.google.com',
    audience: GOOGLE_WEB_CLIENT,
    algorithms: ['RS256'],
  });
  return payload;
}

/** A Sign in with Apple client secret, signed with our ES256 key unless told otherwise. */
async function appleClientSecret(
  overrides: { kid?: string; iss?: string; sub?: string; aud?: string; lifetime?: number; key?: CryptoKey } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: overrides.kid ?? APPLE_KEY_ID })
    .setIssuer(overrides.iss ?? APPLE_TEAM_ID)
    .setSubject(overrides.sub ?? APPLE_BUNDLE_ID)
    .setAudience(overrides.aud ?? 'https://appleid.apple.com')
    .setIssuedAt(now)
    .setExpirationTime(now + (overrides.lifetime ?? 3600))
    .sign(overrides.key ?? applePrivateKey);
}

function halfSha256(value: string): string {
  return createHash('sha256').update(value).digest().subarray(0, 16).toString('base64url');
}

describe('JWKS endpoints', () => {
  it.each(Object.keys(JWKS_PATHS) as (keyof typeof JWKS_PATHS)[])(
    '%s publishes RS256 public keys only, with a cache lifetime',
    async (provider) => {
      const { status, headers, body } = await http(`${emulator.url}${JWKS_PATHS[provider]}`);
      expect(status).toBe(200);
      expect(headers.get('content-type')).toMatch(/^application\/json/);
      expect(headers.get('cache-control')).toMatch(/^public, max-age=3600\b/);
      expect(body.keys).toHaveLength(1);
      const [key] = body.keys;
      expect(key).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig', kid: expect.any(String), e: 'AQAB' });
      // 2048-bit modulus: 256 bytes.
      expect(Buffer.from(key.n, 'base64url')).toHaveLength(256);
      for (const privateMember of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(key).not.toHaveProperty(privateMember);
    },
  );

  it("one emulator's issuers each publish a key of their own; with reuseKeyPairs another emulator reuses them under new kids, without it makes its own; rotation makes a new key", async () => {
    const published = async (url: string, provider: keyof typeof JWKS_PATHS): Promise<JWK> =>
      (await http(`${url}${JWKS_PATHS[provider]}`)).body.keys[0];
    const providers = Object.keys(JWKS_PATHS) as (keyof typeof JWKS_PATHS)[];
    const ours = await Promise.all(providers.map((provider) => published(emulator.url, provider)));
    expect(new Set(ours.map((key) => key.n)).size).toBe(providers.length);

    const reusing = await startEmulator({ oidc: { acme: { clientIds: [OIDC_CLIENT] } }, reuseKeyPairs: true });
    const own = await startEmulator({ oidc: { acme: { clientIds: [OIDC_CLIENT] } } });
    try {
      const theirs = await Promise.all(providers.map((provider) => published(reusing.url, provider)));
      expect(new Set(theirs.map((key) => key.n)).size).toBe(providers.length);
      expect(new Set([...theirs, ...ours].map((key) => key.n)).size).toBe(providers.length);
      for (const key of theirs) expect(ours.map((k) => k.kid)).not.toContain(key.kid);
      const owned = await Promise.all(providers.map((provider) => published(own.url, provider)));
      for (const key of owned) expect(ours.map((k) => k.n)).not.toContain(key.n);
    } finally {
      await reusing.close();
      await own.close();
    }
    const rotated = await client.rotateKeys('google');
    const { body } = await http(`${emulator.url}${JWKS_PATHS.google}`);
    const fresh = body.keys.find((key: JWK) => key.kid === rotated.kid);
    expect(ours.map((key) => key.n)).not.toContain(fresh.n);
  });

  it("sends Google's Cache-Control form, with a settable max-age", async () => {
    expect((await http(`${emulator.url}/google/oauth2/v3/certs`)).headers.get('cache-control')).toBe(
      'public, max-age=3600, must-revalidate, no-transform',
    );
    await client.setJwksMaxAge('google', 120);
    await client.setJwksMaxAge('apple', 60);
    await client.setJwksMaxAge('facebook', 30);
    await client.setJwksMaxAge('oidc:acme', 0);
    expect((await http(`${emulator.url}/google/oauth2/v3/certs`)).headers.get('cache-control')).toBe(
      'public, max-age=120, must-revalidate, no-transform',
    );
    expect((await http(`${emulator.url}/apple/auth/keys`)).headers.get('cache-control')).toBe('public, max-age=60');
    expect(
      (await http(`${emulator.url}/facebook-limited/.well-known/oauth/openid/jwks/`)).headers.get('cache-control'),
    ).toBe('public, max-age=30');
    expect((await http(`${emulator.url}/oidc/acme/jwks`)).headers.get('cache-control')).toBe('public, max-age=0');
  });

  it('refuses a bad max-age', async () => {
    const { status, body } = await control('PUT', '/google/jwks_cache', { max_age: -1 });
    expect(status).toBe(400);
    expect(body.code).toBe('invalid_request');
    expect((await control('PUT', '/line/jwks_cache', { max_age: 10 })).status).toBe(400);
  });
});

describe('minted ID tokens', () => {
  it('Google: verifies against the published keys with the right iss and aud; azp is the Android app (test/fixtures/providers/google/id_token.native_backend_token.json)', async () => {
    const minted = await client.mintIdToken('google', {
      nonce: 'n-0S6_WzA2Mj',
      name: 'Ada Lovelace',
      email: 'ada@example.com',
    });
    const payload = await verifyGoogle(minted.id_token);
    expect(payload).toMatchObject({
      iss: 'https://accounts.google.com',
      aud: GOOGLE_WEB_CLIENT,
      azp: GOOGLE_ANDROID_CLIENT,
      sub: minted.sub,
      email: 'ada@example.com',
      email_verified: true,
      name: 'Ada Lovelace',
      given_name: 'Ada',
      family_name: 'Lovelace',
      nonce: 'n-0S6_WzA2Mj',
      picture: expect.stringMatching(/^https:\/\/lh3\.googleusercontent\.com\//),
    });
    expect(minted.sub).toMatch(/^\d{21}$/);
    expect(payload).toEqual(minted.claims);
    expect(decodeProtectedHeader(minted.id_token)).toEqual({
      alg: 'RS256',
      kid: (await kidsOf('google'))[0],
      typ: 'JWT',
    });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(3600);
  });

  it('Google: the same sub keeps its profile; iss, aud, azp and any claim can be set', async () => {
    const first = await client.mintIdToken('google', { name: 'Grace Hopper' });
    const again = await client.mintIdToken('google', {
      sub: first.sub,
      iss: 'accounts.google.com',
      aud: GOOGLE_WEB_CLIENT,
      azp: GOOGLE_IOS_CLIENT,
      claims: { hd: 'example.com', email_verified: 'true' },
    });
    expect(again.claims).toMatchObject({
      sub: first.sub,
      name: 'Grace Hopper',
      email: first.claims.email,
      iss: 'accounts.google.com',
      azp: GOOGLE_IOS_CLIENT,
      hd: 'example.com',
      email_verified: 'true',
    });
    const { payload } = await jwtVerify(again.id_token, keySet('google'), {
      issuer: 'accounts.google.com',
      audience: GOOGLE_WEB_CLIENT,
    });
    expect(payload.hd).toBe('example.com');
  });

  it('Apple: verifies with Apple-style claims', async () => {
    const hashedNonce = createHash('sha256').update('raw-nonce').digest('hex');
    const minted = await client.mintIdToken('apple', { nonce: hashedNonce, email: 'x1y2z3@privaterelay.appleid.com' });
    const { payload } = await jwtVerify(minted.id_token, keySet('apple'), {
      issuer: 'https://appleid.apple.com',
      audience: APPLE_BUNDLE_ID,
      algorithms: ['RS256'],
    });
    expect(minted.sub).toMatch(/^\d{6}\.[0-9a-f]{32}\.\d{4}$/);
    // Flags as strings, 10-character kids: test/fixtures/providers/apple/id_token.success.json, jwks.success.json.
    expect(payload).toMatchObject({
      sub: minted.sub,
      nonce: hashedNonce,
      nonce_supported: true,
      email: 'x1y2z3@privaterelay.appleid.com',
      email_verified: 'true',
      is_private_email: 'true',
      real_user_status: 2,
      auth_time: payload.iat,
    });
    expect(decodeProtectedHeader(minted.id_token).kid).toMatch(/^[A-Za-z0-9]{10}$/);
  });

  it('Facebook Limited Login: the token describes the Graph user of that id', async () => {
    const graphUser = await client.mintFacebookToken({ user: { name: 'Alan Turing', email: 'alan@example.com' } });
    const minted = await client.mintIdToken('facebook', { sub: graphUser.user_id, nonce: 'fb-nonce' });
    const { payload } = await jwtVerify(minted.id_token, keySet('facebook'), {
      issuer: 'https://www.facebook.com',
      audience: FB_APP_ID,
      algorithms: ['RS256'],
    });
    expect(payload).toMatchObject({
      sub: graphUser.user_id,
      name: 'Alan Turing',
      given_name: 'Alan',
      family_name: 'Turing',
      email: 'alan@example.com',
      nonce: 'fb-nonce',
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      picture: expect.stringMatching(/^https:\/\/platform-lookaside\.fbsbx\.com\//),
    });
    // A new Limited Login user is a Graph user too.
    const fresh = await client.mintIdToken('facebook', { name: 'Katherine Johnson' });
    expect(fresh.sub).toMatch(/^\d{15,17}$/);
    const again = await client.mintIdToken('facebook', { sub: fresh.sub });
    expect(again.claims.name).toBe('Katherine Johnson');
  });

  it('generic OIDC: iss is the issuer of the discovery document, and the jwks_uri serves the keys', async () => {
    const discovery = await http(`${client.oidcIssuerUrl('acme')}/.well-known/openid-configuration`);
    expect(discovery.status).toBe(200);
    expect(discovery.body).toMatchObject({
      issuer: `${emulator.url}/oidc/acme`,
      jwks_uri: `${emulator.url}/oidc/acme/jwks`,
      authorization_endpoint: expect.any(String),
      token_endpoint: expect.any(String),
      userinfo_endpoint: expect.any(String),
      id_token_signing_alg_values_supported: ['RS256'],
      subject_types_supported: ['public'],
      response_types_supported: expect.arrayContaining(['code']),
    });
    const minted = await client.mintIdToken('oidc:acme', { nonce: 'abc' });
    const { payload } = await jwtVerify(minted.id_token, createRemoteJWKSet(new URL(discovery.body.jwks_uri)), {
      issuer: discovery.body.issuer,
      audience: OIDC_CLIENT,
      algorithms: ['RS256'],
    });
    expect(payload).toMatchObject({ sub: minted.sub, nonce: 'abc' });
  });

  it('generic OIDC: the issuer is the emulator origin whatever Host the minting call used', async () => {
    const viaLocalhost = emulator.url.replace('127.0.0.1', 'localhost');
    const minted = await new EmulatorClient(viaLocalhost).mintIdToken('oidc:acme');
    expect(minted.claims.iss).toBe(`${emulator.url}/oidc/acme`);
  });

  it('generic OIDC: a new name creates an issuer with its own keys; an unknown one is 404', async () => {
    expect((await http(`${emulator.url}/oidc/newco/.well-known/openid-configuration`)).status).toBe(404);
    const minted = await client.mintIdToken('oidc:newco', { aud: ['newco-app', 'newco-web'] });
    expect(minted.claims).toMatchObject({
      iss: `${emulator.url}/oidc/newco`,
      aud: ['newco-app', 'newco-web'],
      azp: 'newco-app',
    });
    const discovery = await http(`${emulator.url}/oidc/newco/.well-known/openid-configuration`);
    expect(discovery.body.issuer).toBe(minted.claims.iss);
    expect(await kidsOf('oidc:acme')).not.toEqual(
      (await http(`${emulator.url}/oidc/newco/jwks`)).body.keys.map((k: JWK) => k.kid),
    );
    // Without a configured client id, the audience must be named.
    const { status, body } = await control('POST', '/oidc/other/id_tokens', {});
    expect(status).toBe(400);
    expect(body).toEqual({ code: 'invalid_request', message: expect.stringContaining('pass aud') });
  });

  it('expired, future-dated and overridden tokens are real tokens with those claims', async () => {
    const expired = await client.mintIdToken('google', { expires_in: -60 });
    expect(expired.claims.exp).toBeLessThan(Date.now() / 1000);
    expect((expired.claims.iat ?? 0) < (expired.claims.exp ?? 0)).toBe(true);
    await expect(verifyGoogle(expired.id_token)).rejects.toBeInstanceOf(errors.JWTExpired);

    const future = await client.mintIdToken('google', { iat_offset: 3600, expires_in: 7200 });
    expect(future.claims.iat).toBeGreaterThan(Date.now() / 1000 + 3500);
    await expect(verifyGoogle(future.id_token)).resolves.toMatchObject({ iat: future.claims.iat });

    const otherAudience = await client.mintIdToken('google', { aud: 'someone-else' });
    await expect(verifyGoogle(otherAudience.id_token)).rejects.toBeInstanceOf(errors.JWTClaimValidationFailed);

    const overridden = await client.mintIdToken('google', { claims: { iss: 'https://evil.example' } });
    expect(overridden.claims.iss).toBe('https://evil.example');
  });

  it('refuses bad mint input', async () => {
    for (const bad of [
      { forge: 'rot13' },
      { expires_in: '3600' },
      { unknown: 1 },
      { aud: [] },
      { email: 'not-an-email' },
    ]) {
      const { status, body } = await control('POST', '/google/id_tokens', bad);
      expect(status).toBe(400);
      expect(body).toEqual({ code: 'invalid_request', message: expect.any(String) });
    }
    expect((await control('POST', '/oidc/bad%20name/id_tokens', { aud: 'x' })).status).toBe(400);
  });
});

describe('forged tokens', () => {
  const FORGERIES: Forgery[] = ['none_alg', 'hs256_with_public_key', 'unknown_kid', 'bad_signature', 'foreign_key'];

  it.each(FORGERIES)('%s is refused by jwtVerify with algorithms [RS256]', async (forge) => {
    const minted = await client.mintIdToken('google', { forge });
    // The claims are otherwise perfect: only the signature is wrong.
    expect(minted.claims).toMatchObject({ iss: 'https://accounts.google.com', aud: GOOGLE_WEB_CLIENT });
    expect(decodeJwt(minted.id_token)).toEqual(minted.claims);
    await expect(verifyGoogle(minted.id_token)).rejects.toThrow();
  });

  it('none_alg: alg none and an empty signature', async () => {
    const { id_token } = await client.mintIdToken('google', { forge: 'none_alg' });
    expect(decodeProtectedHeader(id_token)).toEqual({ alg: 'none' });
    expect(id_token.endsWith('.')).toBe(true);
    await expect(verifyGoogle(id_token)).rejects.toBeInstanceOf(errors.JOSEAlgNotAllowed);
  });

  it('hs256_with_public_key: an HMAC keyed with the published public key PEM', async () => {
    const { id_token } = await client.mintIdToken('google', { forge: 'hs256_with_public_key' });
    const [kid] = await kidsOf('google');
    expect(decodeProtectedHeader(id_token)).toEqual({ alg: 'HS256', kid, typ: 'JWT' });
    const { body } = await http(`${emulator.url}/google/oauth2/v3/certs`);
    const publicKeyPem = createPublicKey({ key: body.keys[0], format: 'jwk' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
    const [header, payload, signature] = id_token.split('.');
    expect(signature).toBe(createHmac('sha256', publicKeyPem).update(`${header}.${payload}`).digest('base64url'));
    await expect(verifyGoogle(id_token)).rejects.toBeInstanceOf(errors.JOSEAlgNotAllowed);
  });

  it('unknown_kid: a kid the JWKS does not publish', async () => {
    const { id_token } = await client.mintIdToken('google', { forge: 'unknown_kid' });
    const header = decodeProtectedHeader(id_token);
    expect(header.alg).toBe('RS256');
    expect(await kidsOf('google')).not.toContain(header.kid);
    await expect(verifyGoogle(id_token)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  it('bad_signature: the genuine signature with a byte altered', async () => {
    // RS256 is deterministic: the same header and claims give the same genuine signature.
    const claims = { iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 };
    const genuine = await client.mintIdToken('google', { sub: '100000000000000000001', claims });
    const forged = await client.mintIdToken('google', { sub: '100000000000000000001', claims, forge: 'bad_signature' });
    const [genuineInput, genuineSignature = ''] = splitAtSignature(genuine.id_token);
    const [forgedInput, forgedSignature = ''] = splitAtSignature(forged.id_token);
    expect(forgedInput).toBe(genuineInput);
    expect(differingBytes(Buffer.from(genuineSignature, 'base64url'), Buffer.from(forgedSignature, 'base64url'))).toBe(
      1,
    );
    await expect(verifyGoogle(genuine.id_token)).resolves.toBeDefined();
    await expect(verifyGoogle(forged.id_token)).rejects.toBeInstanceOf(errors.JWSSignatureVerificationFailed);
  });

  it('foreign_key: the published kid, signed by another RSA key', async () => {
    const claims = { iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 };
    const genuine = await client.mintIdToken('google', { sub: '100000000000000000002', claims });
    const forged = await client.mintIdToken('google', { sub: '100000000000000000002', claims, forge: 'foreign_key' });
    expect(decodeProtectedHeader(forged.id_token)).toEqual({
      alg: 'RS256',
      kid: (await kidsOf('google'))[0],
      typ: 'JWT',
    });
    const [genuineInput, genuineSignature = ''] = splitAtSignature(genuine.id_token);
    const [forgedInput, forgedSignature = ''] = splitAtSignature(forged.id_token);
    expect(forgedInput).toBe(genuineInput);
    const forgedBytes = Buffer.from(forgedSignature, 'base64url');
    expect(forgedBytes).toHaveLength(256); // a real 2048-bit RSA signature...
    expect(differingBytes(Buffer.from(genuineSignature, 'base64url'), forgedBytes)).toBeGreaterThan(200); // ...by another key
    await expect(verifyGoogle(forged.id_token)).rejects.toBeInstanceOf(errors.JWSSignatureVerificationFailed);
  });

  it.each(['apple', 'facebook', 'oidc:acme'] as const)('%s forges too', async (provider) => {
    const { id_token } = await client.mintIdToken(provider, { forge: 'foreign_key' });
    await expect(jwtVerify(id_token, keySet(provider), { algorithms: ['RS256'] })).rejects.toBeInstanceOf(
      errors.JWSSignatureVerificationFailed,
    );
  });
});

function splitAtSignature(token: string): [string, string] {
  const dot = token.lastIndexOf('.');
  return [token.slice(0, dot), token.slice(dot + 1)];
}

function differingBytes(a: Buffer, b: Buffer): number {
  let count = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) count += 1;
  return count;
}

describe('key rotation', () => {
  it('publishes the new key beside the old one; new tokens use it; old tokens still verify', async () => {
    const before = await client.mintIdToken('google');
    const [oldKid] = await kidsOf('google');
    const rotated = await client.rotateKeys('google');
    expect(rotated.kid).not.toBe(oldKid);
    expect(rotated.kids).toEqual([oldKid, rotated.kid]);
    expect(await kidsOf('google')).toEqual([oldKid, rotated.kid]);

    const after = await client.mintIdToken('google');
    expect(decodeProtectedHeader(after.id_token).kid).toBe(rotated.kid);
    await expect(verifyGoogle(after.id_token)).resolves.toBeDefined();
    await expect(verifyGoogle(before.id_token)).resolves.toBeDefined();
  });

  it('retire_old stops publishing the old keys: their tokens no longer verify', async () => {
    const before = await client.mintIdToken('oidc:acme');
    const rotated = await client.rotateKeys('oidc:acme', { retire_old: true });
    expect(rotated.kids).toEqual([rotated.kid]);
    expect(await kidsOf('oidc:acme')).toEqual([rotated.kid]);
    await expect(jwtVerify(before.id_token, keySet('oidc:acme'))).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  it('rotates Apple and Facebook Limited Login keys too; reset goes back to the first key', async () => {
    const appleKids = await kidsOf('apple');
    const facebookKids = await kidsOf('facebook');
    expect((await client.rotateKeys('apple', { retire_old: true })).kids).not.toEqual(appleKids);
    expect((await client.rotateKeys('facebook')).kids).toHaveLength(2);
    expect((await control('POST', '/facebook-limited/keys/rotate', {})).body.kids).toHaveLength(3);
    await client.reset();
    expect(await kidsOf('apple')).toEqual(appleKids);
    expect(await kidsOf('facebook')).toEqual(facebookKids);
  });
});

describe('discovery documents', () => {
  it('Google: the accounts.google.com issuer, with keys and userinfo at the emulator', async () => {
    const { status, body } = await http(`${emulator.url}/google/.well-known/openid-configuration`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      issuer: 'https://accounts.google.com',
      jwks_uri: `${emulator.url}/google/oauth2/v3/certs`,
      userinfo_endpoint: `${emulator.url}/google/v1/userinfo`,
      id_token_signing_alg_values_supported: ['RS256'],
    });
    expect((await http(body.jwks_uri)).body.keys).toHaveLength(1);
  });

  it('Facebook Limited Login and Apple', async () => {
    const facebook = await http(`${emulator.url}/facebook-limited/.well-known/openid-configuration/`);
    expect(facebook.body).toMatchObject({
      issuer: 'https://www.facebook.com',
      id_token_signing_alg_values_supported: ['RS256'],
    });
    expect((await http(facebook.body.jwks_uri)).status).toBe(200);
    const apple = await http(`${emulator.url}/apple/.well-known/openid-configuration`);
    expect(apple.body).toMatchObject({
      issuer: 'https://appleid.apple.com',
      token_endpoint: `${emulator.url}/apple/auth/token`,
    });
    expect((await http(apple.body.jwks_uri)).status).toBe(200);
  });
});

describe('Google tokeninfo and userinfo', () => {
  it('tokeninfo answers an access token as Google does, every value a string', async () => {
    const minted = await client.mintGoogleAccessToken({ email: 'ada@example.com' });
    expect(minted).toMatchObject({
      access_token: expect.stringMatching(/^ya29\./),
      client_id: GOOGLE_WEB_CLIENT,
      sub: expect.stringMatching(/^\d{21}$/),
    });
    const { status, body } = await http(`${emulator.url}/google/tokeninfo?access_token=${minted.access_token}`);
    expect(status).toBe(200);
    expect(body).toEqual({
      azp: GOOGLE_WEB_CLIENT,
      aud: GOOGLE_WEB_CLIENT,
      sub: minted.sub,
      scope: 'openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile',
      exp: String(minted.expires_at),
      expires_in: expect.stringMatching(/^\d+$/),
      email: 'ada@example.com',
      email_verified: 'true',
      access_type: 'online',
    });
    expect(Number(body.expires_in)).toBeGreaterThan(3500);
  });

  it('tokeninfo leaves email out without the email scope, and reports the client the token was issued to', async () => {
    const minted = await client.mintGoogleAccessToken({ client_id: GOOGLE_IOS_CLIENT, scope: 'openid' });
    const { body } = await http(`${emulator.url}/google/tokeninfo?access_token=${minted.access_token}`);
    expect(body).not.toHaveProperty('email');
    expect(body).toMatchObject({ aud: GOOGLE_IOS_CLIENT, azp: GOOGLE_IOS_CLIENT, scope: 'openid' });
  });

  it('tokeninfo refuses unknown, expired and expired-by-control tokens with invalid_token', async () => {
    const expired = await client.mintGoogleAccessToken({ expires_in: -1 });
    const expiredLater = await client.mintGoogleAccessToken();
    await client.expireToken(expiredLater.access_token);
    for (const token of ['ya29.unknown', expired.access_token, expiredLater.access_token]) {
      const { status, body } = await http(`${emulator.url}/google/tokeninfo?access_token=${token}`);
      expect(status).toBe(400);
      expect(body).toEqual({ error: 'invalid_token', error_description: 'Invalid Value' });
    }
    expect((await http(`${emulator.url}/google/tokeninfo`)).status).toBe(400);
  });

  it('tokeninfo checks an ID token: claims as strings when genuine, invalid_token when forged or expired', async () => {
    const genuine = await client.mintIdToken('google', { email: 'ada@example.com' });
    const ok = await http(`${emulator.url}/google/tokeninfo?id_token=${genuine.id_token}`);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      iss: 'https://accounts.google.com',
      aud: GOOGLE_WEB_CLIENT,
      sub: genuine.sub,
      email: 'ada@example.com',
      email_verified: 'true',
      exp: String(genuine.claims.exp),
      alg: 'RS256',
      kid: decodeProtectedHeader(genuine.id_token).kid,
    });
    for (const input of [
      { forge: 'hs256_with_public_key' as const },
      { forge: 'none_alg' as const },
      { expires_in: -10 },
    ]) {
      const { id_token } = await client.mintIdToken('google', input);
      const { status, body } = await http(`${emulator.url}/google/tokeninfo?id_token=${id_token}`);
      expect(status).toBe(400);
      expect(body).toEqual({ error: 'invalid_token', error_description: 'Invalid Value' });
    }
  });

  it('userinfo answers the bearer token holder', async () => {
    const idToken = await client.mintIdToken('google', { name: 'Ada Lovelace', email: 'ada@example.com' });
    const minted = await client.mintGoogleAccessToken({ sub: idToken.sub });
    const { status, body } = await http(`${emulator.url}/google/v1/userinfo`, {
      headers: { authorization: `Bearer ${minted.access_token}` },
    });
    expect(status).toBe(200);
    expect(body).toEqual({
      sub: idToken.sub,
      name: 'Ada Lovelace',
      given_name: 'Ada',
      family_name: 'Lovelace',
      picture: idToken.claims.picture,
      email: 'ada@example.com',
      email_verified: true,
    });
  });

  it('userinfo refuses a missing or unknown token with 401', async () => {
    for (const headers of [{}, { authorization: 'Bearer ya29.nope' }] as Record<string, string>[]) {
      const { status, body, headers: responseHeaders } = await http(`${emulator.url}/google/v1/userinfo`, { headers });
      expect(status).toBe(401);
      expect(body).toEqual({ error: 'invalid_request', error_description: 'Invalid Credentials' });
      expect(responseHeaders.get('www-authenticate')).toMatch(/^Bearer /);
    }
  });
});

describe('Apple token endpoint', () => {
  it('redeems a code for tokens with a genuine ES256 client secret', async () => {
    const hashedNonce = createHash('sha256').update('raw').digest('hex');
    const code = await client.mintAppleCode({ email: 'tim@example.com', nonce: hashedNonce });
    expect(code.code).toMatch(/^c[0-9a-f]{32}\.0\.[a-z0-9]{4}\.[A-Za-z0-9]{22}$/);
    // The identity token the app receives with the code binds it through c_hash.
    expect(decodeJwt(code.id_token)).toMatchObject({
      sub: code.sub,
      aud: APPLE_BUNDLE_ID,
      nonce: hashedNonce,
      c_hash: halfSha256(code.code),
    });

    const { status, body, headers } = await form('/apple/auth/token', {
      client_id: APPLE_BUNDLE_ID,
      client_secret: await appleClientSecret(),
      code: code.code,
      grant_type: 'authorization_code',
    });
    expect(status).toBe(200);
    expect(headers.get('cache-control')).toBe('no-store');
    expect(body).toEqual({
      access_token: expect.stringMatching(/^a[0-9a-f]{32}\./),
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: expect.stringMatching(/^r[0-9a-f]{32}\./),
      id_token: expect.any(String),
    });
    const { payload } = await jwtVerify(body.id_token, keySet('apple'), {
      issuer: 'https://appleid.apple.com',
      audience: APPLE_BUNDLE_ID,
      algorithms: ['RS256'],
    });
    expect(payload).toMatchObject({
      sub: code.sub,
      email: 'tim@example.com',
      nonce: hashedNonce,
      at_hash: halfSha256(body.access_token),
    });
  });

  it('refuses a bad client secret with invalid_client', async () => {
    const { privateKey: otherKey } = await generateKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const expiredSecret = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: APPLE_KEY_ID })
      .setIssuer(APPLE_TEAM_ID)
      .setSubject(APPLE_BUNDLE_ID)
      .setAudience('https://appleid.apple.com')
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(applePrivateKey);
    const badSecrets = [
      await appleClientSecret({ key: otherKey }), // signed by a key that is not ours
      await appleClientSecret({ kid: 'UNKNOWNKID' }),
      await appleClientSecret({ iss: 'OTHERTEAM1' }),
      await appleClientSecret({ sub: 'com.example.other' }),
      await appleClientSecret({ aud: 'https://example.com' }),
      await appleClientSecret({ lifetime: 15_777_001 }), // more than 6 months
      expiredSecret,
      'not-a-jwt',
    ];
    for (const clientSecret of badSecrets) {
      const code = await client.mintAppleCode();
      const { status, body } = await form('/apple/auth/token', {
        client_id: APPLE_BUNDLE_ID,
        client_secret: clientSecret,
        code: code.code,
        grant_type: 'authorization_code',
      });
      expect(status).toBe(400);
      expect(body).toEqual({ error: 'invalid_client' });
    }
    // Apple reads forms only: the same fields as JSON authenticate nothing.
    const code = await client.mintAppleCode();
    const json = await http(`${emulator.url}/apple/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_id: APPLE_BUNDLE_ID,
        client_secret: await appleClientSecret(),
        code: code.code,
        grant_type: 'authorization_code',
      }),
    });
    expect(json.body).toEqual({ error: 'invalid_client' });
  });

  it('refuses a reused, unknown or other client code with invalid_grant', async () => {
    const code = await client.mintAppleCode();
    const redeem = async (value: string) =>
      form('/apple/auth/token', {
        client_id: APPLE_BUNDLE_ID,
        client_secret: await appleClientSecret(),
        code: value,
        grant_type: 'authorization_code',
      });
    expect((await redeem(code.code)).status).toBe(200);
    const reused = await redeem(code.code);
    expect(reused.status).toBe(400);
    expect(reused.body).toMatchObject({ error: 'invalid_grant' });
    expect((await redeem('c0000.0.abcd.unknown')).body).toMatchObject({ error: 'invalid_grant' });

    const forOtherClient = await client.mintAppleCode({ client_id: 'com.example.otherapp' });
    expect((await redeem(forOtherClient.code)).body).toMatchObject({ error: 'invalid_grant' });
  });

  it('refreshes with a refresh token, revokes it, and records the revocation', async () => {
    const code = await client.mintAppleCode();
    const tokens = await form('/apple/auth/token', {
      client_id: APPLE_BUNDLE_ID,
      client_secret: await appleClientSecret(),
      code: code.code,
      grant_type: 'authorization_code',
    });
    const refresh = async () =>
      form('/apple/auth/token', {
        client_id: APPLE_BUNDLE_ID,
        client_secret: await appleClientSecret(),
        refresh_token: tokens.body.refresh_token,
        grant_type: 'refresh_token',
      });
    const refreshed = await refresh();
    expect(refreshed.status).toBe(200);
    expect(refreshed.body).toEqual({
      access_token: expect.any(String),
      token_type: 'Bearer',
      expires_in: 3600,
      id_token: expect.any(String),
    });
    expect(decodeJwt(refreshed.body.id_token).sub).toBe(code.sub);

    expect(
      (
        await form('/apple/auth/revoke', {
          client_id: APPLE_BUNDLE_ID,
          client_secret: 'bad',
          token: tokens.body.refresh_token,
        })
      ).body,
    ).toEqual({ error: 'invalid_client' });
    const revoked = await form('/apple/auth/revoke', {
      client_id: APPLE_BUNDLE_ID,
      client_secret: await appleClientSecret(),
      token: tokens.body.refresh_token,
      token_type_hint: 'refresh_token',
    });
    expect(revoked.status).toBe(200);
    expect(revoked.text).toBe('');
    expect(await client.appleRevocations()).toEqual({
      revoked: [
        {
          token: tokens.body.refresh_token,
          client_id: APPLE_BUNDLE_ID,
          token_type_hint: 'refresh_token',
          at: expect.any(String),
        },
      ],
    });
    expect((await refresh()).body).toMatchObject({ error: 'invalid_grant' });
  });

  it('refuses an unsupported grant type', async () => {
    const { status, body } = await form('/apple/auth/token', {
      client_id: APPLE_BUNDLE_ID,
      client_secret: await appleClientSecret(),
      grant_type: 'password',
    });
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'unsupported_grant_type' });
  });
});

describe('faults and reset', () => {
  it('a google error_500 fault breaks the Google JWKS only, and counts its requests', async () => {
    await client.setFault('google', { mode: 'error_500' });
    const broken = await http(`${emulator.url}/google/oauth2/v3/certs`);
    expect(broken.status).toBe(500);
    expect(broken.body).toEqual({ error: { code: 500, message: 'Internal error encountered.', status: 'INTERNAL' } });
    expect((await http(`${emulator.url}/apple/auth/keys`)).status).toBe(200);
    await expect(verifyGoogle((await client.mintIdToken('google')).id_token)).rejects.toThrow();
    await client.clearFaults();
    expect((await http(`${emulator.url}/google/oauth2/v3/certs`)).status).toBe(200);
    // Three: the broken fetch, the verifier's fetch during the fault, the repaired fetch.
    expect((await client.stats()).requests).toMatchObject({ google: 3, apple: 1 });
  });

  it('faults on apple and oidc apply to their routes', async () => {
    await client.setFault('apple', { mode: 'error_500' });
    await client.setFault('oidc', { mode: 'garbage' });
    expect((await http(`${emulator.url}/apple/auth/keys`)).status).toBe(500);
    const garbage = await http(`${emulator.url}/oidc/acme/jwks`);
    expect(garbage.status).toBe(200);
    expect(garbage.body).toBeUndefined();
  });

  it('reset forgets codes, access tokens, revocations and cache settings', async () => {
    const code = await client.mintAppleCode();
    const access = await client.mintGoogleAccessToken();
    await form('/apple/auth/revoke', {
      client_id: APPLE_BUNDLE_ID,
      client_secret: await appleClientSecret(),
      token: 'r123',
    });
    await client.setJwksMaxAge('google', 5);
    const person = await client.mintIdToken('google', { name: 'Before Reset' });

    await client.reset();

    const redeemed = await form('/apple/auth/token', {
      client_id: APPLE_BUNDLE_ID,
      client_secret: await appleClientSecret(),
      code: code.code,
      grant_type: 'authorization_code',
    });
    expect(redeemed.body).toMatchObject({ error: 'invalid_grant' });
    expect((await http(`${emulator.url}/google/tokeninfo?access_token=${access.access_token}`)).status).toBe(400);
    expect(await client.appleRevocations()).toEqual({ revoked: [] });
    expect((await http(`${emulator.url}/google/oauth2/v3/certs`)).headers.get('cache-control')).toMatch(
      /max-age=3600,/,
    );
    expect((await client.mintIdToken('google', { sub: person.sub })).claims.name).not.toBe('Before Reset');
    // The keys survive: a verifier's cached key set stays good.
    await expect(verifyGoogle(person.id_token)).resolves.toBeDefined();
  });
});

describe('control API description', () => {
  it('lists the ID-token providers and their endpoints', async () => {
    const { body } = await control('GET', '');
    expect(body.providers).toMatchObject({
      google: { base_url: `${emulator.url}/google`, client_ids: [GOOGLE_WEB_CLIENT, GOOGLE_IOS_CLIENT] },
      apple: { base_url: `${emulator.url}/apple`, client_ids: [APPLE_BUNDLE_ID], team_id: APPLE_TEAM_ID },
      'facebook-limited': { base_url: `${emulator.url}/facebook-limited`, app_ids: [FB_APP_ID] },
      oidc: { acme: { issuer: `${emulator.url}/oidc/acme`, client_ids: [OIDC_CLIENT] } },
    });
    expect(body.control).toEqual(
      expect.arrayContaining([
        'POST /_emulator/google/id_tokens',
        'POST /_emulator/apple/codes',
        'PUT /_emulator/oidc/:name/jwks_cache',
      ]),
    );
  });
});
