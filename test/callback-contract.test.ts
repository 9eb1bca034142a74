import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { decodeJwt, exportJWK, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Settings } from '../src/lib/settings.js';
import { apple } from '../src/providers/apple/apple.js';
import { google } from '../src/providers/google/google.js';
import { ProviderHttp } from '../src/providers/http.js';
import { shapeDifferences } from './contract/fixtures.js';
import { startStack, type Stack } from './helpers.js';

// The providers' callback tokens as the cited sources record them (test/fixtures/callbacks/): our verifiers read
// each recorded token right (its claims re-signed with a test key served as the provider's JWKS, its times moved
// to now), and the emulator's tokens have the recorded shape.

interface CallbackFixture {
  file: string;
  token: { header: Record<string, unknown>; claims: JWTPayload };
}
const load = (provider: string, prefix: string): CallbackFixture[] => {
  const dir = new URL(`./fixtures/callbacks/${provider}/`, import.meta.url);
  return readdirSync(dir)
    .filter((name) => name.startsWith(prefix) && name.endsWith('.json'))
    .map((name) => ({
      ...(JSON.parse(readFileSync(new URL(name, dir), 'utf8')) as Omit<CallbackFixture, 'file'>),
      file: name,
    }));
};
const appleFixtures = load('apple', 'notification.');
const googleFixtures = load('google', 'set.');

/** The claims, with iat (and exp, the same distance after) moved to now. */
function now(claims: JWTPayload): JWTPayload {
  const shift = Math.floor(Date.now() / 1000) - Number(claims.iat);
  return {
    ...claims,
    iat: Number(claims.iat) + shift,
    ...(typeof claims.exp === 'number' ? { exp: claims.exp + shift } : {}),
  };
}

describe('the verifiers read the recorded callback tokens', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let jwks: Server;
  let jwksUrl: string;
  beforeAll(async () => {
    const jwk = { ...(await exportJWK(publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
    jwks = createServer((_request, response) =>
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })),
    );
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/keys`;
  });
  afterAll(() => new Promise<void>((resolve) => jwks.close(() => resolve())));
  const sign = (claims: JWTPayload) =>
    new SignJWT(now(claims)).setProtectedHeader({ alg: 'RS256', kid: 'test-key' }).sign(privateKey);

  it.each(appleFixtures.map((fixture) => [fixture.file, fixture] as const))('apple %s', async (_file, fixture) => {
    const config = apple.configure(
      new Settings({ SOCIAL_AUTH_APPLE_KEY: String(fixture.token.claims.aud), SOCIAL_AUTH_APPLE_JWKS_URL: jwksUrl }),
    )!;
    const provider = apple.create(config, {
      http: new ProviderHttp('apple', { timeoutMs: 2000 }),
      clockToleranceSeconds: 60,
    });
    const event = await provider.verifyNotification!(await sign(fixture.token.claims));
    const recorded = JSON.parse(String(fixture.token.claims.events)) as { type: string; sub: string; email?: string };
    expect(event).toMatchObject({
      type: recorded.type,
      uid: recorded.sub,
      id: fixture.token.claims.jti,
      ...(recorded.email ? { email: recorded.email } : {}),
    });
  });

  it.each(googleFixtures.map((fixture) => [fixture.file, fixture] as const))('google %s', async (_file, fixture) => {
    const config = google.configure(
      new Settings({ SOCIAL_AUTH_GOOGLE_KEY: String(fixture.token.claims.aud), SOCIAL_AUTH_GOOGLE_JWKS_URL: jwksUrl }),
    )!;
    const provider = google.create(config, {
      http: new ProviderHttp('google', { timeoutMs: 2000 }),
      clockToleranceSeconds: 60,
    });
    const event = await provider.verifySecurityEvent!(await sign(fixture.token.claims));
    const [uri, recorded] = Object.entries(
      fixture.token.claims.events as Record<string, { subject: { sub?: string }; reason?: string }>,
    )[0]!;
    expect(event).toMatchObject({
      type: uri.split('/').at(-1),
      id: fixture.token.claims.jti,
      ...(recorded.reason ? { reason: recorded.reason } : {}),
    });
    if (recorded.subject.sub) expect(event.uid).toBe(recorded.subject.sub);
  });

  it("google: a token for another client id of the project is for another client; a mix of ours and another's is refused", async () => {
    const fixture = googleFixtures.find((candidate) => candidate.file.includes('sessions-revoked'))!;
    const config = google.configure(
      new Settings({ SOCIAL_AUTH_GOOGLE_KEY: 'ours.apps.googleusercontent.com', SOCIAL_AUTH_GOOGLE_JWKS_URL: jwksUrl }),
    )!;
    const provider = google.create(config, {
      http: new ProviderHttp('google', { timeoutMs: 2000 }),
      clockToleranceSeconds: 60,
    });
    const event = async (aud: string | string[]) =>
      provider.verifySecurityEvent!(await sign({ ...fixture.token.claims, aud }));
    await expect(event('ours.apps.googleusercontent.com')).resolves.toMatchObject({ forAnotherClient: false });
    await expect(event('android.apps.googleusercontent.com')).resolves.toMatchObject({ forAnotherClient: true });
    await expect(
      event(['ours.apps.googleusercontent.com', 'android.apps.googleusercontent.com']),
    ).rejects.toMatchObject({ code: 'invalid_token' });
  });
});

describe("the emulator's callback tokens have the recorded shape", () => {
  let stack: Stack;
  let capture: Server;
  let url: string;
  const bodies: string[] = [];
  beforeAll(async () => {
    stack = await startStack('sqlite');
    capture = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        bodies.push(body);
        response.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => capture.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(capture.address() as { port: number }).port}/`;
  });
  afterAll(async () => {
    await stack.close();
    await new Promise<void>((resolve) => capture.close(() => resolve()));
  });

  it.each([
    ['data_deletion', 'data_deletion.request.json'],
    ['deauthorize', 'deauthorize.request.json'],
  ] as const)('facebook %s', async (kind, file) => {
    const fixture = JSON.parse(
      readFileSync(new URL(`./fixtures/callbacks/facebook/${file}`, import.meta.url), 'utf8'),
    ) as { request: { headers: Record<string, string> }; decoded_payload: Record<string, unknown> };
    await stack.emulator.sendFacebookCallback({ kind, user_id: String(fixture.decoded_payload.user_id), url });
    const signedRequest = new URLSearchParams(bodies.at(-1)!).get('signed_request')!;
    const payload = JSON.parse(Buffer.from(signedRequest.split('.')[1]!, 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
    expect(shapeDifferences(fixture.decoded_payload, payload, ['algorithm', 'user_id'])).toEqual([]);
  });

  it.each(appleFixtures.map((fixture) => [fixture.file, fixture] as const))('apple %s', async (_file, fixture) => {
    const recorded = JSON.parse(String(fixture.token.claims.events)) as { type: string; sub: string; email?: string };
    await stack.emulator.sendAppleNotification({
      type: recorded.type,
      sub: recorded.sub,
      url,
      ...(recorded.email ? { email: recorded.email } : {}),
    });
    const claims = decodeJwt((JSON.parse(bodies.at(-1)!) as { payload: string }).payload);
    expect(typeof claims.events).toBe('string'); // as Apple sends it
    expect(
      shapeDifferences({ ...fixture.token.claims, events: undefined }, { ...claims, events: undefined }, ['iss']),
    ).toEqual([]);
    expect(
      shapeDifferences(recorded, JSON.parse(String(claims.events)), ['type', 'sub'], ['email', 'is_private_email']),
    ).toEqual([]);
  });

  it.each(
    googleFixtures
      .filter((fixture) => !fixture.file.includes('token-revoked.'))
      .map((fixture) => [fixture.file, fixture] as const),
  )('google %s', async (_file, fixture) => {
    const [uri, recorded] = Object.entries(
      fixture.token.claims.events as Record<string, { subject: { sub: string }; reason?: string; state?: string }>,
    )[0]!;
    await stack.emulator.sendGoogleSecurityEvent({
      event: uri.split('/').at(-1)!,
      sub: recorded.subject.sub,
      url,
      ...(recorded.reason ? { reason: recorded.reason } : {}),
      ...(recorded.state ? { state: recorded.state } : {}),
    });
    const claims = decodeJwt(bodies.at(-1)!);
    expect(shapeDifferences(fixture.token.claims, claims, ['iss'], ['events'])).toEqual([]);
    expect(Object.keys(claims.events as object)).toEqual([uri]);
    expect(
      shapeDifferences(
        recorded,
        (claims.events as Record<string, unknown>)[uri],
        ['subject.subject_type', 'subject.iss', 'reason'],
        ['state'],
      ),
    ).toEqual([]);
  });
});
