import { createHash } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { authorizationHeader } from '../../src/providers/oauth1.js';
import { EmulatorClient, startEmulator, type RunningEmulator } from '@social-link/emulator';
import { http, type HttpResult } from '../../test/http-result.js';

// The LINE, GitHub and X OAuth 2 parts of the provider emulator, through real HTTP.

const LINE_CHANNEL = '1654321098';
const LINE_SECRET = 'line-channel-secret';
const GH_CLIENT = 'Iv1.ourclientid0001';
const GH_SECRET = 'our-github-client-secret';
const GH_OTHER_CLIENT = 'Iv1.anotherapp00002';
const GH_OTHER_SECRET = 'another-github-client-secret';
const CONSUMER_KEY = 'our-consumer-key';
const CONSUMER_SECRET = 'our-consumer-secret';

const options = {
  twitter: { consumers: { [CONSUMER_KEY]: CONSUMER_SECRET } },
  line: { channels: { [LINE_CHANNEL]: LINE_SECRET } },
  github: { apps: { [GH_CLIENT]: GH_SECRET, [GH_OTHER_CLIENT]: GH_OTHER_SECRET } },
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

function control(method: string, path: string, body?: unknown): Promise<HttpResult> {
  return http(`${emulator.url}/_emulator${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

describe('LINE access token', () => {
  const verify = (accessToken: string) =>
    http(`${emulator.url}/line/oauth2/v2.1/verify?${new URLSearchParams({ access_token: accessToken })}`);
  const profile = (accessToken?: string) =>
    http(
      `${emulator.url}/line/v2/profile`,
      accessToken === undefined ? {} : { headers: { authorization: `Bearer ${accessToken}` } },
    );

  it('verifies a token of our channel: scope, client_id and seconds left', async () => {
    const minted = await client.mintLineToken();
    expect(minted.channel_id).toBe(LINE_CHANNEL);
    expect(minted.user_id).toMatch(/^U[0-9a-f]{32}$/);
    expect(minted.expires_at).toBeGreaterThan(nowSeconds() + 30 * 24 * 3600 - 60);

    const { status, body, headers } = await verify(minted.access_token);
    expect(status).toBe(200);
    // LINE leaves email out of scope even when it was granted.
    expect(body).toEqual({ scope: 'profile openid', client_id: LINE_CHANNEL, expires_in: expect.any(Number) });
    expect(body.expires_in).toBeGreaterThan(30 * 24 * 3600 - 60);
    expect(headers.get('x-line-request-id')).toBeTruthy();
  });

  it('reports the channel a token of another channel was issued to', async () => {
    const minted = await client.mintLineToken({ channel_id: '1999999999' });
    expect((await verify(minted.access_token)).body.client_id).toBe('1999999999');
  });

  it('answers the profile for the token', async () => {
    const minted = await client.mintLineToken({
      user: {
        displayName: 'Taro Line',
        pictureUrl: 'https://profile.line-scdn.net/abc',
        statusMessage: 'Hi',
        email: 'taro@example.com',
      },
    });
    const { status, body } = await profile(minted.access_token);
    expect(status).toBe(200);
    expect(body).toEqual({
      userId: minted.user_id,
      displayName: 'Taro Line',
      pictureUrl: 'https://profile.line-scdn.net/abc',
      statusMessage: 'Hi',
    });
  });

  it('keeps the profile of a known user id', async () => {
    const first = await client.mintLineToken({ user: { displayName: 'Hanako' } });
    const second = await client.mintLineToken({ user: { userId: first.user_id } });
    expect((await profile(second.access_token)).body.displayName).toBe('Hanako');
  });

  it('refuses an unknown token', async () => {
    const { status, body } = await verify('not-a-token');
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'invalid_request', error_description: 'invalid access token' });
    expect(await profile('not-a-token')).toMatchObject({ status: 401, body: { message: 'invalid token' } });
    expect(await profile()).toMatchObject({ status: 401, body: { message: 'invalid token' } });
  });

  it('refuses an expired token', async () => {
    const minted = await client.mintLineToken({ expires_in: -10 });
    const { status, body } = await verify(minted.access_token);
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'invalid_request', error_description: 'access token expired' });
    expect(await profile(minted.access_token)).toMatchObject({ status: 401, body: { message: 'invalid token' } });
  });

  it('refuses a token expired through the control API', async () => {
    const minted = await client.mintLineToken();
    await client.expireToken(minted.access_token);
    expect((await verify(minted.access_token)).body.error_description).toBe('access token expired');
    expect((await profile(minted.access_token)).status).toBe(401);
  });
});

describe('LINE ID token', () => {
  const verifyIdToken = (form: Record<string, string>) =>
    http(`${emulator.url}/line/oauth2/v2.1/verify`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  const refusal = (description: string) => ({
    status: 400,
    body: { error: 'invalid_request', error_description: description },
  });

  function signed(claims: Record<string, unknown>, secret = LINE_SECRET): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ typ: 'JWT', alg: 'HS256' }).sign(new TextEncoder().encode(secret));
  }

  it('mints a real HS256 JWT signed with the channel secret', async () => {
    const minted = await client.mintLineToken({ nonce: 'n-0987654' });
    expect(decodeProtectedHeader(minted.id_token)).toEqual({ typ: 'JWT', alg: 'HS256' });
    const { payload } = await jwtVerify(minted.id_token, new TextEncoder().encode(LINE_SECRET), {
      issuer: 'https://access.line.me',
      audience: LINE_CHANNEL,
    });
    expect(payload).toMatchObject({ sub: minted.user_id, nonce: 'n-0987654' });
  });

  it('answers the claims of a valid token, checking nonce and user_id', async () => {
    const minted = await client.mintLineToken({
      nonce: 'n-0987654',
      user: { displayName: 'Taro Line', pictureUrl: 'https://profile.line-scdn.net/abc', email: 'taro@example.com' },
    });
    const { status, body } = await verifyIdToken({
      id_token: minted.id_token,
      client_id: LINE_CHANNEL,
      nonce: 'n-0987654',
      user_id: minted.user_id,
    });
    expect(status).toBe(200);
    expect(body).toEqual({
      iss: 'https://access.line.me',
      sub: minted.user_id,
      aud: LINE_CHANNEL,
      exp: expect.any(Number),
      iat: expect.any(Number),
      nonce: 'n-0987654',
      amr: ['lineautologin'],
      name: 'Taro Line',
      picture: 'https://profile.line-scdn.net/abc',
      email: 'taro@example.com',
    });
    expect(body.exp).toBeGreaterThan(nowSeconds());
    expect(body.iat).toBeLessThanOrEqual(nowSeconds());
  });

  it('leaves nonce out when none was given, and needs neither nonce nor user_id', async () => {
    const minted = await client.mintLineToken();
    const { status, body } = await verifyIdToken({ id_token: minted.id_token, client_id: LINE_CHANNEL });
    expect(status).toBe(200);
    expect(body).not.toHaveProperty('nonce');
  });

  it('refuses a token of another channel with an audience error', async () => {
    const minted = await client.mintLineToken({ channel_id: '1999999999' });
    expect(await verifyIdToken({ id_token: minted.id_token, client_id: LINE_CHANNEL })).toMatchObject(
      refusal('Invalid IdToken Audience.'),
    );
  });

  it('refuses an expired token', async () => {
    const minted = await client.mintLineToken({ expires_in: -60 });
    expect(await verifyIdToken({ id_token: minted.id_token, client_id: LINE_CHANNEL })).toMatchObject(
      refusal('IdToken expired.'),
    );
  });

  it('refuses a nonce mismatch, and a nonce the token does not carry', async () => {
    const withNonce = await client.mintLineToken({ nonce: 'expected' });
    expect(
      await verifyIdToken({ id_token: withNonce.id_token, client_id: LINE_CHANNEL, nonce: 'other' }),
    ).toMatchObject(refusal('Invalid IdToken Nonce.'));
    const withoutNonce = await client.mintLineToken();
    expect(
      await verifyIdToken({ id_token: withoutNonce.id_token, client_id: LINE_CHANNEL, nonce: 'expected' }),
    ).toMatchObject(refusal('Invalid IdToken Nonce.'));
  });

  it('refuses a user_id other than the subject', async () => {
    const minted = await client.mintLineToken();
    expect(
      await verifyIdToken({ id_token: minted.id_token, client_id: LINE_CHANNEL, user_id: `U${'0'.repeat(32)}` }),
    ).toMatchObject(refusal('Invalid IdToken Subject Identifier.'));
  });

  it('refuses a token signed with another secret, and one that is not a JWT', async () => {
    const now = nowSeconds();
    const forged = await signed(
      { iss: 'https://access.line.me', sub: `U${'a'.repeat(32)}`, aud: LINE_CHANNEL, iat: now, exp: now + 600 },
      'guessed',
    );
    expect(await verifyIdToken({ id_token: forged, client_id: LINE_CHANNEL })).toMatchObject(
      refusal('Invalid IdToken.'),
    );
    expect(await verifyIdToken({ id_token: 'garbage', client_id: LINE_CHANNEL })).toMatchObject(
      refusal('Invalid IdToken.'),
    );
    expect(await verifyIdToken({ client_id: LINE_CHANNEL })).toMatchObject(refusal('Invalid IdToken.'));
  });

  it('refuses a correctly signed token from another issuer', async () => {
    const now = nowSeconds();
    const token = await signed({
      iss: 'https://evil.example',
      sub: `U${'a'.repeat(32)}`,
      aud: LINE_CHANNEL,
      iat: now,
      exp: now + 600,
    });
    expect(await verifyIdToken({ id_token: token, client_id: LINE_CHANNEL })).toMatchObject(
      refusal('Invalid IdToken Issuer.'),
    );
  });
});

describe('GitHub', () => {
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  const user = (authorization?: string) =>
    http(`${emulator.url}/github/user`, authorization === undefined ? {} : { headers: { authorization } });
  const checkToken = (body: unknown, authorization: string | null = basic(GH_CLIENT, GH_SECRET)) =>
    http(`${emulator.url}/github/applications/${encodeURIComponent(GH_CLIENT)}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization === null ? {} : { authorization }) },
      body: JSON.stringify(body),
    });
  const notFound = {
    status: 404,
    body: { message: 'Not Found', documentation_url: expect.stringContaining('check-a-token'), status: '404' },
  };
  const badCredentials = {
    status: 401,
    body: { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' },
  };

  it('mints gho_ tokens and answers the user for Bearer and token authorization', async () => {
    const minted = await client.mintGithubToken({
      user: { id: 583231, login: 'octocat', name: 'The Octocat', email: 'octocat@github.com' },
    });
    expect(minted).toEqual({
      access_token: expect.stringMatching(/^gho_[A-Za-z0-9]{36}$/),
      client_id: GH_CLIENT,
      user_id: 583231,
    });

    for (const scheme of ['Bearer', 'token']) {
      const { status, body } = await user(`${scheme} ${minted.access_token}`);
      expect(status).toBe(200);
      expect(body).toMatchObject({
        login: 'octocat',
        id: 583231,
        node_id: Buffer.from('04:User583231').toString('base64'),
        avatar_url: 'https://avatars.githubusercontent.com/u/583231?v=4',
        html_url: 'https://github.com/octocat',
        url: 'https://api.github.com/users/octocat',
        type: 'User',
        site_admin: false,
        name: 'The Octocat',
        company: null,
        blog: '',
        location: null,
        email: 'octocat@github.com',
        bio: null,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      });
    }
  });

  it('gives a new user a numeric id and no public email', async () => {
    const minted = await client.mintGithubToken();
    const { body } = await user(`Bearer ${minted.access_token}`);
    expect(body.id).toBe(minted.user_id);
    expect(typeof body.id).toBe('number');
    expect(body.email).toBeNull();
  });

  it('refuses a bad token with Bad credentials, and no token with Requires authentication', async () => {
    expect(await user('Bearer gho_notarealtoken')).toMatchObject(badCredentials);
    const { status, body } = await user();
    expect(status).toBe(401);
    expect(body).toMatchObject({ message: 'Requires authentication', status: '401' });
  });

  it('checks a token of our own app', async () => {
    const minted = await client.mintGithubToken({ user: { login: 'octocat' } });
    const { status, body } = await checkToken({ access_token: minted.access_token });
    expect(status).toBe(200);
    expect(body).toEqual({
      id: expect.any(Number),
      url: `https://api.github.com/authorizations/${body.id}`,
      app: { name: expect.any(String), url: expect.any(String), client_id: GH_CLIENT },
      token: minted.access_token,
      hashed_token: createHash('sha256').update(minted.access_token).digest('hex'),
      token_last_eight: minted.access_token.slice(-8),
      note: null,
      note_url: null,
      fingerprint: null,
      scopes: ['read:user', 'user:email'],
      created_at: expect.any(String),
      updated_at: expect.any(String),
      expires_at: null,
      user: expect.objectContaining({ login: 'octocat', id: minted.user_id, type: 'User' }),
    });
  });

  it('answers 404 for a token of another app and for an unknown token', async () => {
    const other = await client.mintGithubToken({ client_id: 'Iv1.someoneelse' });
    expect(await checkToken({ access_token: other.access_token })).toMatchObject(notFound);
    expect(await checkToken({ access_token: 'gho_unknown' })).toMatchObject(notFound);
    // The token itself still works on /user: only the app check tells whose app it belongs to.
    expect((await user(`Bearer ${other.access_token}`)).status).toBe(200);
  });

  it('refuses bad basic-auth credentials with 401', async () => {
    const minted = await client.mintGithubToken();
    expect(await checkToken({ access_token: minted.access_token }, basic(GH_CLIENT, 'wrong-secret'))).toMatchObject(
      badCredentials,
    );
    expect((await checkToken({ access_token: minted.access_token }, null)).status).toBe(401);
  });

  it("answers 404 when another app's valid credentials check in our app's name", async () => {
    const minted = await client.mintGithubToken();
    expect(
      await checkToken({ access_token: minted.access_token }, basic(GH_OTHER_CLIENT, GH_OTHER_SECRET)),
    ).toMatchObject(notFound);
  });

  it('answers 422 without access_token, and 400 for a body that is not JSON', async () => {
    const { status, body } = await checkToken({});
    expect(status).toBe(422);
    expect(body).toMatchObject({ message: expect.stringContaining('access_token'), status: '422' });
    const garbled = await http(`${emulator.url}/github/applications/${GH_CLIENT}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basic(GH_CLIENT, GH_SECRET) },
      body: '{not json',
    });
    expect(garbled).toMatchObject({ status: 400, body: { message: 'Problems parsing JSON', status: '400' } });
  });

  it('treats a token expired through the control API as gone', async () => {
    const minted = await client.mintGithubToken();
    await client.expireToken(minted.access_token);
    expect(await user(`Bearer ${minted.access_token}`)).toMatchObject(badCredentials);
    expect(await checkToken({ access_token: minted.access_token })).toMatchObject(notFound);
  });
});

describe('X OAuth 2 /2/users/me', () => {
  const me = (accessToken: string, query = '') =>
    http(`${emulator.url}/twitter/2/users/me${query}`, { headers: { authorization: `Bearer ${accessToken}` } });
  const unauthorized = {
    status: 401,
    body: { title: 'Unauthorized', type: 'about:blank', status: 401, detail: 'Unauthorized' },
  };

  function verifyCredentials(token: string, tokenSecret: string): Promise<HttpResult> {
    const url = `${emulator.url}/twitter/1.1/account/verify_credentials.json`;
    const authorization = authorizationHeader('GET', url, {
      consumerKey: CONSUMER_KEY,
      consumerSecret: CONSUMER_SECRET,
      token,
      tokenSecret,
    });
    return http(url, { headers: { authorization } });
  }

  it('answers id, name and username', async () => {
    const minted = await client.mintTwitterOAuth2Token({
      user: { id: '6253282', screen_name: 'TwitterAPI', name: 'Twitter API' },
    });
    expect(minted).toMatchObject({ client_id: expect.any(String), user_id: '6253282' });
    expect(minted.expires_at).toBeGreaterThan(nowSeconds() + 7100);
    const { status, body } = await me(minted.access_token);
    expect(status).toBe(200);
    expect(body).toEqual({ data: { id: '6253282', name: 'Twitter API', username: 'TwitterAPI' } });
  });

  it('adds the requested user.fields', async () => {
    const minted = await client.mintTwitterOAuth2Token();
    const { body } = await me(minted.access_token, '?user.fields=created_at,profile_image_url,verified');
    expect(body.data).toEqual({
      id: minted.user_id,
      name: expect.any(String),
      username: expect.any(String),
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/),
      profile_image_url: expect.stringMatching(/^https:\/\//),
      verified: false,
    });
  });

  it('refuses an unknown user.fields value with 400', async () => {
    const minted = await client.mintTwitterOAuth2Token();
    const { status, body } = await me(minted.access_token, '?user.fields=shoe_size');
    expect(status).toBe(400);
    expect(body).toMatchObject({
      title: 'Invalid Request',
      errors: [{ parameters: { 'user.fields': ['shoe_size'] } }],
    });
  });

  it('names the same id as the OAuth 1.0a token of the same user', async () => {
    const oauth1 = await client.mintTwitterToken();
    const oauth2 = await client.mintTwitterOAuth2Token({ user: { id: oauth1.user_id } });
    const v1 = await verifyCredentials(oauth1.access_token, oauth1.access_token_secret);
    const v2 = await me(oauth2.access_token);
    expect(v1.status).toBe(200);
    expect(v2.body.data.id).toBe(v1.body.id_str);
    expect(v2.body.data.username).toBe(v1.body.screen_name);
  });

  it('refuses bad, expired and OAuth 1.0a tokens, and keeps OAuth 2 tokens out of OAuth 1.0a', async () => {
    expect(await me('nope')).toMatchObject(unauthorized);
    expect((await me('nope')).contentType).toMatch(/^application\/problem\+json/);
    const expired = await client.mintTwitterOAuth2Token({ expires_in: -1 });
    expect(await me(expired.access_token)).toMatchObject(unauthorized);
    const oauth1 = await client.mintTwitterToken();
    expect(await me(oauth1.access_token)).toMatchObject(unauthorized);
    const oauth2 = await client.mintTwitterOAuth2Token();
    expect((await verifyCredentials(oauth2.access_token, '')).body.errors[0].code).toBe(89);
  });

  it('refuses a token expired through the control API', async () => {
    const minted = await client.mintTwitterOAuth2Token();
    expect((await me(minted.access_token)).status).toBe(200);
    await client.expireToken(minted.access_token);
    expect(await me(minted.access_token)).toMatchObject(unauthorized);
  });
});

describe('faults', () => {
  it('answers HTTP 500 on LINE and GitHub, counting their requests', async () => {
    await client.setFault('line', { mode: 'error_500' });
    await client.setFault('github', { mode: 'error_500' });
    const line = await http(`${emulator.url}/line/v2/profile`);
    expect(line.status).toBe(500);
    expect(line.body).toEqual({ message: 'Internal Server Error' });
    const github = await http(`${emulator.url}/github/user`);
    expect(github.status).toBe(500);
    expect(github.body).toMatchObject({ message: 'Server Error' });
    expect((await client.stats()).requests).toMatchObject({ line: 1, github: 1 });
  });

  it('answers HTTP 500 on X OAuth 2 as twitter', async () => {
    await client.setFault('twitter', { mode: 'error_500' });
    const { status, body } = await http(`${emulator.url}/twitter/2/users/me`);
    expect(status).toBe(500);
    expect(body).toMatchObject({ status: 500 });
  });
});

describe('control API', () => {
  it('mints with every default when the body is absent', async () => {
    for (const path of ['/line/tokens', '/github/tokens', '/twitter/oauth2_tokens']) {
      const { status, body } = await control('POST', path);
      expect(status).toBe(201);
      expect(body.access_token).toEqual(expect.any(String));
    }
  });

  it('describes LINE and GitHub without revealing secrets', async () => {
    const { body } = await control('GET', '');
    expect(body.providers.line).toEqual({ base_url: `${emulator.url}/line`, channel_ids: [LINE_CHANNEL] });
    expect(body.providers.github).toEqual({
      base_url: `${emulator.url}/github`,
      client_ids: [GH_CLIENT, GH_OTHER_CLIENT],
    });
    expect(body.control).toEqual(
      expect.arrayContaining([
        'POST /_emulator/line/tokens',
        'POST /_emulator/github/tokens',
        'POST /_emulator/twitter/oauth2_tokens',
      ]),
    );
    expect(JSON.stringify(body)).not.toContain(LINE_SECRET);
    expect(JSON.stringify(body)).not.toContain(GH_SECRET);
  });

  it('forgets tokens, users and on-the-fly clients on reset, keeping configured ones', async () => {
    const line = await client.mintLineToken({ channel_id: '1999999999' });
    const github = await client.mintGithubToken({ client_id: 'Iv1.someoneelse' });
    const twitter = await client.mintTwitterOAuth2Token();
    await client.reset();
    expect(
      (await http(`${emulator.url}/line/oauth2/v2.1/verify?access_token=${encodeURIComponent(line.access_token)}`))
        .status,
    ).toBe(400);
    expect(
      (await http(`${emulator.url}/github/user`, { headers: { authorization: `Bearer ${github.access_token}` } }))
        .status,
    ).toBe(401);
    expect(
      (
        await http(`${emulator.url}/twitter/2/users/me`, {
          headers: { authorization: `Bearer ${twitter.access_token}` },
        })
      ).status,
    ).toBe(401);
    const { body } = await control('GET', '');
    expect(body.providers.line.channel_ids).toEqual([LINE_CHANNEL]);
    expect(body.providers.github.client_ids).toEqual([GH_CLIENT, GH_OTHER_CLIENT]);
    await expect(client.expireToken(twitter.access_token)).rejects.toThrow(/404/);
  });

  it.each([
    ['a malformed LINE user id', '/line/tokens', { user: { userId: 'U123' } }],
    ['a string expires_in', '/line/tokens', { expires_in: '3600' }],
    ['an unknown LINE field', '/line/tokens', { channel: LINE_CHANNEL }],
    ['a string GitHub user id', '/github/tokens', { user: { id: '583231' } }],
    ['an invalid GitHub login', '/github/tokens', { user: { login: '-octocat' } }],
    ['a non-numeric X user id', '/twitter/oauth2_tokens', { user: { id: 'abc' } }],
    ['an unknown X field', '/twitter/oauth2_tokens', { scopes: ['users.read'] }],
  ])('refuses %s with invalid_request', async (_case, path, body) => {
    const { status, body: answer } = await control('POST', path, body);
    expect(status).toBe(400);
    expect(answer).toEqual({ code: 'invalid_request', message: expect.any(String) });
  });
});
