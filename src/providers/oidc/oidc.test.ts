import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderUnavailableError } from '../../lib/errors.js';
import { ProviderHttp } from '../http.js';
import { createOidcProvider, type OidcConfig } from './oidc.js';

// A real loopback server stands for the issuer; its discovery document names the jwks_uri each test sets.
let server: Server;
let issuer: string;
let jwksUri = '';
let keyFetches = 0;
const http = new ProviderHttp('oidc:acme', { timeoutMs: 2000 });

beforeAll(async () => {
  server = createServer((request, response) => {
    if (request.url === '/jwks') {
      keyFetches += 1;
      return void response.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer, jwks_uri: jwksUri }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await http.close();
  await new Promise((resolve) => server.close(resolve));
});

const config = (httpsOnly: boolean): OidcConfig => ({
  name: 'acme',
  issuer,
  clientIds: ['client'],
  algorithms: ['RS256'],
  tenants: [],
  httpsOnly,
  nonceRule: 'optional',
});
// Any well-formed JWT: discovery happens before the token is read.
const idToken = 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiIxIn0.c2ln';

describe('OpenID Connect discovery', () => {
  it('in production refuses a jwks_uri over plain http (the keys could be swapped on the way)', async () => {
    jwksUri = 'http://keys.acme.invalid/jwks';
    const refusal = await createOidcProvider(config(true), { http, clockToleranceSeconds: 60 })
      .verify({ id_token: idToken })
      .catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ProviderUnavailableError);
    expect(refusal).toMatchObject({
      failure: 'app_refused',
      reason: expect.stringMatching(/jwks_uri that is not https/),
    });
  });

  it('accepts an https jwks_uri in production, and plain http on loopback (a local proxy, the emulator)', async () => {
    jwksUri = `${issuer}/jwks`;
    keyFetches = 0;
    const answer = await createOidcProvider(config(true), { http, clockToleranceSeconds: 60 })
      .verify({ id_token: idToken })
      .catch((error: unknown) => error);
    expect(keyFetches).toBe(1); // got past discovery to the keys (which hold no key "k")
    expect(answer).not.toMatchObject({ failure: 'app_refused' });
  });
});
