import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { importPKCS8, SignJWT, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildEmulator, EmulatorClient } from '@social-link/emulator';
import { Settings } from '../../src/lib/settings.js';
import { AppleApi } from '../../src/providers/apple/api.js';
import { loadProviderConfigs } from '../../src/providers/index.js';
import { authorizationHeader } from '../../src/providers/oauth1.js';
import { withProfile } from '../../src/providers/profile.js';
import type { TokenInput } from '../../src/providers/types.js';
import { shapeDifferences } from '../contract/fixtures.js';

// What each real provider requires of a request (test/fixtures/provider-requests/, each requirement cited):
// (a) the records are well-formed; (b) the emulator refuses a request missing each requirement as the provider
// does, and accepts the complete one; (c) our provider modules' real requests, against that strict emulator,
// meet every requirement — a header or parameter dropped from src/ turns (c) red.

// ---------------------------------------------------------------------------------------------------------------
// The records

interface Source {
  url?: string;
  repo?: string;
  path?: string;
  says: string;
}
interface Refusal {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  match?: string[];
  optional?: string[];
  assumed?: boolean;
  sources: Source[];
  notes?: string;
}
interface Requirement {
  id: string;
  level: 'required' | 'conditional' | 'recommended';
  when?: string;
  emulator_fault?: Record<string, unknown>;
  in: 'header' | 'query' | 'form' | 'json' | 'content_type';
  name?: string;
  rule: 'present' | 'prefix' | 'equals' | 'same_as_authorization_request';
  value?: string;
  sources: Source[];
  refusal: Refusal | null;
  notes?: string;
}
interface RecordedRequest {
  endpoint: string;
  method: 'GET' | 'POST';
  url: string;
  called_by: string[];
  sources: Source[];
  requirements: Requirement[];
  notes?: string;
}
interface ProviderRecord {
  file: string;
  provider: string;
  title: string;
  requests: RecordedRequest[];
}

const DIR = new URL('../fixtures/provider-requests/', import.meta.url);
const records: ProviderRecord[] = readdirSync(DIR)
  .filter((name) => name.endsWith('.json'))
  .map((file) => ({ file, ...(JSON.parse(readFileSync(new URL(file, DIR), 'utf8')) as Omit<ProviderRecord, 'file'>) }));
const PROVIDERS = ['facebook', 'twitter', 'google', 'apple', 'line', 'github', 'oidc'];
const key = (provider: string, endpoint: string) => `${provider}/${endpoint}`;
const allRequests = records.flatMap((record) =>
  record.requests.map((request) => ({ provider: record.provider, request })),
);
const cited = (source: Source) => Boolean(source.says) && Boolean(source.url || (source.repo && source.path));
const saysAssumed = (notes: string | undefined) => /gap|assum|not shown|no source/i.test(notes ?? '');

describe('provider request records', () => {
  it('one file per provider, each request with its sources, each requirement with sources and a refusal (or a note)', () => {
    expect(records.map((record) => record.file).sort()).toEqual(PROVIDERS.map((provider) => `${provider}.json`).sort());
    const problems = records.flatMap((record) => {
      const found: string[] = [];
      if (`${record.provider}.json` !== record.file) found.push('provider does not match the file name');
      for (const request of record.requests) {
        const at = `${record.file} ${request.endpoint}`;
        if (!['GET', 'POST'].includes(request.method) || !request.url) found.push(`${at}: method and url`);
        if (request.called_by.length === 0) found.push(`${at}: called_by names none of our code`);
        if (request.sources.length === 0 && !saysAssumed(request.notes))
          found.push(`${at}: no source, and no note saying so`);
        if (request.sources.some((source) => !cited(source)))
          found.push(`${at}: a source without says and url or repo+path`);
        if (request.requirements.length === 0 && !saysAssumed(request.notes))
          found.push(`${at}: no requirement, and no note saying none is documented`);
        const ids = request.requirements.map((requirement) => requirement.id);
        if (new Set(ids).size !== ids.length) found.push(`${at}: duplicate requirement ids`);
        for (const requirement of request.requirements) {
          const where = `${at} ${requirement.id}`;
          if (!['required', 'conditional', 'recommended'].includes(requirement.level)) found.push(`${where}: level`);
          if (!['header', 'query', 'form', 'json', 'content_type'].includes(requirement.in)) found.push(`${where}: in`);
          if (!['present', 'prefix', 'equals', 'same_as_authorization_request'].includes(requirement.rule))
            found.push(`${where}: rule`);
          if (requirement.in !== 'content_type' && !requirement.name) found.push(`${where}: no name`);
          if ((requirement.rule === 'prefix' || requirement.rule === 'equals') && !requirement.value)
            found.push(`${where}: no value`);
          if (requirement.level === 'conditional' && !requirement.when)
            found.push(`${where}: conditional without when`);
          if (requirement.sources.length === 0 || requirement.sources.some((source) => !cited(source)))
            found.push(`${where}: sources`);
          if (requirement.level === 'recommended' ? requirement.refusal !== null : !requirement.refusal)
            found.push(`${where}: a refusal for required/conditional, none for recommended`);
          const refusal = requirement.refusal;
          if (refusal) {
            if (typeof refusal.status !== 'number' || refusal.status < 400) found.push(`${where}: refusal status`);
            if (refusal.sources.length === 0 || refusal.sources.some((source) => !cited(source)))
              found.push(`${where}: refusal sources`);
            if (refusal.assumed && !saysAssumed(refusal.notes))
              found.push(`${where}: an assumed refusal must say what is assumed`);
          }
        }
      }
      return found;
    });
    expect(problems).toEqual([]);
  });

  it('record GitHub User-Agent, Apple form posts and redirect_uri: the requirements this issue is about', () => {
    const requirement = (provider: string, endpoint: string, id: string) =>
      allRequests
        .find((entry) => key(entry.provider, entry.request.endpoint) === key(provider, endpoint))
        ?.request.requirements.find((r) => r.id === id);
    for (const endpoint of ['check_token', 'user', 'user_emails'])
      expect(requirement('github', endpoint, 'user_agent')?.refusal?.status).toBe(403);
    expect(requirement('github', 'check_token', 'basic_auth')?.value).toBe('Basic ');
    for (const endpoint of ['token', 'revoke', 'migration_token', 'usermigrationinfo'])
      expect(requirement('apple', endpoint, 'form_encoded')?.value).toBe('application/x-www-form-urlencoded');
    expect(requirement('apple', 'token', 'redirect_uri')?.rule).toBe('same_as_authorization_request');
    expect(requirement('line', 'verify_id_token', 'form_encoded')?.level).toBe('required');
    expect(requirement('twitter', 'verify_credentials', 'oauth1_header')?.value).toBe('OAuth ');
    expect(requirement('facebook', 'me', 'appsecret_proof')?.level).toBe('conditional');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// One emulator, every provider, and every request it receives (outside the control API) captured before its checks

const FB_APP = '1234567890123';
const FB_SECRET = 'fb-app-secret';
const TW_KEY = 'tw-consumer-key';
const TW_SECRET = 'tw-consumer-secret';
const LINE_CHANNEL = '1660000000';
const GH_ID = 'Iv1.0123456789abcdef';
const GH_SECRET = 'gh-client-secret-0123456789abcdef0123456';
const GOOGLE_ID = '123456789012-web.apps.googleusercontent.com';
const APPLE_ID = 'com.example.requests';
/** A Services ID: Sign in with Apple's web flow (as on Android), whose codes carry the authorization's redirect_uri. */
const APPLE_WEB_ID = 'com.example.requests.web';
const APPLE_REDIRECT_URI = 'https://app.example.com/auth/apple/callback';
/** The redirect_uri each Apple code was minted with (undefined: a native app's code), to check what we redeem it with. */
const mintedRedirects = new Map<string, string | undefined>();
const APPLE_TEAM = 'REQTEAM001';
const APPLE_KID = 'REQKEY0001';
const OIDC_CLIENT = 'corp-app';
const NONCE = 'nonce-provider-requests';
const appleKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const applePem = appleKey.export({ type: 'pkcs8', format: 'pem' }).toString();

interface Captured {
  method: string;
  url: URL;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

let app: FastifyInstance;
let origin: string;
let client: EmulatorClient;
const captured: Captured[] = [];

beforeAll(async () => {
  app = buildEmulator({
    facebook: { apps: { [FB_APP]: FB_SECRET } },
    twitter: { consumers: { [TW_KEY]: TW_SECRET } },
    line: { channels: { [LINE_CHANNEL]: 'b'.repeat(32) } },
    github: { apps: { [GH_ID]: GH_SECRET } },
    google: { clientIds: [GOOGLE_ID] },
    apple: {
      clientIds: [APPLE_ID],
      teamId: APPLE_TEAM,
      keys: { [APPLE_KID]: createPublicKey(appleKey).export({ format: 'jwk' }) as JWK },
    },
    oidc: { corp: { clientIds: [OIDC_CLIENT] } },
  });
  // Before the request checks (preHandler): a refused request is captured too.
  app.addHook('preValidation', async (request) => {
    if (request.url.startsWith('/_emulator')) return;
    captured.push({
      method: request.method,
      url: new URL(request.url, 'http://emulator'),
      headers: { ...request.headers },
      body: request.body,
    });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  client = new EmulatorClient(origin);
});
afterAll(() => app.close());

/** Apple's client secret, as Apple asks for it (ES256, iss team, sub client id, aud appleid.apple.com). */
async function appleClientSecret(): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: APPLE_KID })
    .setIssuer(APPLE_TEAM)
    .setSubject(APPLE_ID)
    .setAudience('https://appleid.apple.com')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(await importPKCS8(applePem, 'ES256'));
}

// ---------------------------------------------------------------------------------------------------------------
// (b) The emulator refuses what the provider refuses

interface Outgoing {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  query?: Record<string, string>;
  form?: Record<string, string>;
  json?: Record<string, unknown>;
}

/** node:http, so that no header is added behind our back (fetch adds a User-Agent of its own). */
function send(
  outgoing: Outgoing,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const url = new URL(outgoing.path, origin);
  for (const [name, value] of Object.entries(outgoing.query ?? {})) url.searchParams.set(name, value);
  const headers = { ...outgoing.headers };
  let body: string | undefined;
  if (outgoing.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(outgoing.form).toString();
  } else if (outgoing.json) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(outgoing.json);
  }
  return new Promise((resolve, reject) => {
    const sent = httpRequest(url, { method: outgoing.method, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          text: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    sent.on('error', reject);
    sent.end(body);
  });
}

const GH_HEADERS = {
  'user-agent': 'provider-requests-test',
  accept: 'application/vnd.github+json',
  'x-github-api-version': '2022-11-28',
};
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The complete request of each endpoint, as the provider documents it, with a fresh token or code. */
const COMPLETE: Record<string, () => Promise<Outgoing>> = {
  async 'github/check_token'() {
    const { access_token } = await client.mintGithubToken({ client_id: GH_ID });
    const basic = `Basic ${Buffer.from(`${GH_ID}:${GH_SECRET}`).toString('base64')}`;
    return {
      method: 'POST',
      path: `/github/applications/${GH_ID}/token`,
      headers: { ...GH_HEADERS, authorization: basic },
      json: { access_token },
    };
  },
  async 'github/user'() {
    const { access_token } = await client.mintGithubToken({ client_id: GH_ID });
    return { method: 'GET', path: '/github/user', headers: { ...GH_HEADERS, ...bearer(access_token) } };
  },
  async 'github/user_emails'() {
    const { access_token } = await client.mintGithubToken({ client_id: GH_ID });
    return { method: 'GET', path: '/github/user/emails', headers: { ...GH_HEADERS, ...bearer(access_token) } };
  },
  async 'facebook/debug_token'() {
    const { access_token } = await client.mintFacebookToken({ app_id: FB_APP });
    return {
      method: 'GET',
      path: '/facebook/v23.0/debug_token',
      headers: {},
      query: { input_token: access_token, access_token: `${FB_APP}|${FB_SECRET}` },
    };
  },
  async 'facebook/me'() {
    const { access_token } = await client.mintFacebookToken({ app_id: FB_APP });
    const { createHmac } = await import('node:crypto');
    const proof = createHmac('sha256', FB_SECRET).update(access_token).digest('hex');
    return {
      method: 'GET',
      path: '/facebook/v23.0/me',
      headers: {},
      query: { fields: 'id,name', access_token, appsecret_proof: proof },
    };
  },
  async 'facebook/limited_jwks'() {
    return { method: 'GET', path: '/facebook-limited/.well-known/oauth/openid/jwks/', headers: {} };
  },
  async 'twitter/verify_credentials'() {
    const minted = await client.mintTwitterToken({ consumer_key: TW_KEY });
    const path = '/twitter/1.1/account/verify_credentials.json?include_email=true&skip_status=true';
    const credentials = {
      consumerKey: TW_KEY,
      consumerSecret: TW_SECRET,
      token: minted.access_token,
      tokenSecret: minted.access_token_secret,
    };
    return {
      method: 'GET',
      path,
      headers: { authorization: authorizationHeader('GET', `${origin}${path}`, credentials) },
    };
  },
  async 'twitter/users_me'() {
    const { access_token } = await client.mintTwitterOAuth2Token();
    return { method: 'GET', path: '/twitter/2/users/me', headers: bearer(access_token) };
  },
  async 'google/jwks'() {
    return { method: 'GET', path: '/google/oauth2/v3/certs', headers: {} };
  },
  async 'google/tokeninfo'() {
    const { access_token } = await client.mintGoogleAccessToken({ client_id: GOOGLE_ID });
    return { method: 'GET', path: '/google/tokeninfo', headers: {}, query: { access_token } };
  },
  async 'apple/jwks'() {
    return { method: 'GET', path: '/apple/auth/keys', headers: {} };
  },
  async 'apple/token'() {
    const { code } = await client.mintAppleCode({ client_id: APPLE_ID });
    return {
      method: 'POST',
      path: '/apple/auth/token',
      headers: {},
      form: { client_id: APPLE_ID, client_secret: await appleClientSecret(), code, grant_type: 'authorization_code' },
    };
  },
  async 'apple/revoke'() {
    const redeemed = JSON.parse((await send(await COMPLETE['apple/token']!())).text) as { refresh_token: string };
    return {
      method: 'POST',
      path: '/apple/auth/revoke',
      headers: {},
      form: {
        client_id: APPLE_ID,
        client_secret: await appleClientSecret(),
        token: redeemed.refresh_token,
        token_type_hint: 'refresh_token',
      },
    };
  },
  async 'apple/migration_token'() {
    return {
      method: 'POST',
      path: '/apple/auth/token',
      headers: {},
      form: {
        grant_type: 'client_credentials',
        scope: 'user.migration',
        client_id: APPLE_ID,
        client_secret: await appleClientSecret(),
      },
    };
  },
  async 'apple/usermigrationinfo'() {
    const { access_token } = JSON.parse((await send(await COMPLETE['apple/migration_token']!())).text) as {
      access_token: string;
    };
    const { sub } = await client.mintIdToken('apple', { aud: APPLE_ID });
    return {
      method: 'POST',
      path: '/apple/auth/usermigrationinfo',
      headers: bearer(access_token),
      form: { sub, target: 'RECIPIENT1', client_id: APPLE_ID, client_secret: await appleClientSecret() },
    };
  },
  async 'line/verify_access_token'() {
    const { access_token } = await client.mintLineToken({ channel_id: LINE_CHANNEL });
    return { method: 'GET', path: '/line/oauth2/v2.1/verify', headers: {}, query: { access_token } };
  },
  async 'line/profile'() {
    const { access_token } = await client.mintLineToken({ channel_id: LINE_CHANNEL });
    return { method: 'GET', path: '/line/v2/profile', headers: bearer(access_token) };
  },
  async 'line/verify_id_token'() {
    const { id_token } = await client.mintLineToken({ channel_id: LINE_CHANNEL });
    return {
      method: 'POST',
      path: '/line/oauth2/v2.1/verify',
      headers: {},
      form: { id_token, client_id: LINE_CHANNEL },
    };
  },
  async 'oidc/discovery'() {
    return { method: 'GET', path: '/oidc/corp/.well-known/openid-configuration', headers: {} };
  },
  async 'oidc/jwks'() {
    return { method: 'GET', path: '/oidc/corp/jwks', headers: {} };
  },
};

/** The complete request without what the requirement asks for. */
function without(outgoing: Outgoing, requirement: Requirement): Outgoing {
  const copy: Outgoing = {
    ...outgoing,
    headers: { ...outgoing.headers },
    query: { ...outgoing.query },
    ...(outgoing.form ? { form: { ...outgoing.form } } : {}),
    ...(outgoing.json ? { json: { ...outgoing.json } } : {}),
  };
  const name = requirement.name!;
  switch (requirement.in) {
    case 'header':
      delete copy.headers[name];
      break;
    case 'query':
      delete copy.query![name];
      break;
    case 'form':
      delete copy.form![name];
      break;
    case 'json':
      delete copy.json![name];
      break;
    case 'content_type':
      // The same fields in another encoding.
      copy.json = copy.form;
      delete copy.form;
      break;
  }
  return copy;
}

function expectRefusal(answer: Awaited<ReturnType<typeof send>>, refusal: Refusal, shown: string): void {
  expect(answer.status, `${shown}: ${answer.text}`).toBe(refusal.status);
  for (const [name, value] of Object.entries(refusal.headers ?? {})) {
    expect(String(answer.headers[name.toLowerCase()] ?? '').split(';')[0], `${shown}: header ${name}`).toBe(
      value.split(';')[0],
    );
  }
  if (typeof refusal.body === 'string') {
    expect(answer.text.trim(), shown).toBe(refusal.body.trim());
    return;
  }
  expect(
    shapeDifferences(refusal.body, JSON.parse(answer.text), refusal.match ?? [], refusal.optional ?? []),
    shown,
  ).toEqual([]);
}

describe('the emulator refuses a request missing a recorded requirement, as the provider does', () => {
  afterEach(async () => {
    await client.clearFaults();
  });

  it.for(allRequests.map(({ provider, request }) => [key(provider, request.endpoint), provider, request] as const))(
    '%s: the complete request is accepted',
    async ([name]) => {
      const build = COMPLETE[name];
      expect(build, `a complete ${name} request is known to this test`).toBeDefined();
      const answer = await send(await build!());
      expect(answer.status, answer.text).toBe(200);
    },
  );

  const refusable = allRequests.flatMap(({ provider, request }) =>
    request.requirements
      .filter((requirement) => requirement.refusal && requirement.rule !== 'same_as_authorization_request')
      .map(
        (requirement) =>
          [
            `${key(provider, request.endpoint)} without ${requirement.id}`,
            provider,
            request.endpoint,
            requirement,
          ] as const,
      ),
  );
  it.for(refusable)('%s', async ([shown, provider, endpoint, requirement]) => {
    if (requirement.emulator_fault) await client.setFault(provider, requirement.emulator_fault);
    const complete = await COMPLETE[key(provider, endpoint)]!();
    // A conditional requirement in force: the complete request still passes.
    if (requirement.emulator_fault) expect((await send(complete)).status).toBe(200);
    const incomplete = without(
      requirement.emulator_fault ? await COMPLETE[key(provider, endpoint)]!() : complete,
      requirement,
    );
    expectRefusal(await send(incomplete), requirement.refusal!, shown);
  });

  it('Apple: a code minted with a redirect_uri is redeemed only with that redirect_uri, one minted without only without', async () => {
    const requirement = allRequests
      .find((entry) => key(entry.provider, entry.request.endpoint) === 'apple/token')!
      .request.requirements.find((r) => r.id === 'redirect_uri')!;
    const redeem = async (minted: string | undefined, sent: string | undefined) => {
      const { code } = await client.mintAppleCode({ client_id: APPLE_ID, ...(minted ? { redirect_uri: minted } : {}) });
      const form = {
        client_id: APPLE_ID,
        client_secret: await appleClientSecret(),
        code,
        grant_type: 'authorization_code',
        ...(sent ? { redirect_uri: sent } : {}),
      };
      return send({ method: 'POST', path: '/apple/auth/token', headers: {}, form });
    };
    const web = 'https://app.example.com/auth/apple/callback';
    expect((await redeem(web, web)).status).toBe(200);
    expect((await redeem(undefined, undefined)).status).toBe(200);
    expectRefusal(await redeem(web, undefined), requirement.refusal!, 'minted with, redeemed without');
    expectRefusal(await redeem(undefined, web), requirement.refusal!, 'minted without, redeemed with');
    expectRefusal(await redeem(web, `${web}/other`), requirement.refusal!, 'minted with, redeemed with another');
  });

  it('leaves the control API alone: no User-Agent, no form needed', async () => {
    const answer = await send({ method: 'GET', path: '/_emulator/stats', headers: {} });
    expect(answer.status).toBe(200);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// (c) Our provider modules' real requests meet every recorded requirement

const settings = () =>
  new Settings({
    SOCIAL_AUTH_FACEBOOK_KEY: FB_APP,
    SOCIAL_AUTH_FACEBOOK_SECRET: FB_SECRET,
    SOCIAL_AUTH_FACEBOOK_API_URL: `${origin}/facebook`,
    SOCIAL_AUTH_FACEBOOK_LIMITED_JWKS_URL: `${origin}/facebook-limited/.well-known/oauth/openid/jwks/`,
    SOCIAL_AUTH_TWITTER_KEY: TW_KEY,
    SOCIAL_AUTH_TWITTER_SECRET: TW_SECRET,
    SOCIAL_AUTH_TWITTER_API_URL: `${origin}/twitter`,
    SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS: 'true',
    SOCIAL_AUTH_GOOGLE_KEY: GOOGLE_ID,
    SOCIAL_AUTH_GOOGLE_JWKS_URL: `${origin}/google/oauth2/v3/certs`,
    SOCIAL_AUTH_GOOGLE_TOKENINFO_URL: `${origin}/google/tokeninfo`,
    SOCIAL_AUTH_APPLE_KEY: `${APPLE_ID},${APPLE_WEB_ID}`,
    SOCIAL_AUTH_APPLE_REDIRECT_URIS: `${APPLE_WEB_ID}=${APPLE_REDIRECT_URI}`,
    SOCIAL_AUTH_APPLE_JWKS_URL: `${origin}/apple/auth/keys`,
    SOCIAL_AUTH_APPLE_API_URL: `${origin}/apple`,
    SOCIAL_AUTH_APPLE_TEAM_ID: APPLE_TEAM,
    SOCIAL_AUTH_APPLE_KEY_ID: APPLE_KID,
    SOCIAL_AUTH_APPLE_PRIVATE_KEY: applePem,
    SOCIAL_AUTH_LINE_KEY: LINE_CHANNEL,
    SOCIAL_AUTH_LINE_API_URL: `${origin}/line`,
    SOCIAL_AUTH_GITHUB_KEY: GH_ID,
    SOCIAL_AUTH_GITHUB_SECRET: GH_SECRET,
    SOCIAL_AUTH_GITHUB_API_URL: `${origin}/github`,
    SOCIAL_AUTH_OIDC_CORP_ISSUER: client.oidcIssuerUrl('corp'),
    SOCIAL_AUTH_OIDC_CORP_KEY: OIDC_CLIENT,
  });

/** One provider module of ours, pointed at the emulator: `run` makes its calls, then its HTTP pool is closed. */
async function withProvider<T>(
  name: string,
  run: (provider: ReturnType<ReturnType<typeof loadProviderConfigs>[number]['create']>) => Promise<T>,
): Promise<T> {
  const enabled = loadProviderConfigs(settings()).find((candidate) => candidate.name === name);
  if (!enabled) throw new Error(`${name} is not enabled`);
  const created = enabled.create({ timeoutMs: 5000 });
  try {
    return await run(created);
  } finally {
    await created.http.close();
  }
}

const verify = (name: string, input: TokenInput) =>
  withProvider(name, async ({ provider }) => withProfile(await provider.verify(input)));

/** The recorded endpoint a captured request is, by provider. */
function endpointOf(request: Captured): string | undefined {
  const path = request.url.pathname;
  const form = (request.body ?? {}) as Record<string, unknown>;
  const table: Array<[string, RegExp, string]> = [
    ['GET', /^\/facebook\/v\d+\.\d+\/debug_token$/, 'facebook/debug_token'],
    ['GET', /^\/facebook\/v\d+\.\d+\/me$/, 'facebook/me'],
    ['GET', /^\/facebook-limited\/\.well-known\/oauth\/openid\/jwks\/?$/, 'facebook/limited_jwks'],
    ['GET', /^\/twitter\/1\.1\/account\/verify_credentials\.json$/, 'twitter/verify_credentials'],
    ['GET', /^\/twitter\/2\/users\/me$/, 'twitter/users_me'],
    ['GET', /^\/google\/oauth2\/v3\/certs$/, 'google/jwks'],
    ['GET', /^\/google\/tokeninfo$/, 'google/tokeninfo'],
    ['GET', /^\/apple\/auth\/keys$/, 'apple/jwks'],
    [
      'POST',
      /^\/apple\/auth\/token$/,
      form.grant_type === 'client_credentials' ? 'apple/migration_token' : 'apple/token',
    ],
    ['POST', /^\/apple\/auth\/revoke$/, 'apple/revoke'],
    ['POST', /^\/apple\/auth\/usermigrationinfo$/, 'apple/usermigrationinfo'],
    ['GET', /^\/line\/oauth2\/v2\.1\/verify$/, 'line/verify_access_token'],
    ['POST', /^\/line\/oauth2\/v2\.1\/verify$/, 'line/verify_id_token'],
    ['GET', /^\/line\/v2\/profile$/, 'line/profile'],
    ['GET', /^\/github\/user$/, 'github/user'],
    ['GET', /^\/github\/user\/emails$/, 'github/user_emails'],
    ['POST', /^\/github\/applications\/[^/]+\/token$/, 'github/check_token'],
    ['GET', /^\/oidc\/[^/]+\/\.well-known\/openid-configuration$/, 'oidc/discovery'],
    ['GET', /^\/oidc\/[^/]+\/jwks$/, 'oidc/jwks'],
  ];
  return table.find(([method, pattern]) => method === request.method && pattern.test(path))?.[2];
}

const mediaType = (value: unknown) =>
  String(value ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();

/** Whether a request we sent meets the requirement (conditional and recommended ones included). */
function meets(request: Captured, requirement: Requirement): boolean {
  const name = requirement.name ?? '';
  const contentType = mediaType(request.headers['content-type']);
  const fields = (request.body ?? {}) as Record<string, unknown>;
  const value = (() => {
    switch (requirement.in) {
      case 'header':
        return request.headers[name] === undefined ? undefined : String(request.headers[name]);
      case 'query':
        return request.url.searchParams.get(name) ?? undefined;
      case 'form':
        return contentType === 'application/x-www-form-urlencoded' && typeof fields[name] === 'string'
          ? (fields[name] as string)
          : undefined;
      case 'json':
        return contentType === 'application/json' && fields[name] !== undefined ? String(fields[name]) : undefined;
      case 'content_type':
        return contentType;
    }
  })();
  switch (requirement.rule) {
    case 'present':
      return value !== undefined && value.trim() !== '';
    case 'prefix':
      return value !== undefined && value.toLowerCase().startsWith(requirement.value!.toLowerCase());
    case 'equals':
      return value === requirement.value;
    case 'same_as_authorization_request':
      // The redirect_uri the code's authorization used, or none for a native app's code.
      return value === mintedRedirects.get(String(fields.code));
  }
}

/** Every captured request of these endpoints meets each of their recorded requirements; each endpoint was called. */
function expectRequirementsMet(endpoints: string[]): void {
  const byEndpoint = new Map(allRequests.map(({ provider, request }) => [key(provider, request.endpoint), request]));
  const seen = captured.map((request) => ({ request, endpoint: endpointOf(request) }));
  expect(
    seen.filter((entry) => !entry.endpoint).map((entry) => `${entry.request.method} ${entry.request.url.pathname}`),
    'requests to no recorded endpoint',
  ).toEqual([]);
  for (const endpoint of endpoints) {
    const recorded = byEndpoint.get(endpoint);
    expect(recorded, `${endpoint} is recorded in test/fixtures/provider-requests/`).toBeDefined();
    const requests = seen.filter((entry) => entry.endpoint === endpoint);
    expect(requests.length, `our code called ${endpoint}`).toBeGreaterThan(0);
    const missed = requests.flatMap(({ request }) =>
      recorded!.requirements
        .filter((requirement) => !meets(request, requirement))
        .map((requirement) => `${endpoint}: ${requirement.id} (${requirement.level})`),
    );
    expect([...new Set(missed)], 'requirements our request misses').toEqual([]);
  }
}

describe('our provider modules meet every recorded requirement (against the strict emulator)', () => {
  beforeEach(() => {
    captured.length = 0;
  });
  afterEach(async () => {
    captured.length = 0;
    await client.clearFaults();
  });

  it('github: the token check, /user and /user/emails (User-Agent, Basic, Bearer, Accept, API version)', async () => {
    const { access_token, user_id } = await client.mintGithubToken({ client_id: GH_ID });
    const identity = await verify('github', { access_token });
    expect(identity.uid).toBe(String(user_id));
    expectRequirementsMet(['github/check_token', 'github/user', 'github/user_emails']);
  });

  it('facebook: debug_token and /me (with the app requiring appsecret_proof), and Limited Login keys', async () => {
    await client.setFault('facebook', { appsecret_proof: 'require' });
    const { access_token, user_id } = await client.mintFacebookToken({ app_id: FB_APP });
    expect((await verify('facebook', { access_token })).uid).toBe(user_id);
    const limited = await client.mintIdToken('facebook', { aud: FB_APP, nonce: NONCE });
    expect((await verify('facebook', { id_token: limited.id_token, nonce: NONCE })).uid).toBe(limited.sub);
    expectRequirementsMet(['facebook/debug_token', 'facebook/me', 'facebook/limited_jwks']);
  });

  it('twitter: verify_credentials signed with OAuth 1.0a, /2/users/me with a Bearer token', async () => {
    const minted = await client.mintTwitterToken({ consumer_key: TW_KEY });
    expect(
      (await verify('twitter', { access_token: minted.access_token, access_token_secret: minted.access_token_secret }))
        .uid,
    ).toBe(minted.user_id);
    const oauth2 = await client.mintTwitterOAuth2Token();
    expect((await verify('twitter', { access_token: oauth2.access_token })).uid).toBe(oauth2.user_id);
    expectRequirementsMet(['twitter/verify_credentials', 'twitter/users_me']);
  });

  it('google: its keys, and tokeninfo for an access token', async () => {
    const idToken = await client.mintIdToken('google', { aud: GOOGLE_ID, nonce: NONCE });
    expect((await verify('google', { id_token: idToken.id_token, nonce: NONCE })).uid).toBe(idToken.sub);
    const { access_token, sub } = await client.mintGoogleAccessToken({ client_id: GOOGLE_ID });
    expect((await verify('google', { access_token })).uid).toBe(sub);
    expectRequirementsMet(['google/jwks', 'google/tokeninfo']);
  });

  it('apple: the code exchange and the revocation as form posts with a client secret, and the team-transfer calls', async () => {
    const { code, sub, id_token } = await client.mintAppleCode({ client_id: APPLE_ID, nonce: NONCE });
    mintedRedirects.set(code, undefined);
    const refreshToken = await withProvider('apple', async ({ provider }) => {
      const identity = await provider.verify({ code, id_token, nonce: NONCE });
      expect(identity.uid).toBe(sub);
      // Apple redeemed the code (a refused one beside a valid identity token would leave only a notice).
      expect((identity as { operatorNotice?: unknown }).operatorNotice).toBeUndefined();
      const tokens = identity.tokens as { refresh_token: string; client_id: string };
      await provider.revoke!(tokens);
      return tokens.refresh_token;
    });
    expect((await client.appleRevocations()).revoked.map((revoked) => revoked.token)).toContain(refreshToken);
    // src/core/apple-transfer.ts's calls, through AppleApi (as the CLI makes them).
    const enabled = loadProviderConfigs(settings()).find((candidate) => candidate.name === 'apple')!;
    const { http } = enabled.create({ timeoutMs: 5000 });
    try {
      const api = new AppleApi(http, `${origin}/apple`, {
        teamId: APPLE_TEAM,
        keyId: APPLE_KID,
        privateKeyPem: applePem,
      });
      const token = await api.migrationToken(APPLE_ID);
      const answer = await api.migrationInfo(APPLE_ID, token, { sub, target: 'RECIPIENT1' });
      expect('body' in answer && typeof answer.body.transfer_sub).toBe('string');
    } finally {
      await http.close();
    }
    expectRequirementsMet([
      'apple/jwks',
      'apple/token',
      'apple/revoke',
      'apple/migration_token',
      'apple/usermigrationinfo',
    ]);
  });

  it('apple: a web-flow code (Services ID) is redeemed with the redirect_uri its authorization used', async () => {
    const web = await client.mintAppleCode({ client_id: APPLE_WEB_ID, nonce: NONCE, redirect_uri: APPLE_REDIRECT_URI });
    mintedRedirects.set(web.code, APPLE_REDIRECT_URI);
    const identity = await verify('apple', { code: web.code, client_id: APPLE_WEB_ID, nonce: NONCE } as TokenInput);
    expect(identity.uid).toBe(web.sub);
    expect((identity.tokens as { refresh_token?: string } | undefined)?.refresh_token).toBeDefined();
    expectRequirementsMet(['apple/token']);
  });

  it('line: the access-token check and profile, and the ID-token check as a form post', async () => {
    const minted = await client.mintLineToken({ channel_id: LINE_CHANNEL, nonce: NONCE });
    expect((await verify('line', { access_token: minted.access_token })).uid).toBe(minted.user_id);
    expect((await verify('line', { id_token: minted.id_token, nonce: NONCE })).uid).toBe(minted.user_id);
    expectRequirementsMet(['line/verify_access_token', 'line/profile', 'line/verify_id_token']);
  });

  it('oidc: discovery and keys', async () => {
    const minted = await client.mintIdToken('oidc:corp', { aud: OIDC_CLIENT, nonce: NONCE });
    expect((await verify('oidc:corp', { id_token: minted.id_token, nonce: NONCE })).uid).toBe(minted.sub);
    expectRequirementsMet(['oidc/discovery', 'oidc/jwks']);
  });
});
