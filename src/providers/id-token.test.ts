import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { ProviderHttp } from './http.js';
import { idTokenVerifier, verifyIdToken, type IdTokenPolicy } from './id-token.js';
import { JwksCache } from './jwks.js';

// Real keys, a real JWKS endpoint and jose: the checks of OpenID Connect Core 3.1.3.7 (errata set 2).
const ISSUER = 'https://issuer.example';
let server: Server;
let jwksUrl: string;
let sign: (claims: JWTPayload, kid?: string) => Promise<string>;
const http = new ProviderHttp('test', { timeoutMs: 2000 });

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', issuer: `${ISSUER}/tenant-a` };
  server = createServer((_request, response) =>
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/keys`;
  const now = Math.floor(Date.now() / 1000);
  sign = (claims, kid = 'k1') =>
    new SignJWT({ iss: ISSUER, aud: 'ours', sub: 'u1', iat: now, exp: now + 600, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid })
      .sign(privateKey);
});
afterAll(async () => {
  await http.close();
  await new Promise((resolve) => server.close(resolve));
});

const verifier = (policy: Partial<IdTokenPolicy> = {}) =>
  idTokenVerifier(
    { http, clockToleranceSeconds: 60 },
    { jwksUrl, issuers: [ISSUER], audiences: ['ours', 'ours-too'], algorithms: ['RS256'], ...policy },
  );

describe('verifyIdToken', () => {
  it('accepts our audience whatever the authorized party (azp), and several audiences all ours', async () => {
    await expect(verifier().verify(await sign({ azp: 'an-android-app' }))).resolves.toMatchObject({ sub: 'u1' });
    await expect(verifier().verify(await sign({ aud: ['ours', 'ours-too'] }))).resolves.toMatchObject({ sub: 'u1' });
  });

  it('refuses another audience, and ours beside one it does not trust', async () => {
    await expect(verifier().verify(await sign({ aud: 'theirs' }))).rejects.toMatchObject({
      code: 'invalid_token',
      extra: { detail: expect.stringMatching(/another app/) },
    });
    await expect(verifier().verify(await sign({ aud: ['ours', 'theirs'], azp: 'ours' }))).rejects.toMatchObject({
      extra: { detail: expect.stringMatching(/audience that is not ours/) },
    });
  });

  it('refuses another issuer, an expired token, one issued in the future, and one without a subject', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expect(verifier().verify(await sign({ iss: 'https://evil.example' }))).rejects.toMatchObject({
      extra: { detail: expect.stringMatching(/issuer/) },
    });
    await expect(verifier().verify(await sign({ iat: now - 7200, exp: now - 3600 }))).rejects.toMatchObject({
      extra: { detail: expect.stringMatching(/expired/) },
    });
    await expect(verifier().verify(await sign({ iat: now + 3600 }))).rejects.toMatchObject({
      extra: { detail: expect.stringMatching(/iat/) },
    });
    await expect(verifier().verify(await sign({ sub: '' }))).rejects.toMatchObject({ code: 'invalid_token' });
  });

  it("checks the nonce when the app sent one: equal by default, or as the provider's rule says", async () => {
    const token = await sign({ nonce: 'n1' });
    await expect(verifier().verify(token, 'n1')).resolves.toBeDefined();
    await expect(verifier().verify(token, 'n2')).rejects.toMatchObject({
      extra: { detail: expect.stringMatching(/nonce/) },
    });
    await expect(verifier({ nonceAccepted: () => true }).verify(token, 'n2')).resolves.toBeDefined();
  });

  it('computes the issuer from the claims when it depends on them, and checks the signing key with keyAccepted', async () => {
    const policy: IdTokenPolicy = {
      jwks: new JwksCache(http, jwksUrl),
      issuers: (claims) => [`${ISSUER}/${String(claims.tid)}`],
      audiences: ['ours'],
      algorithms: ['RS256'],
      keyAccepted: (key, claims) => (key as { issuer?: string } | undefined)?.issuer === claims.iss,
    };
    await expect(
      verifyIdToken(await sign({ iss: `${ISSUER}/tenant-a`, tid: 'tenant-a' }), policy),
    ).resolves.toBeDefined();
    await expect(
      verifyIdToken(await sign({ iss: `${ISSUER}/tenant-b`, tid: 'tenant-a' }), policy),
    ).rejects.toMatchObject({ code: 'invalid_token' });
    await expect(
      verifyIdToken(await sign({ iss: `${ISSUER}/tenant-b`, tid: 'tenant-b' }), policy),
    ).rejects.toMatchObject({ extra: { detail: expect.stringMatching(/key of another issuer/) } });
  });
});
