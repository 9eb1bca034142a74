import { createServer, type Server } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { ProviderHttp } from './http.js';
import { JwksCache } from './jwks.js';

// A real HTTP server stands for the provider's JWKS endpoint; each test says what it answers.
let server: Server;
let url: string;
let answer: { status: number; headers: Record<string, string>; keys: JWK[] } = { status: 200, headers: {}, keys: [] };
let fetches = 0;
const http = new ProviderHttp('test', { timeoutMs: 2000 });

beforeAll(async () => {
  server = createServer((_request, response) => {
    fetches += 1;
    response
      .writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers })
      .end(JSON.stringify({ keys: answer.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/keys`;
});
afterAll(async () => {
  await http.close();
  await new Promise((resolve) => server.close(resolve));
});
afterEach(() => {
  fetches = 0;
});

async function keyPair(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256' } };
}

const header = (kid: string) => ({ alg: 'RS256', kid });
const token = async (key: Awaited<ReturnType<typeof keyPair>>) =>
  new SignJWT({}).setProtectedHeader(header(key.kid)).sign(key.privateKey);
const flattened = async (key: Awaited<ReturnType<typeof keyPair>>) => {
  const [protectedHeader, payload, signature] = (await token(key)).split('.');
  return { protected: protectedHeader!, payload: payload!, signature: signature! };
};

describe('JwksCache', () => {
  it('fetches once and serves the keys from memory while fresh (Cache-Control max-age)', async () => {
    const key = await keyPair('a');
    answer = { status: 200, headers: { 'cache-control': 'public, max-age=3600' }, keys: [key.jwk] };
    const cache = new JwksCache(http, url);
    for (let i = 0; i < 3; i++) await cache.getKey(header('a'), await flattened(key));
    expect(fetches).toBe(1);
  });

  it('counts the Age a cache in front of the provider reports: max-age minus age is left', async () => {
    const key = await keyPair('a');
    answer = { status: 200, headers: { 'cache-control': 'max-age=100', age: '100' }, keys: [key.jwk] };
    const cache = new JwksCache(http, url, { minMaxAgeMs: 0 });
    await cache.getKey(header('a'), await flattened(key));
    // Stale from the moment they came (max-age minus Age is 0): a millisecond later, the next use refreshes them
    // in the background. (Within the same millisecond they were still fresh: the test waits that out.)
    await new Promise((resolve) => setTimeout(resolve, 5));
    await cache.getKey(header('a'), await flattened(key));
    await vi.waitFor(() => expect(fetches).toBe(2), { timeout: 5000 }); // the background fetch, however busy the machine
  });

  it('refetches on an unknown kid (a rotation) at most once per interval', async () => {
    const old = await keyPair('old');
    const rotated = await keyPair('new');
    answer = { status: 200, headers: { 'cache-control': 'max-age=3600' }, keys: [old.jwk] };
    const cache = new JwksCache(http, url, { unknownKidRefetchMs: 300 });
    await cache.getKey(header('old'), await flattened(old));
    answer.keys = [old.jwk, rotated.jwk];
    await new Promise((resolve) => setTimeout(resolve, 350));
    await expect(cache.getKey(header('new'), await flattened(rotated))).resolves.toBeDefined();
    expect(fetches).toBe(2);
    // A flood of forged kids right after: no more fetches.
    for (let i = 0; i < 5; i++)
      await expect(cache.getKey(header(`forged-${i}`), await flattened(rotated))).rejects.toThrow();
    expect(fetches).toBe(2);
  });

  it('with stale keys, accepts the first token of a rotated key: it waits for the refresh the stale keys started', async () => {
    const old = await keyPair('old');
    const rotated = await keyPair('new');
    answer = { status: 200, headers: { 'cache-control': 'max-age=0' }, keys: [old.jwk] };
    const cache = new JwksCache(http, url, { minMaxAgeMs: 0 }); // the unknown-kid interval stays 30 s
    await cache.getKey(header('old'), await flattened(old));
    answer = { status: 200, headers: { 'cache-control': 'max-age=3600' }, keys: [old.jwk, rotated.jwk] };
    await new Promise((resolve) => setTimeout(resolve, 5)); // stale now
    await expect(cache.getKey(header('new'), await flattened(rotated))).resolves.toBeDefined();
    expect(fetches).toBe(2); // one refresh served both: the stale keys' and the unknown kid's
    // A forged kid right after, the keys fresh again: no new fetch (the set was looked at a moment ago).
    await expect(cache.getKey(header('forged'), await flattened(rotated))).rejects.toThrow();
    expect(fetches).toBe(2);
  });

  it('keeps the last good keys through an outage, and fails only when it has none', async () => {
    const key = await keyPair('a');
    answer = { status: 500, headers: {}, keys: [] };
    await expect(new JwksCache(http, url).getKey(header('a'), await flattened(key))).rejects.toMatchObject({
      code: 'provider_unavailable',
    });
    answer = { status: 200, headers: { 'cache-control': 'max-age=0' }, keys: [key.jwk] };
    const cache = new JwksCache(http, url, { minMaxAgeMs: 0 });
    await cache.getKey(header('a'), await flattened(key));
    answer = { status: 500, headers: {}, keys: [] };
    await expect(cache.getKey(header('a'), await flattened(key))).resolves.toBeDefined();
    expect(cache.keyOf('a')).toMatchObject({ kid: 'a' });
  });
});
