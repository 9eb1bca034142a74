import { InvalidTokenError, ProviderUnavailableError, invalidRequest } from '../lib/errors.js';
import { idTokenProof, nonceRuleOf, requireNonce } from './id-token.js';
import { accepted, account, type RefusalReader } from './answers.js';
import { text } from '../lib/narrowing.js';
import { requireOneOf } from './fields.js';
import type { NonceRule, ProviderModule, SocialIdentity } from './types.js';

/**
 * LINE Login. An access token is checked with GET /oauth2/v2.1/verify (its client_id must be our channel,
 * and it must not have expired), and read with GET /v2/profile. An ID token is sent to LINE's POST
 * /oauth2/v2.1/verify with our channel id, which checks signature, audience, expiry and nonce.
 * Sources: test/fixtures/providers/line/.
 */
export interface LineConfig {
  channelId: string;
  apiUrl: string;
  nonceRule: NonceRule;
}

/** 400 and 401: the token is not good for us; 403: our channel's plan or permissions do not allow the call (429 is a rate limit already). */
const refusal =
  (detail: string): RefusalReader =>
  ({ status }) => {
    if (status === 400 || status === 401) return { token: detail };
    if (status === 403)
      return {
        app: 'HTTP 403',
        hint: "check the LINE Login channel's plan and permissions in the LINE Developers Console, and SOCIAL_AUTH_LINE_KEY",
      };
    return undefined;
  };

export const line: ProviderModule<LineConfig> = {
  name: 'line',
  emailTrust: 'never',

  configure(settings) {
    const channelId = settings.string('SOCIAL_AUTH_LINE_KEY');
    if (!channelId) return undefined;
    return {
      channelId,
      apiUrl: settings.url('SOCIAL_AUTH_LINE_API_URL', 'https://api.line.me'),
      nonceRule: nonceRuleOf(settings, 'SOCIAL_AUTH_LINE_REQUIRE_NONCE'),
    };
  },

  create(config, { http, clockToleranceSeconds }) {
    const verifyIdToken = async (idToken: string, nonce: string | undefined) => {
      requireNonce(config.nonceRule, nonce);
      const form = new URLSearchParams({ id_token: idToken, client_id: config.channelId, ...(nonce ? { nonce } : {}) });
      const answer = await http.json(`${config.apiUrl}/oauth2/v2.1/verify`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
      const claims = accepted(
        'line',
        'the ID token check',
        answer,
        refusal('the ID token is invalid, expired, for another channel, or its nonce does not match'),
      );
      const sub = text(claims, 'sub');
      if (!sub) throw new ProviderUnavailableError('line', 'answered the ID token check without sub');
      // LINE compared the nonce we sent with the token's (and refuses a mismatch with 400).
      requireNonce(config.nonceRule, nonce, claims);
      return {
        ...identity(sub, text(claims, 'name'), text(claims, 'email'), text(claims, 'picture')),
        idToken: idTokenProof(idToken, claims, nonce, config.nonceRule, clockToleranceSeconds),
      };
    };

    return {
      name: 'line',
      async verify(input) {
        if (requireOneOf(input, ['access_token', 'id_token'], 'line') === 'id_token')
          return verifyIdToken(input.id_token!, input.nonce);
        if (config.nonceRule !== 'optional')
          throw invalidRequest(
            'id_token is required for line: this server requires a nonce (SOCIAL_AUTH_LINE_REQUIRE_NONCE)',
          );
        const token = input.access_token!;
        const [verified, profileAnswer] = await Promise.all([
          http.json(`${config.apiUrl}/oauth2/v2.1/verify?${new URLSearchParams({ access_token: token })}`),
          http.json(`${config.apiUrl}/v2/profile`, { headers: { authorization: `Bearer ${token}` } }),
        ]);
        const tokenInfo = accepted('line', 'the token check', verified, refusal('the token is invalid or expired'));
        if (String(tokenInfo.client_id) !== config.channelId)
          throw new InvalidTokenError('the token was issued to another channel');
        if (!(Number(tokenInfo.expires_in) > 0)) throw new InvalidTokenError('the token has expired');
        const profile = accepted('line', '/v2/profile', profileAnswer, refusal('the token is invalid or expired'));
        const userId = text(profile, 'userId');
        if (!userId) throw new ProviderUnavailableError('line', 'answered /v2/profile without userId');
        return identity(userId, text(profile, 'displayName'), undefined, text(profile, 'pictureUrl'));
      },
    };
  },
};

function identity(userId: string, name?: string, email?: string, picture?: string): SocialIdentity {
  return account(
    { uid: userId, name, email },
    { userId, displayName: name ?? null, email: email ?? null, pictureUrl: picture ?? null },
  );
}
