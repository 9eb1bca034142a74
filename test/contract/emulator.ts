import { createHash, createHmac, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, importPKCS8, SignJWT, type JWK } from 'jose';
import { EmulatorClient, startEmulator, type EmulatorOptions, type RunningEmulator } from '@social-link/emulator';
import { authorizationHeader } from '../../src/providers/oauth1.js';
import { valueAt, type ProviderFixture } from './fixtures.js';

/**
 * Drives the provider emulator into each fixture's situation and asks it what our provider modules ask
 * the real provider, so that test/providers/fixtures.test.ts can compare its answer with the recorded one.
 * One emulator serves every fixture, registered with the apps the fixtures name.
 */

export type Emulated =
  | { kind: 'http'; status: number; headers: Record<string, string>; body: unknown }
  | { kind: 'token'; header: Record<string, unknown>; claims: Record<string, unknown> }
  | { kind: 'skip'; reason: string };

const APPLE_KEY_ID = 'CONTRACT01';
const APPLE_TEAM_ID = 'CONTRACTTM';
const applePrivateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const FOREIGN = 'someone-elses-app';

/** The apps every fixture's config names, registered in one emulator. */
export async function startContractEmulator(
  fixtures: readonly ProviderFixture[],
): Promise<{ running: RunningEmulator; client: EmulatorClient }> {
  const config = (name: string) => [
    ...new Set(fixtures.map((fixture) => fixture.config[name]).filter((value): value is string => Boolean(value))),
  ];
  const split = (values: string[]) => [...new Set(values.flatMap((value) => value.split(',')))];
  const google = fixtures.find((fixture) => fixture.file === 'google/id_token.native_backend_token.json');
  const options: EmulatorOptions = {
    facebook: { apps: Object.fromEntries(config('SOCIAL_AUTH_FACEBOOK_KEY').map((id) => [id, 'any'])) },
    twitter: {
      consumers: Object.fromEntries(config('SOCIAL_AUTH_TWITTER_KEY').map((key) => [key, 'test-consumer-secret'])),
    },
    google: {
      clientIds: split([...config('SOCIAL_AUTH_GOOGLE_KEY'), ...config('SOCIAL_AUTH_OIDC_GOOGLE_KEY')]),
      androidClientId: google?.token?.claims.azp as string | undefined,
    },
    apple: {
      clientIds: split(config('SOCIAL_AUTH_APPLE_KEY')),
      teamId: APPLE_TEAM_ID,
      keys: { [APPLE_KEY_ID]: createPublicKey(applePrivateKey).export({ format: 'jwk' }) as JWK },
    },
    line: { channels: Object.fromEntries(config('SOCIAL_AUTH_LINE_KEY').map((id) => [id, 'a'.repeat(32)])) },
    github: { apps: Object.fromEntries(config('SOCIAL_AUTH_GITHUB_KEY').map((id) => [id, 'any'])) },
    microsoft: { clientIds: split(config('SOCIAL_AUTH_OIDC_MICROSOFT_KEY')) },
  };
  const running = await startEmulator(options);
  return { running, client: new EmulatorClient(running.url) };
}

/** What the emulator answers in the fixture's situation, asked as our provider module asks. */
export async function emulate(fixture: ProviderFixture, url: string, client: EmulatorClient): Promise<Emulated> {
  const ask = async (path: string, init: RequestInit = {}): Promise<Emulated> => {
    const response = await fetch(`${url}${path}`, init);
    const text = await response.text();
    let body: unknown = text;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      // not JSON: compared as text
    }
    return { kind: 'http', status: response.status, headers: Object.fromEntries(response.headers), body };
  };
  const token = async (idToken: string): Promise<Emulated> => ({
    kind: 'token',
    header: decodeProtectedHeader(idToken) as Record<string, unknown>,
    claims: decodeJwt(idToken),
  });
  const recipe = RECIPES[fixture.provider];
  if (!recipe) return { kind: 'skip', reason: `no recipe for ${fixture.provider}` };
  return recipe({ fixture, ask, token, client, url, situation: fixture.situation, variant: variantOf(fixture) });
}

/** The part of the file name after <endpoint>.<situation>, e.g. "code17". */
function variantOf(fixture: ProviderFixture): string | undefined {
  const name = fixture.file.split('/')[1]!.replace(/\.json$/, '');
  return name.slice(`${fixture.endpoint}.${fixture.situation}`.length + 1) || undefined;
}

interface Context {
  fixture: ProviderFixture;
  /** The emulator's origin. */
  url: string;
  situation: string;
  variant: string | undefined;
  client: EmulatorClient;
  ask(path: string, init?: RequestInit): Promise<Emulated>;
  token(idToken: string): Promise<Emulated>;
}

type Recipe = (context: Context) => Promise<Emulated>;

const form = (fields: Record<string, string>): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

const bearer = (token: string): RequestInit => ({ headers: { authorization: `Bearer ${token}` } });
const skip = (reason: string): Emulated => ({ kind: 'skip', reason });

/** Faults stand for the provider's own throttling or refusal of our app (no real token can cause them). */
async function providerFault(context: Context, provider: string): Promise<void> {
  if (context.situation === 'rate_limited') {
    const code = valueAt(context.fixture.response?.body, 'error.code');
    await context.client.setFault(provider, { mode: 'rate_limited', ...(typeof code === 'number' ? { code } : {}) });
  }
  if (context.situation === 'app_access_denied') await context.client.setFault(provider, { mode: 'app_access_denied' });
  if (context.situation === 'server_error') await context.client.setFault(provider, { mode: 'error_500' });
}

const RECIPES: Record<string, Recipe> = {
  async facebook(context) {
    const { fixture, situation, variant, client, ask } = context;
    const appId = fixture.config.SOCIAL_AUTH_FACEBOOK_KEY!;
    // The same person as the recording (its ids are compared).
    const userId = fixture.expect.uid ?? '500308595';
    if (fixture.endpoint === 'id_token')
      return context.token((await client.mintIdToken('facebook', { aud: appId, sub: userId })).id_token);
    if (fixture.endpoint === 'limited_jwks') return ask('/facebook-limited/.well-known/oauth/openid/jwks/');
    let userToken = 'EAAGarbageTokenNobodyIssued0123456789';
    if (situation !== 'invalid_token') {
      if (variant === 'code1')
        return skip(
          'Graph answers an internal error with code 1 or 2; the emulator answers code 2 (me.server_error.json)',
        );
      const minted = await client.mintFacebookToken({
        app_id: situation === 'foreign_app_token' ? FOREIGN : appId,
        user: { id: userId },
        ...(situation === 'expired_token' ? { expires_in: -60 } : {}),
        ...(situation === 'no_email_scope' ? { scopes: ['public_profile'] } : {}),
      });
      userToken = minted.access_token;
      if (situation === 'revoked_token') await client.revokeToken(userToken);
    }
    await providerFault(context, 'facebook');
    if (fixture.endpoint === 'debug_token') {
      const secret = situation === 'bad_app_credentials' ? 'not-the-app-secret' : 'any';
      return ask(
        `/facebook/v23.0/debug_token?${new URLSearchParams({ input_token: userToken, access_token: `${appId}|${secret}` })}`,
      );
    }
    const proof = createHmac('sha256', 'any').update(userToken).digest('hex');
    return ask(
      `/facebook/v23.0/me?${new URLSearchParams({ fields: 'id,name,email,first_name,last_name', access_token: userToken, appsecret_proof: proof })}`,
    );
  },

  async twitter(context) {
    const { fixture, situation, variant, client, ask } = context;
    const consumerKey = fixture.config.SOCIAL_AUTH_TWITTER_KEY!;
    await providerFault(context, 'twitter');
    if (fixture.endpoint === 'users_me') {
      if (variant === 'forbidden')
        return skip(
          'X answers an app without access either client-not-enrolled or a bare Forbidden; the emulator answers the first (users_me.app_access_denied.json)',
        );
      if (variant === 'app_only_token')
        return ask('/twitter/2/users/me', bearer((await client.mintTwitterAppOnlyToken()).access_token));
      const minted =
        situation === 'invalid_token'
          ? { access_token: 'garbage-oauth2-token' }
          : await client.mintTwitterOAuth2Token();
      return ask('/twitter/2/users/me', bearer(minted.access_token));
    }
    if (situation === 'bad_app_credentials' && variant === undefined) {
      return skip(
        "X's answer to a wrong consumer secret is reported as 215 or 32; the emulator cannot tell a wrong consumer secret from a wrong token secret (either only breaks the HMAC) and answers 32 (verify_credentials.bad_signature.json)",
      );
    }
    const signedUrl = `${context.url}/twitter/1.1/account/verify_credentials.json?include_email=true&skip_status=true`;
    let credentials = { token: 'garbage-token', tokenSecret: 'garbage-secret' };
    if (situation !== 'invalid_token') {
      const minted = await client.mintTwitterToken({
        consumer_key: situation === 'foreign_app_token' ? FOREIGN : consumerKey,
      });
      credentials = { token: minted.access_token, tokenSecret: minted.access_token_secret };
      if (situation === 'revoked_token') await client.revokeToken(minted.access_token);
    }
    const signer = {
      consumerKey: variant === 'wrong_key' ? 'not-our-consumer-key' : consumerKey,
      consumerSecret: 'test-consumer-secret',
      token: credentials.token,
      tokenSecret:
        situation === 'bad_signature' && variant !== 'timestamp_out_of_bounds'
          ? 'not-the-token-secret'
          : credentials.tokenSecret,
    };
    const timestamp = variant === 'timestamp_out_of_bounds' ? Math.floor(Date.now() / 1000) - 3600 : undefined;
    const authorization = authorizationHeader('GET', signedUrl, signer, { timestamp });
    return ask(signedUrl.slice(context.url.length), { headers: { authorization } });
  },

  async google(context) {
    const { fixture, situation, variant, client, ask } = context;
    const clientId = fixture.config.SOCIAL_AUTH_GOOGLE_KEY!.split(',')[0]!;
    if (fixture.endpoint === 'jwks') return ask('/google/oauth2/v3/certs');
    if (fixture.endpoint === 'id_token') {
      if (situation === 'native_backend_token') return context.token((await client.mintIdToken('google')).id_token);
      // Google writes either issuer form, and email_verified as a boolean or (older tokens) a string: the variant says which.
      const minted = await client.mintIdToken('google', {
        aud: clientId,
        ...(variant === 'legacy_issuer' ? { iss: 'accounts.google.com' } : {}),
        ...(typeof fixture.token?.claims.nonce === 'string' ? { nonce: fixture.token.claims.nonce } : {}),
        // Google writes email_verified as a boolean today and as a string in older examples: the fixture says which.
        claims: { email_verified: fixture.token?.claims.email_verified },
      });
      return context.token(minted.id_token);
    }
    let accessToken = 'ya29.garbage';
    if (situation !== 'invalid_token') {
      accessToken = (
        await client.mintGoogleAccessToken({
          client_id: clientId,
          ...(situation === 'expired_token' ? { expires_in: -60 } : {}),
        })
      ).access_token;
    }
    return ask(`/google/tokeninfo?${new URLSearchParams({ access_token: accessToken })}`);
  },

  async apple(context) {
    const { fixture, situation, variant, client, ask } = context;
    const clientId = fixture.config.SOCIAL_AUTH_APPLE_KEY!.split(',')[0]!;
    if (fixture.endpoint === 'jwks') return ask('/apple/auth/keys');
    if (fixture.endpoint === 'id_token') {
      const raw = typeof fixture.input.nonce === 'string' ? fixture.input.nonce : undefined;
      const minted = await client.mintIdToken('apple', {
        aud: clientId,
        ...(situation === 'hashed_nonce' && raw ? { nonce: createHash('sha256').update(raw).digest('hex') } : {}),
        ...(situation === 'raw_nonce' && raw ? { nonce: raw } : {}),
        // Apple writes the e-mail flags as strings or booleans; the variant says which.
        ...(variant === 'boolean_flags'
          ? {
              claims: {
                email_verified: fixture.token?.claims.email_verified,
                is_private_email: fixture.token?.claims.is_private_email,
              },
            }
          : {}),
        ...(situation === 'nonce_unsupported' ? { claims: { nonce_supported: false } } : {}),
        email: 'relay@privaterelay.appleid.com',
      });
      return context.token(minted.id_token);
    }
    if (fixture.endpoint === 'user') {
      const minted = await client.mintAppleCode({ client_id: clientId });
      return {
        kind: 'http',
        status: 200,
        headers: {},
        body: minted.user === undefined ? undefined : JSON.parse(minted.user),
      };
    }
    await providerFault(context, 'apple');
    const secret = situation === 'bad_app_credentials' ? 'not-a-client-secret' : await clientSecret(clientId);
    if (fixture.endpoint === 'revoke') {
      const minted = await client.mintAppleCode({ client_id: clientId });
      return ask(
        '/apple/auth/revoke',
        form({ client_id: clientId, client_secret: secret, token: minted.code, token_type_hint: 'refresh_token' }),
      );
    }
    let code = 'c0000000000000000000000000000000.0.garb.age';
    if (situation !== 'invalid_token' || variant === 'code_used')
      code = (await client.mintAppleCode({ client_id: clientId })).code;
    const exchange = () =>
      ask(
        '/apple/auth/token',
        form({ client_id: clientId, client_secret: secret, code, grant_type: 'authorization_code' }),
      );
    if (variant === 'code_used') await exchange();
    return exchange();
  },

  async line(context) {
    const { fixture, situation, variant, client, ask } = context;
    const channelId = fixture.config.SOCIAL_AUTH_LINE_KEY!;
    const minted = await client.mintLineToken({
      channel_id: situation === 'foreign_app_token' ? '9999999999' : channelId,
      ...(situation === 'expired_token' ? { expires_in: -60 } : {}),
      nonce: 'n-0987654asdf',
    });
    await providerFault(context, 'line');
    const garbage = situation === 'invalid_token' && variant !== 'nonce_mismatch';
    if (fixture.endpoint === 'verify_id_token') {
      return ask(
        '/line/oauth2/v2.1/verify',
        form({
          id_token: garbage ? 'eyJ.garbage.token' : minted.id_token,
          client_id: channelId,
          nonce: variant === 'nonce_mismatch' ? 'another-nonce' : 'n-0987654asdf',
        }),
      );
    }
    const accessToken = garbage ? 'garbage-line-token' : minted.access_token;
    if (fixture.endpoint === 'profile') return ask('/line/v2/profile', bearer(accessToken));
    return ask(`/line/oauth2/v2.1/verify?${new URLSearchParams({ access_token: accessToken })}`);
  },

  async github(context) {
    const { fixture, situation, variant, client, ask } = context;
    const clientId = fixture.config.SOCIAL_AUTH_GITHUB_KEY!;
    if (variant === 'login_attempts')
      return skip("GitHub's lock-out after failed logins is not emulated: no request of ours can cause it");
    const minted =
      situation === 'invalid_token'
        ? { access_token: 'gho_garbage000000000000000000000000000' }
        : await client.mintGithubToken({
            client_id: situation === 'foreign_app_token' ? FOREIGN : clientId,
            ...(situation === 'no_email_scope' ? { scopes: ['read:user'] } : { scopes: ['repo', 'user'] }),
            user: {
              id: Number(fixture.expect.uid ?? 1),
              login: 'octocat',
              email: 'octocat@github.com',
              primary_email: 'octocat@github.com',
            },
          });
    if (situation === 'rate_limited')
      await client.setFault('github', {
        mode: 'rate_limited',
        ...(variant === 'secondary' ? { secondary: true } : {}),
      });
    if (fixture.endpoint === 'user') return ask('/github/user', bearer(minted.access_token));
    if (fixture.endpoint === 'user_emails') return ask('/github/user/emails', bearer(minted.access_token));
    const secret = situation === 'bad_app_credentials' ? 'not-the-client-secret' : 'any';
    return ask(`/github/applications/${clientId}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify(situation === 'validation_failed' ? {} : { access_token: minted.access_token }),
    });
  },

  async oidc(context) {
    const { fixture, situation, variant, client, ask, url } = context;
    if (situation === 'multi_tenant') {
      if (fixture.endpoint === 'discovery') return ask('/microsoft/common/v2.0/.well-known/openid-configuration');
      if (fixture.endpoint === 'jwks') return ask('/microsoft/common/discovery/v2.0/keys');
      const claims = fixture.token!.claims;
      // The mismatch: a token whose iss names another tenant than its tid (what a verifier must refuse).
      const issTenant = /\/([0-9a-f-]{36})\//.exec(String(claims.iss))?.[1];
      const minted = await client.mintMicrosoftIdToken({
        tid: String(claims.tid),
        nonce: String(claims.nonce),
        ...(variant === 'tid_mismatch' ? { iss: `${url}/microsoft/${issTenant}/v2.0` } : {}),
        ...(variant === 'key_of_another_tenant' ? { signing_key: 'consumers' as const } : {}),
      });
      return context.token(minted.id_token);
    }
    // The generic fixtures are Google's documented examples: Google's emulated issuer answers them.
    if (fixture.endpoint === 'discovery') return ask('/google/.well-known/openid-configuration');
    if (fixture.endpoint === 'jwks') return ask('/google/oauth2/v3/certs');
    const claims = fixture.token!.claims;
    const minted = await client.mintIdToken('google', {
      aud: claims.aud as string | string[],
      ...(typeof claims.azp === 'string' ? { azp: claims.azp } : {}),
      ...(typeof claims.nonce === 'string' ? { nonce: claims.nonce } : {}),
      // Google writes email_verified as a boolean today and as a string in older examples: the fixture says which.
      claims: { email_verified: claims.email_verified },
    });
    return context.token(minted.id_token);
  },
};

/** Our Sign in with Apple client secret, as social-link signs it. */
async function clientSecret(clientId: string): Promise<string> {
  const key = await importPKCS8(applePrivateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'ES256');
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: APPLE_KEY_ID })
    .setIssuer(APPLE_TEAM_ID)
    .setSubject(clientId)
    .setAudience('https://appleid.apple.com')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(key);
}
