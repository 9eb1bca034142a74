import { invalidRequest } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import { defineProvider } from '../define.js';
import { bearer } from '../http.js';
import { authorizationHeader } from '../oauth1.js';
import { v1Refusal, v2Refusal } from './refusals.js';

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
    const signed = authorizationHeader('GET', verifyCredentials, { ...config, token: token!, tokenSecret });
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
