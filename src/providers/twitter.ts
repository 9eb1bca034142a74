import { ProviderUnavailableError, invalidRequest } from '../lib/errors.js';
import { accepted, account, type RefusalReader } from './answers.js';
import { isObject, text } from '../lib/narrowing.js';
import { requireField } from './fields.js';
import { authorizationHeader } from './oauth1.js';
import type { ProviderModule, SocialIdentity } from './types.js';

/**
 * Twitter / X with an OAuth 1.0a user token and secret from the native SDK. The request is signed with OUR
 * consumer key and secret, so X itself refuses a token issued to another app (error 89).
 *
 * OAuth 2 user tokens (`access_token` alone) are read with GET /2/users/me, whose id is the same as the
 * OAuth 1.0a id_str, so both kinds of token find the same link. But X offers no way to learn which app an
 * OAuth 2 token was issued to: a token another app obtained from the user would be accepted. So they are
 * refused unless the operator opts in with SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS.
 * Sources: test/fixtures/providers/twitter/.
 */
export interface TwitterConfig {
  consumerKey: string;
  consumerSecret: string;
  apiUrl: string;
  /** Accept OAuth 2 user tokens (no secret)? Off by default: see above. */
  acceptOAuth2Tokens: boolean;
}

const KEY_HINT = 'check SOCIAL_AUTH_TWITTER_KEY and SOCIAL_AUTH_TWITTER_SECRET (the API key and secret of the app)';

/**
 * A v1.1 error answer, {"errors": [{"code", "message"}]}. 32 (signature) and 89 (invalid, expired or another
 * app's token) refuse the user's token — X answers them for a wrong consumer secret too, so a misconfigured
 * server shows as refused tokens. 215 (bad authentication data), 135 (our clock) and 453 (our app's access
 * level) are the operator's to fix; 88 a rate limit (429 is one already).
 */
const v1Refusal: RefusalReader = ({ status, body }) => {
  const first = isObject(body) && Array.isArray(body.errors) && isObject(body.errors[0]) ? body.errors[0] : undefined;
  const code = typeof first?.code === 'number' ? first.code : undefined;
  if (status < 400 || status >= 500 || code === undefined) return undefined;
  if (code === 135)
    return {
      app: 'error 135, timestamp out of bounds',
      hint: "set this server's clock right (NTP): X refuses OAuth 1.0a timestamps off by more than a few minutes",
    };
  if (code === 215) return { app: 'error 215, bad authentication data', hint: KEY_HINT };
  if (code === 453)
    return {
      app: 'error 453, access level',
      hint: "the app's X API access level does not include GET account/verify_credentials: change it in the X developer portal",
    };
  if (code === 88) return { throttled: 'error 88' };
  return { token: 'the token is invalid, expired, or was issued to another app' };
};

/**
 * A v2 answer: 401 the token refused; 403 a problem ({"type", "title", "reason"}): an app-only token is the
 * app's wrong token, anything else (client-not-enrolled, a bare Forbidden) says our app may not call it.
 */
const v2Refusal: RefusalReader = ({ status, body }) => {
  if (status === 401) return { token: 'the token is invalid or expired' };
  if (status !== 403) return undefined;
  const problem = isObject(body) ? body : {};
  if ((text(problem, 'type') ?? '').endsWith('/unsupported-authentication'))
    return { token: 'the token is not an OAuth 2 user token' };
  return {
    app: `HTTP 403, ${text(problem, 'reason') ?? text(problem, 'title') ?? 'Forbidden'}`,
    hint: 'the app must be in a Project with an X API access level that includes GET /2/users/me (X developer portal)',
  };
};

export const twitter: ProviderModule<TwitterConfig> = {
  name: 'twitter',
  emailTrust: 'verified',

  configure(settings) {
    const consumer = settings.credentials('TWITTER');
    if (!consumer) return undefined;
    return {
      consumerKey: consumer.key,
      consumerSecret: consumer.secret,
      apiUrl: settings.url('SOCIAL_AUTH_TWITTER_API_URL', 'https://api.twitter.com'),
      acceptOAuth2Tokens: settings.bool('SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS', false),
    };
  },

  create(config, { http }) {
    const verifyCredentials = `${config.apiUrl}/1.1/account/verify_credentials.json?include_email=true&skip_status=true`;

    async function oauth2Identity(token: string): Promise<SocialIdentity> {
      const { data } = accepted(
        'twitter',
        '/2/users/me',
        await http.json(`${config.apiUrl}/2/users/me`, { headers: { authorization: `Bearer ${token}` } }),
        v2Refusal,
      );
      const uid = isObject(data) ? text(data, 'id') : undefined;
      if (!isObject(data) || !uid)
        throw new ProviderUnavailableError('twitter', 'answered /2/users/me without a user id');
      return identity(uid, text(data, 'username'), text(data, 'name'), undefined);
    }

    return {
      name: 'twitter',
      async verify(input) {
        const token = requireField(input, 'access_token', 'twitter');
        if (!input.access_token_secret) {
          if (!config.acceptOAuth2Tokens)
            throw invalidRequest(
              'access_token_secret is required for twitter (OAuth 2 tokens are off: see SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS)',
            );
          return oauth2Identity(token);
        }
        const credentials = {
          consumerKey: config.consumerKey,
          consumerSecret: config.consumerSecret,
          token,
          tokenSecret: input.access_token_secret,
        };
        const answer = await http.json(verifyCredentials, {
          headers: { authorization: authorizationHeader('GET', verifyCredentials, credentials) },
        });
        const user = accepted('twitter', 'verify_credentials', answer, v1Refusal);
        const uid = text(user, 'id_str');
        if (!uid) throw new ProviderUnavailableError('twitter', 'answered without an id_str');
        return identity(uid, text(user, 'screen_name'), text(user, 'name'), text(user, 'email'));
      },
    };
  },
};

function identity(uid: string, screenName?: string, name?: string, email?: string): SocialIdentity {
  // X answers an e-mail only when the account's e-mail is verified (null otherwise): its presence is the flag.
  return account(
    { uid, username: screenName, name, email, email_verified: true },
    { id: uid, screen_name: screenName ?? null, name: name ?? null, email: email ?? null },
  );
}
