import { createServer, type IncomingMessage, type Server } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK, importPKCS8, SignJWT, type JWK } from 'jose';
import { ApiError } from '../../src/lib/errors.js';
import { loadProviderConfigs } from '../../src/providers/index.js';
import { withProfile } from '../../src/providers/profile.js';
import { Settings } from '../../src/lib/settings.js';
import type { ProviderFixture } from './fixtures.js';

/**
 * Replays fixtures through social-link's provider modules. A plain node:http server stands in for the
 * provider and answers exactly the recorded bodies: the fixture's own answer for its endpoint, the
 * provider's `<endpoint>.success` fixture for every other endpoint. ID tokens are the recorded claims,
 * re-signed with a test key (published in the recorded JWKS under the recorded kid) and moved to now.
 */

type Answer = NonNullable<ProviderFixture['response']>;

/** The endpoint a request to the stand-in is for, by provider (paths as the provider modules call them). */
function endpointOf(
  provider: string,
  method: string,
  path: string,
  oidcJwksPath: string | undefined,
): string | undefined {
  const rest = path.slice(`/${provider}`.length);
  switch (provider) {
    case 'facebook':
      if (/^(\/v\d+\.\d+)?\/me$/.test(rest)) return 'me';
      if (/^(\/v\d+\.\d+)?\/debug_token$/.test(rest)) return 'debug_token';
      return rest === '/limited_jwks' ? 'limited_jwks' : undefined;
    case 'twitter':
      if (rest === '/1.1/account/verify_credentials.json') return 'verify_credentials';
      return rest === '/2/users/me' ? 'users_me' : undefined;
    case 'google':
      return rest === '/certs' ? 'jwks' : rest === '/tokeninfo' ? 'tokeninfo' : undefined;
    case 'apple':
      return { '/auth/keys': 'jwks', '/auth/token': 'token', '/auth/revoke': 'revoke' }[rest];
    case 'line':
      if (rest === '/oauth2/v2.1/verify') return method === 'POST' ? 'verify_id_token' : 'verify_access_token';
      return rest === '/v2/profile' ? 'profile' : undefined;
    case 'github':
      if (rest === '/user') return 'user';
      if (rest === '/user/emails') return 'user_emails';
      return /^\/applications\/[^/]+\/token$/.test(rest) ? 'check_token' : undefined;
    case 'oidc':
      if (rest.endsWith('/.well-known/openid-configuration')) return 'discovery';
      return path === oidcJwksPath ? 'jwks' : undefined;
  }
  return undefined;
}

/** Each provider's settings that point it at the stand-in. */
function urlSettings(provider: string, base: string): Record<string, string> {
  switch (provider) {
    case 'facebook':
      return {
        SOCIAL_AUTH_FACEBOOK_API_URL: `${base}/facebook`,
        SOCIAL_AUTH_FACEBOOK_LIMITED_JWKS_URL: `${base}/facebook/limited_jwks`,
      };
    case 'twitter':
      return { SOCIAL_AUTH_TWITTER_API_URL: `${base}/twitter` };
    case 'google':
      return {
        SOCIAL_AUTH_GOOGLE_JWKS_URL: `${base}/google/certs`,
        SOCIAL_AUTH_GOOGLE_TOKENINFO_URL: `${base}/google/tokeninfo`,
      };
    case 'apple':
      return { SOCIAL_AUTH_APPLE_JWKS_URL: `${base}/apple/auth/keys`, SOCIAL_AUTH_APPLE_API_URL: `${base}/apple` };
    case 'line':
      return { SOCIAL_AUTH_LINE_API_URL: `${base}/line` };
    case 'github':
      return { SOCIAL_AUTH_GITHUB_API_URL: `${base}/github` };
  }
  return {};
}

const JWKS_ENDPOINT: Record<string, string> = { facebook: 'limited_jwks', google: 'jwks', apple: 'jwks', oidc: 'jwks' };

/** A test RSA key to re-sign recorded ID tokens, and an ES256 key for Apple's client secret. */
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const applePem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const TIME_CLAIMS = ['iat', 'exp', 'nbf', 'auth_time'];

/** The recorded claims moved to now (their distances kept), signed with the test key under the recorded kid. */
async function resign(token: NonNullable<ProviderFixture['token']>): Promise<string> {
  const claims = { ...token.claims };
  const shift = Math.floor(Date.now() / 1000) - Number(claims.iat);
  for (const name of TIME_CLAIMS) if (typeof claims[name] === 'number') claims[name] = (claims[name] as number) + shift;
  const header = { ...token.header, alg: 'RS256', kid: String(token.header.kid ?? 'replay-key') };
  return new SignJWT(claims)
    .setProtectedHeader(header)
    .sign(await importPKCS8(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256'));
}

/**
 * The recorded key set with the test key in place of the recorded key of that kid (or beside the others),
 * published as the recorded keys are: their other members (use, x5t, Microsoft's per-key issuer) kept.
 */
async function withTestKey(jwks: Answer, kid: string): Promise<Answer> {
  const body = jwks.body as { keys: JWK[] };
  const recorded = body.keys.find((key) => key.kid === kid) ?? body.keys[0] ?? {};
  const { n: _n, e: _e, x5c: _x5c, ...members } = recorded;
  const testKey: JWK = { ...members, ...(await exportJWK(rsa.publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { ...jwks, body: { ...body, keys: [...body.keys.filter((key) => key.kid !== kid), testKey] } };
}

export interface ReplayOutcome {
  status: number;
  code?: string;
  uid?: string;
  detail?: string;
  /** The endpoints the provider module called, in order. */
  calls: string[];
}

/**
 * Replays one fixture: configures the provider as the fixture says, points it at a stand-in answering the
 * recorded bodies, sends the app's input, and reports what social-link would answer.
 */
export async function replay(fixture: ProviderFixture, all: readonly ProviderFixture[]): Promise<ReplayOutcome> {
  const ofProvider = all.filter((other) => other.provider === fixture.provider);
  // Other endpoints answer their recorded success, so that the endpoint under test is reached; a generic
  // issuer's documents come from the same issuer (Microsoft's discovery and keys with Microsoft's tokens).
  const companion = (endpoint: string) =>
    (fixture.provider === 'oidc'
      ? ofProvider.find((other) => other.endpoint === endpoint && other.situation === fixture.situation)
      : undefined) ?? ofProvider.find((other) => other.file === `${fixture.provider}/${endpoint}.success.json`);
  const answers = new Map<string, Answer>();
  const calls: string[] = [];
  let oidcJwksPath: string | undefined;
  const server = await listen(async (request) => {
    const path = new URL(request.url ?? '/', 'http://stand-in').pathname;
    const endpoint = endpointOf(fixture.provider, request.method ?? 'GET', path, oidcJwksPath);
    calls.push(endpoint ?? `unknown ${request.method} ${path}`);
    return endpoint ? answers.get(endpoint) : undefined;
  });
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  // A generic issuer's URLs (its identifier, discovery, keys: https://host/…) all move to the stand-in's /oidc/host/….
  const moved = <T>(value: T): T =>
    fixture.provider === 'oidc'
      ? (JSON.parse(JSON.stringify(value).replace(/https:\/\/([a-z0-9.-]+)/gi, `${base}/oidc/$1`)) as T)
      : value;

  const token = moved(fixture.token ?? companion('id_token')?.token);
  const idToken = token && (await resign(token));
  for (const endpoint of new Set(ofProvider.map((other) => other.endpoint))) {
    const recorded = companion(endpoint)?.response;
    if (recorded) answers.set(endpoint, moved(recorded));
  }
  if (fixture.response) answers.set(fixture.endpoint, moved(fixture.response));
  const jwksEndpoint = JWKS_ENDPOINT[fixture.provider];
  if (jwksEndpoint && token && answers.has(jwksEndpoint)) {
    answers.set(jwksEndpoint, await withTestKey(answers.get(jwksEndpoint)!, String(token.header.kid ?? 'replay-key')));
  }
  // Apple's code exchange answers the identity token the app got with the code.
  const exchange = answers.get('token');
  if (fixture.provider === 'apple' && exchange?.status === 200 && idToken)
    answers.set('token', { ...exchange, body: { ...(exchange.body as object), id_token: idToken } });
  const jwksUri = (answers.get('discovery')?.body as { jwks_uri?: string } | undefined)?.jwks_uri;
  oidcJwksPath = jwksUri && new URL(jwksUri).pathname;

  const config = moved(fixture.config);
  const settings = new Settings({
    ...config,
    ...(config.SOCIAL_AUTH_APPLE_PRIVATE_KEY ? { SOCIAL_AUTH_APPLE_PRIVATE_KEY: applePem } : {}),
    ...urlSettings(fixture.provider, base),
  });
  const enabled = loadProviderConfigs(settings).find(
    (candidate) => candidate.name === fixture.provider || candidate.name.startsWith(`${fixture.provider}:`),
  );
  if (!enabled) throw new Error(`${fixture.file}: its config enables no ${fixture.provider} provider`);
  const { provider, http } = enabled.create({ timeoutMs: 5000 });
  const input = Object.fromEntries(
    Object.entries(fixture.input).map(([field, value]) => [field, field === 'id_token' && idToken ? idToken : value]),
  );
  try {
    if (fixture.endpoint === 'revoke') {
      // Revocation happens after an unlink, whose answer (204) never waits on it: a refusal is only logged,
      // so it must be a provider failure (5xx), and a recorded success must not be one.
      const refusal = await provider.revoke!({
        refresh_token: 'r-recorded',
        client_id: config.SOCIAL_AUTH_APPLE_KEY!.split(',')[0]!,
      }).then(
        () => undefined,
        (error: unknown) => error,
      );
      const expected =
        fixture.response!.status === 200
          ? refusal === undefined
          : refusal instanceof ApiError && refusal.statusCode >= 500;
      return {
        status: expected ? 204 : 0,
        detail: String((refusal as Error | undefined)?.message ?? 'revoked'),
        calls,
      };
    }
    // As a sign-in of a linked account does it: the token proved first, the profile read after (if at all).
    const identity = await withProfile(await provider.verify(input, { profile: false }));
    return { status: 200, uid: identity.uid, calls };
  } catch (error) {
    if (error instanceof ApiError)
      return { status: error.statusCode, code: error.code, detail: String(error.extra.detail ?? ''), calls };
    throw error;
  } finally {
    await http.close();
    await new Promise((resolve) => server.close(resolve));
  }
}

/** A stand-in server: `answer` gives the recorded answer for a request, or undefined for a 404 that names the miss. */
function listen(answer: (request: IncomingMessage) => Promise<Answer | undefined>): Promise<Server> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      void answer(request).then((recorded) => {
        if (!recorded) {
          response.writeHead(599, { 'content-type': 'text/plain' }).end('no recorded answer for this request');
          return;
        }
        const headers = { 'content-type': 'application/json', ...recorded.headers };
        const text = recorded.body === undefined ? '' : JSON.stringify(recorded.body);
        response.writeHead(recorded.status, headers).end(text);
      });
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
