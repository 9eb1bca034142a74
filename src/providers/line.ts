import { InvalidTokenError, ProviderUnavailableError, providerRefusedApp } from '../core/errors.js';
import { isObject, stringField, type JsonResponse } from './http.js';
import { requireOneOf } from './fields.js';
import type { ProviderModule, SocialIdentity } from './types.js';

export interface LineConfig {
  channelId: string;
  apiUrl: string;
}

/**
 * LINE Login. An access token is checked with GET /oauth2/v2.1/verify (its client_id must be our
 * channel, and it must not have expired), and read with GET /v2/profile. An ID token is sent to
 * LINE's POST /oauth2/v2.1/verify with our channel id, which checks signature, audience, expiry and nonce.
 */
export const line: ProviderModule<LineConfig> = {
  name: 'line',

  configure(settings) {
    const channelId = settings.string('SOCIAL_AUTH_LINE_KEY');
    if (!channelId) return undefined;
    return { channelId, apiUrl: settings.url('SOCIAL_AUTH_LINE_API_URL', 'https://api.line.me') };
  },

  create(config, { http }) {
    return {
      name: 'line',
      async verify(input) {
        if (requireOneOf(input, ['access_token', 'id_token'], 'line') === 'id_token') {
          const form = new URLSearchParams({ id_token: input.id_token!, client_id: config.channelId });
          if (input.nonce) form.set('nonce', input.nonce);
          const claims = lineAnswer(
            await http.json(`${config.apiUrl}/oauth2/v2.1/verify`, {
              method: 'POST',
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: form.toString(),
            }),
            'the ID token is invalid, expired, for another channel, or its nonce does not match',
          );
          const sub = stringField(claims, 'sub');
          if (!sub) throw new ProviderUnavailableError('line', 'answered the ID token check without sub');
          return identity(sub, stringField(claims, 'name'), stringField(claims, 'email'), stringField(claims, 'picture'));
        }

        const token = input.access_token!;
        const [verified, profileAnswer] = await Promise.all([
          http.json(`${config.apiUrl}/oauth2/v2.1/verify?${new URLSearchParams({ access_token: token })}`),
          http.json(`${config.apiUrl}/v2/profile`, { headers: { authorization: `Bearer ${token}` } }),
        ]);
        const tokenInfo = lineAnswer(verified, 'the token is invalid or expired');
        if (String(tokenInfo.client_id) !== config.channelId) throw new InvalidTokenError('the token was issued to another channel');
        if (!(Number(tokenInfo.expires_in) > 0)) throw new InvalidTokenError('the token has expired');
        const profile = lineAnswer(profileAnswer, 'the token is invalid or expired');
        const userId = stringField(profile, 'userId');
        if (!userId) throw new ProviderUnavailableError('line', 'answered /v2/profile without userId');
        return identity(userId, stringField(profile, 'displayName'), undefined, stringField(profile, 'pictureUrl'));
      },
    };
  },
};

/**
 * LINE's 400 and 401 answers mean the token is not good for us; 403 that our channel's plan or
 * permissions do not allow the call (the operator's to fix); 429 was answered as a rate limit already;
 * anything else unexpected is LINE's trouble.
 */
function lineAnswer({ status, body }: JsonResponse, refusal: string): Record<string, unknown> {
  if (status === 200 && isObject(body)) return body;
  if (status === 400 || status === 401) throw new InvalidTokenError(refusal);
  if (status === 403) {
    throw providerRefusedApp('line', 'HTTP 403', "check the LINE Login channel's plan and permissions in the LINE Developers Console, and SOCIAL_AUTH_LINE_KEY");
  }
  throw new ProviderUnavailableError('line', `answered HTTP ${status} and an unexpected body`);
}

function identity(userId: string, name?: string, email?: string, picture?: string): SocialIdentity {
  return {
    uid: userId,
    details: { username: name, fullname: name, email },
    extraData: { userId, displayName: name ?? null, email: email ?? null, pictureUrl: picture ?? null },
  };
}
