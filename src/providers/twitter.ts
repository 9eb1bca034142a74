import { ConfigError } from '../config/settings.js';
import { InvalidTokenError, ProviderUnavailableError, invalidRequest, providerRateLimited, providerRefusedApp } from '../core/errors.js';
import { isObject, stringField } from './http.js';
import { requireField } from './fields.js';
import { authorizationHeader } from './oauth1.js';
import type { ProviderModule, SocialIdentity } from './types.js';

export interface TwitterConfig {
  consumerKey: string;
  consumerSecret: string;
  apiUrl: string;
  /** Accept OAuth 2 user tokens (no secret)? Off by default: see the comment below. */
  acceptOAuth2Tokens: boolean;
}

/**
 * Twitter / X with an OAuth 1.0a user token and secret from the native SDK. The request is signed
 * with OUR consumer key and secret, so X itself refuses a token issued to another app (error 89).
 *
 * OAuth 2 user tokens (`access_token` alone) are read with GET /2/users/me, whose id is the same as
 * the OAuth 1.0a id_str, so both kinds of token find the same link. But X offers no way to learn
 * which app an OAuth 2 token was issued to: a token another app obtained from the user would be
 * accepted. So they are refused unless the operator opts in with SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS.
 */
export const twitter: ProviderModule<TwitterConfig> = {
  name: 'twitter',

  configure(settings) {
    const consumerKey = settings.string('SOCIAL_AUTH_TWITTER_KEY');
    const consumerSecret = settings.string('SOCIAL_AUTH_TWITTER_SECRET');
    if (!consumerKey && !consumerSecret) return undefined;
    if (!consumerKey || !consumerSecret) {
      throw new ConfigError('SOCIAL_AUTH_TWITTER_KEY and SOCIAL_AUTH_TWITTER_SECRET must be set together');
    }
    return {
      consumerKey,
      consumerSecret,
      apiUrl: settings.url('SOCIAL_AUTH_TWITTER_API_URL', 'https://api.twitter.com'),
      acceptOAuth2Tokens: settings.bool('SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS', false),
    };
  },

  create(config, { http }) {
    const verifyCredentials = `${config.apiUrl}/1.1/account/verify_credentials.json?include_email=true&skip_status=true`;
    const usersMe = `${config.apiUrl}/2/users/me`;

    async function oauth2Identity(token: string): Promise<SocialIdentity> {
      const { status, body } = await http.json(usersMe, { headers: { authorization: `Bearer ${token}` } });
      if (status === 401) throw new InvalidTokenError('the token is invalid or expired');
      if (status === 403) throw problemRefusal(body);
      const data = isObject(body) && isObject(body.data) ? body.data : undefined;
      const uid = data && stringField(data, 'id');
      if (status !== 200 || !data || !uid) throw new ProviderUnavailableError('twitter', `answered /2/users/me with HTTP ${status} and no user id`);
      return {
        uid,
        details: { username: stringField(data, 'username'), fullname: stringField(data, 'name') },
        extraData: { id: uid, screen_name: stringField(data, 'username') ?? null, name: stringField(data, 'name') ?? null, email: null },
      };
    }

    return {
      name: 'twitter',
      async verify(input) {
        const token = requireField(input, 'access_token', 'twitter');
        if (!input.access_token_secret) {
          if (!config.acceptOAuth2Tokens) {
            throw invalidRequest('access_token_secret is required for twitter (OAuth 2 tokens are off: see SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS)');
          }
          return oauth2Identity(token);
        }
        const tokenSecret = input.access_token_secret;
        const { status, body } = await http.json(verifyCredentials, {
          headers: {
            authorization: authorizationHeader('GET', verifyCredentials, {
              consumerKey: config.consumerKey,
              consumerSecret: config.consumerSecret,
              token,
              tokenSecret,
            }),
          },
        });
        if (status !== 200) throw v1Refusal(status, body);
        const uid = isObject(body) ? stringField(body, 'id_str') : undefined;
        if (!isObject(body) || !uid) throw new ProviderUnavailableError('twitter', 'answered without an id_str');
        return {
          uid,
          details: {
            username: stringField(body, 'screen_name'),
            email: stringField(body, 'email'),
            fullname: stringField(body, 'name'),
          },
          extraData: {
            id: uid,
            screen_name: stringField(body, 'screen_name') ?? null,
            name: stringField(body, 'name') ?? null,
            email: stringField(body, 'email') ?? null,
          },
        };
      },
    };
  },
};

const KEY_HINT = 'check SOCIAL_AUTH_TWITTER_KEY and SOCIAL_AUTH_TWITTER_SECRET (the API key and secret of the app)';

/**
 * A v1.1 error answer, {"errors": [{"code", "message"}]}. 32 (signature) and 89 (invalid, expired or
 * another app's token) refuse the user's token — X answers them for a wrong consumer secret too, so a
 * misconfigured server shows as refused tokens. 215 (bad authentication data), 135 (our clock) and 453
 * (our app's access level) are the operator's to fix. 429 was answered as a rate limit already.
 */
function v1Refusal(status: number, body: unknown): Error {
  const first = isObject(body) && Array.isArray(body.errors) && isObject(body.errors[0]) ? body.errors[0] : undefined;
  const code = typeof first?.code === 'number' ? first.code : undefined;
  if (status < 400 || status >= 500 || code === undefined) return new ProviderUnavailableError('twitter', `answered HTTP ${status} and an unexpected body`);
  if (code === 135) return providerRefusedApp('twitter', 'error 135, timestamp out of bounds', "set this server's clock right (NTP): X refuses OAuth 1.0a timestamps off by more than a few minutes");
  if (code === 215) return providerRefusedApp('twitter', 'error 215, bad authentication data', KEY_HINT);
  if (code === 453) return providerRefusedApp('twitter', 'error 453, access level', "the app's X API access level does not include GET account/verify_credentials: change it in the X developer portal");
  if (code === 88) return providerRateLimited('twitter', 'error 88');
  return new InvalidTokenError('the token is invalid, expired, or was issued to another app');
}

/**
 * A v2 403 problem ({"type", "title", "detail", "reason"}): an app-only token is the app's wrong token;
 * anything else (client-not-enrolled, a bare Forbidden) says our app may not call the endpoint.
 */
function problemRefusal(body: unknown): Error {
  const type = isObject(body) ? (stringField(body, 'type') ?? '') : '';
  if (type.endsWith('/unsupported-authentication')) return new InvalidTokenError('the token is not an OAuth 2 user token');
  const reason = isObject(body) ? (stringField(body, 'reason') ?? stringField(body, 'title') ?? 'Forbidden') : 'Forbidden';
  return providerRefusedApp('twitter', `HTTP 403, ${reason}`, 'the app must be in a Project with an X API access level that includes GET /2/users/me (X developer portal)');
}
