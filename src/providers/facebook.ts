import { createHmac } from 'node:crypto';
import { ConfigError } from '../settings.js';
import { InvalidTokenError, ProviderUnavailableError } from '../errors.js';
import { isObject, stringField, type JsonResponse } from './http.js';
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
 * Two Graph API calls, made together: /me says whose token it is (signed with appsecret_proof), and
 * debug_token proves the token was issued to OUR app. Without the second, a token that any other
 * Facebook app obtained from the user would sign in here: an account takeover.
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

    return {
      name: 'facebook',
      async verify(input) {
        if (requireOneOf(input, ['access_token', 'id_token'], 'facebook') === 'id_token') {
          return limitedLoginIdentity(await verifyIdToken(input.id_token!, limitedLogin, input.nonce));
        }
        const token = input.access_token!;
        const proof = createHmac('sha256', config.appSecret).update(token).digest('hex');
        const me = new URLSearchParams({ fields: 'id,name,email,first_name,last_name', access_token: token, appsecret_proof: proof });
        const debug = new URLSearchParams({ input_token: token, access_token: appAccessToken });
        const [profileResponse, debugResponse] = await Promise.all([
          http.json(`${graph}/me?${me}`),
          http.json(`${graph}/debug_token?${debug}`),
        ]);

        const tokenInfo = readDebugToken(debugResponse);
        if (tokenInfo.is_valid !== true) throw new InvalidTokenError('the token is invalid or expired');
        if (stringField(tokenInfo, 'app_id') !== config.appId) {
          throw new InvalidTokenError('the token was issued to another app');
        }

        const profile = readProfile(profileResponse);
        const uid = stringField(profile, 'id');
        if (!uid) throw new ProviderUnavailableError('facebook', 'answered /me without an id');
        if (stringField(tokenInfo, 'user_id') !== uid) {
          throw new InvalidTokenError('the token belongs to another user than /me answered');
        }

        const expiresAt = typeof tokenInfo.expires_at === 'number' && tokenInfo.expires_at > 0 ? tokenInfo.expires_at : null;
        return {
          uid,
          details: {
            username: stringField(profile, 'name'),
            email: stringField(profile, 'email'),
            fullname: stringField(profile, 'name'),
            first_name: stringField(profile, 'first_name'),
            last_name: stringField(profile, 'last_name'),
          },
          extraData: {
            id: uid,
            name: stringField(profile, 'name') ?? null,
            email: stringField(profile, 'email') ?? null,
            expires_at: expiresAt,
            scopes: Array.isArray(tokenInfo.scopes) ? tokenInfo.scopes : [],
          },
        };
      },
    };
  },
};

/** A Graph API error body: {"error": {"message", "type", "code", ...}}. */
function graphError(body: unknown): { code?: number; message?: string } | undefined {
  if (!isObject(body) || !isObject(body.error)) return undefined;
  return { code: typeof body.error.code === 'number' ? body.error.code : undefined, message: stringField(body.error, 'message') };
}

function readProfile({ status, body }: JsonResponse): Record<string, unknown> {
  if (status === 200 && isObject(body)) return body;
  const error = graphError(body);
  if (status >= 400 && status < 500 && error) {
    // 190: invalid or expired token; 100: appsecret_proof mismatch, i.e. the token belongs to another app.
    throw new InvalidTokenError(
      error.code === 100 ? 'the token was issued to another app' : 'the token is invalid or expired',
    );
  }
  throw new ProviderUnavailableError('facebook', `answered /me with HTTP ${status} and an unexpected body`);
}

function readDebugToken({ status, body }: JsonResponse): Record<string, unknown> {
  if (status === 200 && isObject(body) && isObject(body.data)) return body.data;
  if (graphError(body)) {
    // debug_token refuses OUR app access token: the server is misconfigured, not the user's token.
    throw new ProviderUnavailableError('facebook', 'refused the app credentials (check SOCIAL_AUTH_FACEBOOK_KEY and _SECRET)');
  }
  throw new ProviderUnavailableError('facebook', `answered debug_token with HTTP ${status} and an unexpected body`);
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
