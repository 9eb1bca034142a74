import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidTokenError } from '../lib/errors.js';
import { ProviderHttp } from './http.js';
import { createOidcProvider, type OidcConfig } from './oidc/oidc.js';

// A multi-tenant issuer (Microsoft's `common`) on a loopback server: keys bound to an issuer (their `issuer`
// member) sign only its tokens; which key signed a token without a kid is not known, so such a token passes only
// when no key is bound.
const TENANT_A = '11111111-1111-4111-8111-111111111111';
const TENANT_B = '22222222-2222-4222-8222-222222222222';
let server: Server;
let origin: string;
let published: JWK[] = [];
const http = new ProviderHttp('oidc:ms', { timeoutMs: 2000 });
let key: Awaited<ReturnType<typeof generateKeyPair>>;

beforeAll(async () => {
  key = await generateKeyPair('RS256');
  server = createServer((request, response) => {
    const body =
      request.url === '/keys'
        ? { keys: published }
        : { issuer: `${origin}/{tenantid}/v2.0`, jwks_uri: `${origin}/keys` };
    response
      .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=0' })
      .end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await http.close();
  await new Promise((resolve) => server.close(resolve));
});

const config = (): OidcConfig => ({
  name: 'ms',
  issuer: `${origin}/common/v2.0`,
  clientIds: ['client'],
  algorithms: ['RS256'],
  tenants: [],
  httpsOnly: false,
  nonceRule: 'optional',
});
const token = (tid: string, kid?: string) =>
  new SignJWT({ tid, sub: 'someone' })
    .setProtectedHeader(kid ? { alg: 'RS256', kid } : { alg: 'RS256' })
    .setIssuer(`${origin}/${tid}/v2.0`)
    .setAudience('client')
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(key.privateKey);

describe("a multi-tenant issuer's keys", () => {
  it('a key bound to tenant A signs no token of tenant B, with its kid or without', async () => {
    published = [{ ...(await exportJWK(key.publicKey)), kid: 'a', issuer: `${origin}/${TENANT_A}/v2.0` } as JWK];
    const provider = createOidcProvider(config(), { http, clockToleranceSeconds: 60 });
    await expect(provider.verify({ id_token: await token(TENANT_A, 'a') })).resolves.toMatchObject({
      uid: `${TENANT_A}:someone`,
    });
    await expect(provider.verify({ id_token: await token(TENANT_B, 'a') })).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(provider.verify({ id_token: await token(TENANT_B) })).rejects.toMatchObject({
      reason: expect.stringMatching(/key of another issuer/),
    });
  });

  it("keys bound to no issuer sign for any tenant (as Microsoft's validator has it), with a kid or without", async () => {
    published = [{ ...(await exportJWK(key.publicKey)), kid: 'u' }];
    const provider = createOidcProvider(config(), { http, clockToleranceSeconds: 60 });
    await expect(provider.verify({ id_token: await token(TENANT_B, 'u') })).resolves.toMatchObject({
      uid: `${TENANT_B}:someone`,
    });
    await expect(provider.verify({ id_token: await token(TENANT_B) })).resolves.toMatchObject({
      uid: `${TENANT_B}:someone`,
    });
  });
});
