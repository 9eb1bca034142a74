import { ConfigError } from '../settings.js';
import { InvalidTokenError, ProviderUnavailableError } from '../errors.js';
import { isObject, stringField } from './http.js';
import { requireField } from './fields.js';
import type { ProviderModule } from './types.js';

export interface GithubConfig {
  clientId: string;
  clientSecret: string;
  apiUrl: string;
}

/**
 * GitHub with an OAuth app's user token. GET /user says whose it is; POST
 * /applications/{client_id}/token (basic auth with our client id and secret) proves it was issued to
 * OUR OAuth app: GitHub answers 404 for a token of any other app.
 */
export const github: ProviderModule<GithubConfig> = {
  name: 'github',

  configure(settings) {
    const clientId = settings.string('SOCIAL_AUTH_GITHUB_KEY');
    const clientSecret = settings.string('SOCIAL_AUTH_GITHUB_SECRET');
    if (!clientId && !clientSecret) return undefined;
    if (!clientId || !clientSecret) {
      throw new ConfigError('SOCIAL_AUTH_GITHUB_KEY and SOCIAL_AUTH_GITHUB_SECRET must be set together');
    }
    return { clientId, clientSecret, apiUrl: settings.url('SOCIAL_AUTH_GITHUB_API_URL', 'https://api.github.com') };
  },

  create(config, { http }) {
    const basic = `Basic ${Buffer.from(`${config.clientId}:${config.clientSecret}`).toString('base64')}`;
    const github = { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };

    return {
      name: 'github',
      async verify(input) {
        const token = requireField(input, 'access_token', 'github');
        const [userAnswer, appAnswer] = await Promise.all([
          http.json(`${config.apiUrl}/user`, { headers: { ...github, authorization: `Bearer ${token}` } }),
          http.json(`${config.apiUrl}/applications/${encodeURIComponent(config.clientId)}/token`, {
            method: 'POST',
            headers: { ...github, authorization: basic, 'content-type': 'application/json' },
            body: JSON.stringify({ access_token: token }),
          }),
        ]);
        if (appAnswer.status === 404) throw new InvalidTokenError('the token is invalid or was issued to another app');
        if (appAnswer.status === 401) {
          throw new ProviderUnavailableError('github', 'refused the app credentials (check SOCIAL_AUTH_GITHUB_KEY and _SECRET)');
        }
        if (userAnswer.status === 401 || userAnswer.status === 403) throw new InvalidTokenError('the token is invalid or revoked');
        const user = userAnswer.body;
        const owner = isObject(appAnswer.body) && isObject(appAnswer.body.user) ? appAnswer.body.user : undefined;
        if (userAnswer.status !== 200 || appAnswer.status !== 200 || !isObject(user) || typeof user.id !== 'number' || !owner) {
          throw new ProviderUnavailableError('github', `answered HTTP ${userAnswer.status}/${appAnswer.status} and an unexpected body`);
        }
        if (owner.id !== user.id) throw new InvalidTokenError('the token belongs to another user than /user answered');
        const uid = String(user.id);
        return {
          uid,
          details: { username: stringField(user, 'login'), email: stringField(user, 'email'), fullname: stringField(user, 'name') },
          extraData: { id: user.id, login: stringField(user, 'login') ?? null, name: stringField(user, 'name') ?? null, email: stringField(user, 'email') ?? null },
        };
      },
    };
  },
};
