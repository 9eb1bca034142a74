import { InvalidTokenError } from '../../lib/errors.js';
import { text } from '../../lib/narrowing.js';
import { defineProvider } from '../define.js';
import { bearer, formPost } from '../http.js';
import { idTokenProof, requireNonce } from '../id-token.js';
import { refusal } from './refusals.js';

/**
 * LINE Login. An access token is checked with GET /oauth2/v2.1/verify (its client_id must be our channel,
 * and it must not have expired), and read with GET /v2/profile. An ID token is sent to LINE's POST
 * /oauth2/v2.1/verify with our channel id, which checks signature, audience, expiry and nonce.
 * Sources: test/fixtures/providers/line/.
 */
export const line = defineProvider({
  name: 'line',
  emailTrust: 'never',
  tokens: ['access_token', 'id_token'],

  settings(s) {
    const channelId = s.string('KEY');
    if (!channelId) return undefined;
    return { channelId, apiUrl: s.url('API_URL', 'https://api.line.me'), nonceRule: s.nonceRule() };
  },

  async prove(form, { id_token, access_token, nonce }, ctx) {
    const { config, http, call, accepted, unavailable, clockToleranceSeconds } = ctx;
    if (form === 'id_token') {
      requireNonce(config.nonceRule, nonce);
      const fields = { id_token: id_token!, client_id: config.channelId, ...(nonce ? { nonce } : {}) };
      const refused = refusal('the ID token is invalid, expired, for another channel, or its nonce does not match');
      const claims = await call('the ID token check', `${config.apiUrl}/oauth2/v2.1/verify`, refused, formPost(fields));
      const sub = text(claims, 'sub');
      if (!sub) throw unavailable('answered the ID token check without sub');
      // LINE compared the nonce we sent with the token's (and refuses a mismatch with 400).
      requireNonce(config.nonceRule, nonce, claims);
      const facts = {
        userId: sub,
        name: text(claims, 'name'),
        email: text(claims, 'email'),
        picture: text(claims, 'picture'),
      };
      return { facts, idToken: idTokenProof(id_token!, claims, nonce, config.nonceRule, clockToleranceSeconds) };
    }
    if (config.nonceRule !== 'optional') throw ctx.nonceNeedsIdToken();
    const [verified, profileAnswer] = await Promise.all([
      http.json(`${config.apiUrl}/oauth2/v2.1/verify?${new URLSearchParams({ access_token: access_token! })}`),
      http.json(`${config.apiUrl}/v2/profile`, bearer(access_token!)),
    ]);
    const tokenInfo = accepted('the token check', verified, refusal('the token is invalid or expired'));
    if (String(tokenInfo.client_id) !== config.channelId)
      throw new InvalidTokenError('the token was issued to another channel');
    if (!(Number(tokenInfo.expires_in) > 0)) throw new InvalidTokenError('the token has expired');
    const profile = accepted('/v2/profile', profileAnswer, refusal('the token is invalid or expired'));
    const userId = text(profile, 'userId');
    if (!userId) throw unavailable('answered /v2/profile without userId');
    return {
      facts: { userId, name: text(profile, 'displayName'), email: undefined, picture: text(profile, 'pictureUrl') },
    };
  },

  account: ({ userId, name, email, picture }) => ({
    uid: userId,
    name,
    email,
    extraData: { userId, displayName: name ?? null, email: email ?? null, pictureUrl: picture ?? null },
  }),
});
