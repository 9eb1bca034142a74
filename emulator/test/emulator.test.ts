import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { authorizationHeader } from '../../src/providers/oauth1.js';
import { EmulatorClient, startEmulator, type RunningEmulator } from '@social-link/emulator';
import { http, type HttpResult } from '../../test/http-result.js';

const FB_APP_ID = '1234567890123456';
const FB_APP_SECRET = 'fb-app-secret';
const CONSUMER_KEY = 'our-consumer-key';
const CONSUMER_SECRET = 'our-consumer-secret';

const options = {
  facebook: { apps: { [FB_APP_ID]: FB_APP_SECRET } },
  twitter: { consumers: { [CONSUMER_KEY]: CONSUMER_SECRET } },
};

let emulator: RunningEmulator;
let client: EmulatorClient;

beforeAll(async () => {
  emulator = await startEmulator(options);
  client = new EmulatorClient(emulator.url);
});

afterAll(async () => {
  await emulator.close();
});

beforeEach(async () => {
  await client.reset();
});

function graph(path: string, params: Record<string, string> = {}): Promise<HttpResult> {
  return http(`${emulator.url}/facebook${path}?${new URLSearchParams(params)}`);
}

function appSecretProof(token: string, secret = FB_APP_SECRET): string {
  return createHmac('sha256', secret).update(token).digest('hex');
}

function control(method: string, path: string, body?: unknown): Promise<HttpResult> {
  return http(`${emulator.url}/_emulator${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
}

describe('Facebook /me', () => {
  it('answers the requested fields for a token of our app with a correct appsecret_proof', async () => {
    const minted = await client.mintFacebookToken({
      user: { name: 'Ada Lovelace', email: 'ada@example.com', first_name: 'Ada', last_name: 'Lovelace' },
    });
    expect(minted.app_id).toBe(FB_APP_ID);
    expect(minted.user_id).toMatch(/^\d{15,17}$/);
    expect(minted.expires_at).toBeGreaterThan(Date.now() / 1000 + 3500);

    const { status, body } = await graph('/v19.0/me', {
      fields: 'id,name,email,first_name,last_name,picture',
      access_token: minted.access_token,
      appsecret_proof: appSecretProof(minted.access_token),
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      id: minted.user_id,
      name: 'Ada Lovelace',
      email: 'ada@example.com',
      first_name: 'Ada',
      last_name: 'Lovelace',
    });
    expect(body.picture.data.url).toMatch(/^https:\/\//);
  });

  it('answers id and name by default, without a version and without a proof', async () => {
    const minted = await client.mintFacebookToken();
    const { status, body } = await graph('/me', { access_token: minted.access_token });
    expect(status).toBe(200);
    expect(Object.keys(body).sort()).toEqual(['id', 'name']);
    expect(body.id).toBe(minted.user_id);
  });

  it('keeps the profile of a known user id', async () => {
    const first = await client.mintFacebookToken({ user: { id: '100000000000001', name: 'Grace Hopper' } });
    const second = await client.mintFacebookToken({ user: { id: '100000000000001' } });
    const { body } = await graph('/me', { access_token: second.access_token });
    expect(second.user_id).toBe(first.user_id);
    expect(body.name).toBe('Grace Hopper');
  });

  it('leaves email out without the email permission', async () => {
    const minted = await client.mintFacebookToken({ scopes: ['public_profile'] });
    const { body } = await graph('/me', { fields: 'id,email', access_token: minted.access_token });
    expect(body).toEqual({ id: minted.user_id });
  });

  it('refuses a missing token with code 2500', async () => {
    const { status, body } = await graph('/v19.0/me', { fields: 'id' });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({
      message: 'An active access token must be used to query information about the current user.',
      type: 'OAuthException',
      code: 2500,
    });
  });

  it('refuses an unknown token with code 190 (fixtures/providers/facebook/me.invalid_token.json)', async () => {
    const { status, body } = await graph('/v19.0/me', { access_token: 'EAAnot-a-token' });
    expect(status).toBe(400);
    expect(body).toEqual({
      error: {
        message: 'Invalid OAuth access token - Cannot parse access token',
        type: 'OAuthException',
        code: 190,
        fbtrace_id: expect.any(String),
      },
    });
  });

  it('refuses an expired token with code 190 subcode 463', async () => {
    const minted = await client.mintFacebookToken({ expires_in: -60 });
    const { status, body } = await graph('/v19.0/me', { access_token: minted.access_token });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ type: 'OAuthException', code: 190, error_subcode: 463 });
    expect(body.error.message).toMatch(
      /^Error validating access token: Session has expired on \w+day, \d\d-\w{3}-\d\d \d\d:\d\d:\d\d \w+\. The current time is .+\.$/,
    );
  });

  it('refuses a token expired through the control API', async () => {
    const minted = await client.mintFacebookToken();
    await client.expireToken(minted.access_token);
    const { body } = await graph('/me', { access_token: minted.access_token });
    expect(body.error).toMatchObject({ code: 190, error_subcode: 463 });
  });

  it('refuses a wrong appsecret_proof, e.g. a token of another app proven with our secret', async () => {
    const minted = await client.mintFacebookToken({ app_id: '999999999999999' });
    const { status, body } = await graph('/v19.0/me', {
      access_token: minted.access_token,
      appsecret_proof: appSecretProof(minted.access_token),
    });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({
      message: 'Invalid appsecret_proof provided in the API argument',
      type: 'GraphMethodException',
      code: 100,
    });
  });

  it('accepts any appsecret_proof when told to ignore it', async () => {
    await client.setFault('facebook', { appsecret_proof: 'ignore' });
    const minted = await client.mintFacebookToken();
    const { status } = await graph('/me', { access_token: minted.access_token, appsecret_proof: 'wrong' });
    expect(status).toBe(200);
  });

  it('refuses an app access token, which has no current user', async () => {
    const { body } = await graph('/me', { access_token: `${FB_APP_ID}|${FB_APP_SECRET}` });
    expect(body.error.code).toBe(2500);
  });

  it('refuses an unknown field', async () => {
    const minted = await client.mintFacebookToken();
    const { status, body } = await graph('/me', { fields: 'id,birthday', access_token: minted.access_token });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({
      code: 100,
      message: '(#100) Tried accessing nonexisting field (birthday) on node type (User)',
    });
  });
});

describe('Facebook debug_token', () => {
  const appAccessToken = `${FB_APP_ID}|${FB_APP_SECRET}`;

  it('describes a token of our app', async () => {
    const minted = await client.mintFacebookToken({ scopes: ['public_profile', 'email'] });
    const { status, body } = await graph('/v19.0/debug_token', {
      input_token: minted.access_token,
      access_token: appAccessToken,
    });
    expect(status).toBe(200);
    expect(body.data).toMatchObject({
      app_id: FB_APP_ID,
      type: 'USER',
      application: expect.any(String),
      expires_at: minted.expires_at,
      is_valid: true,
      scopes: ['public_profile', 'email'],
      user_id: minted.user_id,
    });
  });

  it('refuses to inspect a token of another app: 400 (#100) (fixtures/providers/facebook/debug_token.foreign_app_token.json)', async () => {
    const minted = await client.mintFacebookToken({ app_id: '999999999999999' });
    const { status, body } = await graph('/debug_token', {
      input_token: minted.access_token,
      access_token: appAccessToken,
    });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({
      code: 100,
      type: 'OAuthException',
      message: '(#100) The App_id in the input_token did not match the Viewing App',
    });
  });

  it('marks an expired token invalid with the error inside data', async () => {
    const minted = await client.mintFacebookToken({ expires_in: -10 });
    const { status, body } = await graph('/debug_token', {
      input_token: minted.access_token,
      access_token: appAccessToken,
    });
    expect(status).toBe(200);
    expect(body.data).toMatchObject({
      app_id: FB_APP_ID,
      is_valid: false,
      user_id: minted.user_id,
      error: { code: 190, subcode: 463, message: expect.stringContaining('Session has expired') },
    });
  });

  it('marks an unknown token invalid (fixtures/providers/facebook/debug_token.invalid_token.json)', async () => {
    const { status, body } = await graph('/debug_token', { input_token: 'EAAunknown', access_token: appAccessToken });
    expect(status).toBe(200);
    expect(body).toEqual({
      data: {
        error: { code: 190, message: 'Invalid OAuth access token - Cannot parse access token' },
        is_valid: false,
        scopes: [],
      },
    });
  });

  it('refuses a wrong app access token', async () => {
    const minted = await client.mintFacebookToken();
    const { status, body } = await graph('/debug_token', {
      input_token: minted.access_token,
      access_token: `${FB_APP_ID}|wrong`,
    });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ type: 'OAuthException', code: 190 });
  });
});

describe('Twitter verify_credentials', () => {
  const endpoint = () => `${emulator.url}/twitter/1.1/account/verify_credentials.json`;

  interface SignedCall {
    token: string;
    tokenSecret: string;
    consumerKey?: string;
    consumerSecret?: string;
    query?: string;
    signedUrl?: string;
    nonce?: string;
    timestamp?: number;
  }

  function signedHeader(call: SignedCall): string {
    const url = `${endpoint()}${call.query ?? ''}`;
    return authorizationHeader(
      'GET',
      call.signedUrl ?? url,
      {
        consumerKey: call.consumerKey ?? CONSUMER_KEY,
        consumerSecret: call.consumerSecret ?? CONSUMER_SECRET,
        token: call.token,
        tokenSecret: call.tokenSecret,
      },
      { nonce: call.nonce, timestamp: call.timestamp },
    );
  }

  function verifyCredentials(call: SignedCall): Promise<HttpResult> {
    return http(`${endpoint()}${call.query ?? ''}`, { headers: { authorization: signedHeader(call) } });
  }

  async function mint(input: Parameters<EmulatorClient['mintTwitterToken']>[0] = {}) {
    const minted = await client.mintTwitterToken(input);
    return { minted, call: { token: minted.access_token, tokenSecret: minted.access_token_secret } };
  }

  it('answers the user for a correctly signed request, with the email when asked', async () => {
    const { minted, call } = await mint({ user: { screen_name: 'ada', name: 'Ada', email: 'ada@example.com' } });
    expect(minted.consumer_key).toBe(CONSUMER_KEY);
    expect(minted.access_token.startsWith(`${minted.user_id}-`)).toBe(true);

    const { status, body, text } = await verifyCredentials({ ...call, query: '?include_email=true&skip_status=true' });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      id_str: minted.user_id,
      screen_name: 'ada',
      name: 'Ada',
      email: 'ada@example.com',
      verified: false,
    });
    expect(body.created_at).toMatch(/^\w{3} \w{3} \d\d \d\d:\d\d:\d\d \+0000 \d{4}$/);
    // The JSON number carries every digit, even where JavaScript's Number cannot.
    expect(text.startsWith(`{"id":${minted.user_id},`)).toBe(true);
  });

  it('leaves the email out unless include_email=true', async () => {
    const { call } = await mint();
    const { status, body } = await verifyCredentials(call);
    expect(status).toBe(200);
    expect(body).not.toHaveProperty('email');
  });

  it('refuses a missing or non-OAuth Authorization header with code 215', async () => {
    for (const headers of [{}, { authorization: 'Bearer abc' }] as Record<string, string>[]) {
      const { status, body } = await http(endpoint(), { headers });
      expect(status).toBe(400);
      expect(body).toEqual({ errors: [{ code: 215, message: 'Bad Authentication data.' }] });
    }
  });

  it('refuses a signature over another URL with code 32', async () => {
    const { call } = await mint();
    const { status, body } = await verifyCredentials({ ...call, query: '?include_email=true', signedUrl: endpoint() });
    expect(status).toBe(401);
    expect(body).toEqual({ errors: [{ code: 32, message: 'Could not authenticate you.' }] });
  });

  it('refuses a wrong token secret with code 32', async () => {
    const { call } = await mint();
    const { status, body } = await verifyCredentials({ ...call, tokenSecret: 'wrong' });
    expect(status).toBe(401);
    expect(body.errors[0].code).toBe(32);
  });

  it('refuses an unknown consumer key with code 89 (fixtures/providers/twitter/verify_credentials.bad_app_credentials.wrong_key.json)', async () => {
    const { call } = await mint();
    const { status, body } = await verifyCredentials({ ...call, consumerKey: 'unknown', consumerSecret: 'whatever' });
    expect(status).toBe(401);
    expect(body.errors[0].code).toBe(89);
  });

  it('refuses a token of another consumer with code 89', async () => {
    const { call } = await mint({ consumer_key: 'another-consumer' });
    const { status, body } = await verifyCredentials(call);
    expect(status).toBe(401);
    expect(body).toEqual({ errors: [{ code: 89, message: 'Invalid or expired token.' }] });
  });

  it('refuses an expired token with code 89', async () => {
    const { call } = await mint({ expires_in: -1 });
    expect((await verifyCredentials(call)).body.errors[0].code).toBe(89);

    const { minted, call: other } = await mint();
    await client.expireToken(minted.access_token);
    expect((await verifyCredentials(other)).body.errors[0].code).toBe(89);
  });

  it('refuses a timestamp more than 5 minutes old with code 135', async () => {
    const { call } = await mint();
    const { status, body } = await verifyCredentials({ ...call, timestamp: Math.floor(Date.now() / 1000) - 301 });
    expect(status).toBe(401);
    expect(body).toEqual({ errors: [{ code: 135, message: 'Timestamp out of bounds.' }] });
  });

  it('refuses a replayed nonce with code 32', async () => {
    const { call } = await mint();
    const header = signedHeader(call);
    const first = await http(endpoint(), { headers: { authorization: header } });
    const replay = await http(endpoint(), { headers: { authorization: header } });
    expect(first.status).toBe(200);
    expect(replay.status).toBe(401);
    expect(replay.body.errors[0].code).toBe(32);
  });
});

describe('faults', () => {
  it('delays answers by latency_ms without blocking other requests', async () => {
    await client.setFault('facebook', { latency_ms: 1000 });
    const started = Date.now();
    const answered: string[] = [];
    const slow = graph('/me').then(() => (answered.push('facebook'), Date.now() - started));
    const fast = http(`${emulator.url}/twitter/1.1/account/verify_credentials.json`).then(() =>
      answered.push('twitter'),
    );
    const [slowMs] = await Promise.all([slow, fast]);
    expect(slowMs).toBeGreaterThanOrEqual(990);
    // Not blocked: the other request was answered while Facebook's was still held (an order, not a duration a busy
    // machine could stretch).
    expect(answered).toEqual(['twitter', 'facebook']);
  });

  it('spreads the delay by latency_jitter_ms around latency_ms', async () => {
    await client.setFault('facebook', { latency_ms: 1000, latency_jitter_ms: 900 });
    const started = Date.now();
    const waits = await Promise.all(Array.from({ length: 20 }, () => graph('/me').then(() => Date.now() - started)));
    // Never less than latency - jitter; and not one fixed wait: the chance that 20 uniform draws all fall in the
    // upper half is 2^-20 (a busy machine only lengthens waits, it cannot shorten one below 1000 ms).
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(95);
    expect(Math.min(...waits)).toBeLessThan(1000);
  });

  it('merges a PUT into the current fault, and refuses a result whose spread exceeds its latency', async () => {
    await client.setFault('facebook', { latency_ms: 100, latency_jitter_ms: 50 });
    // Lowering the latency alone would leave a spread larger than it: refused, the fault unchanged.
    expect((await control('PUT', '/faults/facebook', { latency_ms: 10 })).status).toBe(400);
    expect((await control('PUT', '/faults/facebook', { mode: 'none' })).body).toMatchObject({
      latency_ms: 100,
      latency_jitter_ms: 50,
    });
    expect((await control('PUT', '/faults/facebook', { latency_ms: 10, latency_jitter_ms: 0 })).status).toBe(200);
    await client.clearFaults();
    expect((await control('PUT', '/faults/facebook', { latency_jitter_ms: 5 })).status).toBe(400);
  });

  it('answers HTTP 500 with each provider error body', async () => {
    await client.setFault('facebook', { mode: 'error_500' });
    await client.setFault('twitter', { mode: 'error_500' });
    const facebook = await graph('/me');
    expect(facebook.status).toBe(500);
    expect(facebook.body.error).toMatchObject({ code: 2, type: 'OAuthException', is_transient: true });
    const twitter = await http(`${emulator.url}/twitter/1.1/account/verify_credentials.json`);
    expect(twitter.status).toBe(500);
    expect(twitter.body).toEqual({ errors: [{ code: 131, message: 'Internal error' }] });
  });

  it('answers garbage with HTTP 200', async () => {
    await client.setFault('facebook', { mode: 'garbage' });
    const { status, contentType, text } = await graph('/me');
    expect(status).toBe(200);
    expect(contentType).toMatch(/^text\/html/);
    expect(text).toBe('<html>oops</html>');
  });

  it('resets the connection', async () => {
    await client.setFault('twitter', { mode: 'reset' });
    await expect(fetch(`${emulator.url}/twitter/1.1/account/verify_credentials.json`)).rejects.toThrow();
  });

  it('hangs until the emulator closes', async () => {
    const own = await startEmulator(options);
    const ownClient = new EmulatorClient(own.url);
    await ownClient.setFault('facebook', { mode: 'hang' });
    const hanging = fetch(`${own.url}/facebook/me`);
    let settled = false;
    hanging.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);
    expect((await ownClient.stats()).requests.facebook).toBe(1);
    await own.close();
    await expect(hanging).rejects.toThrow();
  });

  it('clears every fault', async () => {
    await client.setFault('facebook', { mode: 'error_500' });
    await client.clearFaults();
    expect((await graph('/me')).status).toBe(400);
  });

  it('answers the resulting settings', async () => {
    const first = await control('PUT', '/faults/facebook', { latency_ms: 5 });
    const second = await control('PUT', '/faults/facebook', { mode: 'garbage' });
    expect(first.body).toEqual({ latency_ms: 5, mode: 'none', appsecret_proof: 'verify' });
    expect(second.body).toEqual({ latency_ms: 5, mode: 'garbage', appsecret_proof: 'verify' });
  });
});

describe('control API', () => {
  it('counts provider requests only', async () => {
    const minted = await client.mintFacebookToken();
    await graph('/me', { access_token: minted.access_token });
    await graph('/debug_token', { input_token: minted.access_token, access_token: `${FB_APP_ID}|${FB_APP_SECRET}` });
    await http(`${emulator.url}/twitter/1.1/account/verify_credentials.json`);
    expect((await client.stats()).requests).toMatchObject({ facebook: 2, twitter: 1, google: 0 });
    await client.reset();
    expect((await client.stats()).requests).toMatchObject({ facebook: 0, twitter: 0 });
  });

  it('describes itself without revealing secrets', async () => {
    const { status, body, text } = await control('GET', '');
    expect(status).toBe(200);
    expect(body.providers.facebook).toEqual({ base_url: `${emulator.url}/facebook`, app_ids: [FB_APP_ID] });
    expect(body.providers.twitter).toEqual({ base_url: `${emulator.url}/twitter`, consumer_keys: [CONSUMER_KEY] });
    expect(text).not.toContain(FB_APP_SECRET);
    expect(text).not.toContain(CONSUMER_SECRET);
  });

  it('mints with every default when the body is absent', async () => {
    const { status, body } = await control('POST', '/twitter/tokens');
    expect(status).toBe(201);
    expect(body.user_id).toMatch(/^\d+$/);
  });

  it('forgets tokens and on-the-fly apps on reset, keeping configured ones', async () => {
    const minted = await client.mintFacebookToken({ app_id: '999999999999999' });
    await client.reset();
    expect((await graph('/me', { access_token: minted.access_token })).body.error.code).toBe(190);
    expect((await control('GET', '')).body.providers.facebook.app_ids).toEqual([FB_APP_ID]);
  });

  it.each([
    ['a string where a number is expected', 'POST', '/facebook/tokens', { expires_in: '3600' }],
    ['an unknown field', 'POST', '/facebook/tokens', { expire_in: 60 }],
    ['a non-numeric Twitter user id', 'POST', '/twitter/tokens', { user: { id: 'abc' } }],
    ['an unknown fault mode', 'PUT', '/faults/facebook', { mode: 'explode' }],
    ['a negative latency', 'PUT', '/faults/twitter', { latency_ms: -1 }],
    ['a jitter larger than the latency', 'PUT', '/faults/twitter', { latency_ms: 100, latency_jitter_ms: 101 }],
    ['an unknown provider', 'PUT', '/faults/myspace', { mode: 'none' }],
    ['appsecret_proof for Twitter', 'PUT', '/faults/twitter', { appsecret_proof: 'ignore' }],
    ['a missing access_token', 'POST', '/tokens/expire', {}],
  ])('refuses %s with invalid_request', async (_case, method, path, body) => {
    const { status, body: answer } = await control(method, path, body);
    expect(status).toBe(400);
    expect(answer).toEqual({ code: 'invalid_request', message: expect.any(String) });
  });

  it('refuses a body that is not JSON with invalid_request', async () => {
    const { status, body } = await http(`${emulator.url}/_emulator/facebook/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{not json',
    });
    expect(status).toBe(400);
    expect(body.code).toBe('invalid_request');
  });

  it('answers unknown_token when expiring a token it never issued', async () => {
    const { status, body } = await control('POST', '/tokens/expire', { access_token: 'nope' });
    expect(status).toBe(404);
    expect(body.code).toBe('unknown_token');
    await expect(client.expireToken('nope')).rejects.toThrow(/404/);
  });

  it('refuses to listen on a non-loopback address', async () => {
    await expect(startEmulator({ ...options, host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });
});
