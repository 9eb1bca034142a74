import { createHmac } from 'node:crypto';
import { ConfigError } from '../config/settings.js';
import { InvalidTokenError, ProviderUnavailableError, providerRateLimited, providerRefusedApp } from '../core/errors.js';
import { isObject, stringField } from './http.js';
import { requireOneOf } from './fields.js';
import { claimString, verifyIdToken, type IdTokenPolicy } from './id-token.js';
import { JwksCache } from './jwks.js';
import type { ProviderModule, SocialIdentity } from './types.js';

export interface FacebookConfig {
  appId: string;
  appSecret: string;
  apiUrl: string;
  apiVersion: string;
  /** Keys of Limited Login's OpenID Connect tokens. */
  limitedJwksUrl: string;
}

/**
 * Facebook Login from the native SDK: an OAuth 2 user access token.
 * GET /debug_token with our app access token proves the token is valid, was issued to OUR app, and
 * names its user — without it, a token that any other Facebook app obtained from the user would sign
 * in here (an account takeover). Graph inspects only tokens of the app that asks: for another app's
 * token it answers 400 (#100), which is the user's token refused, never an outage.
 * The profile (GET /me, signed with appsecret_proof) is read only when needed (see profile.ts), so a
 * sign-in of a linked account costs one Graph call.
 */
export const facebook: ProviderModule<FacebookConfig> = {
  name: 'facebook',

  configure(settings) {
    const appId = settings.string('SOCIAL_AUTH_FACEBOOK_KEY');
    const appSecret = settings.string('SOCIAL_AUTH_FACEBOOK_SECRET');
    if (!appId && !appSecret) return undefined;
    if (!appId || !appSecret) {
      throw new ConfigError('SOCIAL_AUTH_FACEBOOK_KEY and SOCIAL_AUTH_FACEBOOK_SECRET must be set together');
    }
    const version = settings.string('SOCIAL_AUTH_FACEBOOK_API_VERSION', 'v23.0').replace(/^v?/, 'v');
    if (!/^v\d+\.\d+$/.test(version)) {
      throw new ConfigError(`SOCIAL_AUTH_FACEBOOK_API_VERSION must look like v23.0, got "${version}"`);
    }
    return {
      appId,
      appSecret,
      apiUrl: settings.url('SOCIAL_AUTH_FACEBOOK_API_URL', 'https://graph.facebook.com'),
      apiVersion: version,
      limitedJwksUrl: settings.url('SOCIAL_AUTH_FACEBOOK_LIMITED_JWKS_URL', 'https://limited.facebook.com/.well-known/oauth/openid/jwks/'),
    };
  },

  create(config, { http }) {
    const graph = `${config.apiUrl}/${config.apiVersion}`;
    const appAccessToken = `${config.appId}|${config.appSecret}`;
    const jwks = new JwksCache(http, config.limitedJwksUrl);
    const limitedLogin: IdTokenPolicy = { jwks, issuers: ['https://www.facebook.com'], audiences: [config.appId], algorithms: ['RS256'] };

    async function debugToken(token: string) {
      const query = new URLSearchParams({ input_token: token, access_token: appAccessToken });
      const { status, body } = await http.json(`${graph}/debug_token?${query}`);
      if (status !== 200 || !isObject(body) || !isObject(body.data)) throw graphFailure('debug_token', status, body);
      const data = body.data;
      if (data.is_valid !== true) throw new InvalidTokenError('the token is invalid or expired');
      if (stringField(data, 'app_id') !== config.appId) throw new InvalidTokenError('the token was issued to another app');
      const userId = stringField(data, 'user_id');
      if (!userId) throw new InvalidTokenError('the token is not a user access token');
      return { userId, data };
    }

    async function readProfile(token: string) {
      const proof = createHmac('sha256', config.appSecret).update(token).digest('hex');
      const query = new URLSearchParams({ fields: 'id,name,email,first_name,last_name', access_token: token, appsecret_proof: proof });
      const { status, body } = await http.json(`${graph}/me?${query}`);
      if (status !== 200 || !isObject(body)) throw graphFailure('/me', status, body);
      return body;
    }

    return {
      name: 'facebook',
      async verify(input, options) {
        if (requireOneOf(input, ['access_token', 'id_token'], 'facebook') === 'id_token') {
          return limitedLoginIdentity(await verifyIdToken(input.id_token!, limitedLogin, input.nonce));
        }
        const token = input.access_token!;
        // Asked for now, the profile is read beside debug_token; its failure counts once awaited.
        const profile = options?.profile === false ? undefined : readProfile(token);
        profile?.catch(() => {});
        const { userId, data } = await debugToken(token);
        const expiresAt = typeof data.expires_at === 'number' && data.expires_at > 0 ? data.expires_at : null;
        return {
          uid: userId,
          details: {},
          extraData: { id: userId, expires_at: expiresAt, scopes: Array.isArray(data.scopes) ? data.scopes : [] },
          keptFacts: PROFILE_FACTS,
          async loadProfile() {
            const me = await (profile ?? readProfile(token));
            if (stringField(me, 'id') !== userId) throw new InvalidTokenError('the token belongs to another user than /me answered');
            const name = stringField(me, 'name');
            const email = stringField(me, 'email');
            return {
              details: { username: name, email, fullname: name, first_name: stringField(me, 'first_name'), last_name: stringField(me, 'last_name') },
              extraData: { name: name ?? null, email: email ?? null },
            };
          },
        };
      },
    };
  },
};

/** What the profile read adds to extra_data: kept as they are by a sign-in that does not read it. */
const PROFILE_FACTS = ['name', 'email', 'profile_read_at'];

/** Graph's error codes that mean it throttles our app (application, user, page, custom and business limits). */
const RATE_LIMIT_CODES = new Set([4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014]);

/**
 * What a Graph error answer means. Graph answers {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}:
 * on debug_token, code 100 is the user's token of another app, code 190 our app access token refused, and
 * anything else (1, 2: internal errors, sent with HTTP 400 too) Graph's trouble;
 * on /me, code 190 is the user's token invalid or expired, code 100 an appsecret_proof our secret did not make.
 */
function graphFailure(endpoint: '/me' | 'debug_token', status: number, body: unknown): Error {
  const error = isObject(body) && isObject(body.error) ? body.error : undefined;
  const code = error && typeof error.code === 'number' ? error.code : undefined;
  if (status < 400 || status >= 500 || code === undefined) {
    return new ProviderUnavailableError('facebook', `answered ${endpoint} with HTTP ${status} and an unexpected body`);
  }
  if (RATE_LIMIT_CODES.has(code)) return providerRateLimited('facebook', `Graph error ${code}`);
  if (endpoint === 'debug_token') {
    if (code === 100) return new InvalidTokenError('the token was issued to another app');
    if (code === 190) {
      return providerRefusedApp('facebook', 'Graph error 190 on debug_token', 'check SOCIAL_AUTH_FACEBOOK_KEY and SOCIAL_AUTH_FACEBOOK_SECRET (the app id and app secret)');
    }
    return new ProviderUnavailableError('facebook', `answered debug_token with Graph error ${code}`);
  }
  if (code === 190 || code === 102 || code === 2500) return new InvalidTokenError('the token is invalid or expired');
  if (code === 100) {
    return providerRefusedApp('facebook', 'Graph refused our appsecret_proof on /me', 'check SOCIAL_AUTH_FACEBOOK_SECRET: it must be the secret of the app SOCIAL_AUTH_FACEBOOK_KEY names');
  }
  return new ProviderUnavailableError('facebook', `answered /me with Graph error ${code}`);
}

function limitedLoginIdentity(claims: Record<string, unknown>): SocialIdentity {
  const name = claimString(claims, 'name');
  const email = claimString(claims, 'email');
  return {
    uid: String(claims.sub),
    details: { username: name, email, fullname: name, first_name: claimString(claims, 'given_name'), last_name: claimString(claims, 'family_name') },
    extraData: { id: claims.sub, name: name ?? null, email: email ?? null, expires_at: typeof claims.exp === 'number' ? claims.exp : null, limited_login: true },
  };
}
