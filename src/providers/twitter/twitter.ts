import { invalidRequest } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import type { RefusalReader } from '../answers.js';
import { defineProvider } from '../define.js';
import { bearer } from '../http.js';
import { authorizationHeader } from '../oauth1.js';

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
export const twitter = defineProvider({
  name: 'twitter',
  emailTrust: 'verified',
  tokens: ['access_token'],

  settings(s) {
    const consumer = s.credentials();
    if (!consumer) return undefined;
    return {
      consumerKey: consumer.key,
      consumerSecret: consumer.secret,
      apiUrl: s.url('API_URL', 'https://api.twitter.com'),
      /** Accept OAuth 2 user tokens (no secret)? Off by default: see above. */
      acceptOAuth2Tokens: s.bool('ACCEPT_OAUTH2_TOKENS', false),
    };
  },

  setup: ({ config }) => ({
    verifyCredentials: `${config.apiUrl}/1.1/account/verify_credentials.json?include_email=true&skip_status=true`,
  }),

  async prove(_form, { access_token: token, access_token_secret: tokenSecret }, ctx) {
    const { config, verifyCredentials, call, unavailable, variable } = ctx;
    if (!tokenSecret) {
      if (!config.acceptOAuth2Tokens)
        throw invalidRequest(
          `access_token_secret is required for ${ctx.name} (OAuth 2 tokens are off: see ${variable('ACCEPT_OAUTH2_TOKENS')})`,
        );
      const { data } = await call('/2/users/me', `${config.apiUrl}/2/users/me`, v2Refusal, bearer(token!));
      const id = isObject(data) ? text(data, 'id') : undefined;
      if (!isObject(data) || !id) throw unavailable('answered /2/users/me without a user id');
      return { facts: { id, screen_name: text(data, 'username'), name: text(data, 'name'), email: undefined } };
    }
    const { consumerKey, consumerSecret } = config;
    const signed = authorizationHeader('GET', verifyCredentials, {
      consumerKey,
      consumerSecret,
      token: token!,
      tokenSecret,
    });
    const user = await call('verify_credentials', verifyCredentials, v1Refusal, { headers: { authorization: signed } });
    const id = text(user, 'id_str');
    if (!id) throw unavailable('answered without an id_str');
    return {
      facts: { id, screen_name: text(user, 'screen_name'), name: text(user, 'name'), email: text(user, 'email') },
    };
  },

  // X answers an e-mail only when the account's e-mail is verified (null otherwise): its presence is the flag.
  account: ({ id, screen_name, name, email }) => ({
    uid: id,
    username: screen_name,
    name,
    email,
    email_verified: true,
    extraData: { id, screen_name: screen_name ?? null, name: name ?? null, email: email ?? null },
  }),
});

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
