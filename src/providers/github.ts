import { ConfigError } from '../config/settings.js';
import { InvalidTokenError, ProviderUnavailableError, providerRateLimited, providerRefusedApp } from '../core/errors.js';
import { isObject, retryAfterSeconds, stringField, type JsonResponse, type ProviderHttp } from './http.js';
import { requireField } from './fields.js';
import type { Profile, ProviderModule } from './types.js';

export interface GithubConfig {
  clientId: string;
  clientSecret: string;
  apiUrl: string;
}

/**
 * GitHub with an OAuth app's user token. POST /applications/{client_id}/token ("Check a token", basic
 * auth with our client id and secret) proves it was issued to OUR OAuth app — GitHub answers 404 for a
 * token of any other app — and names its user: that alone signs in a linked account. The profile
 * (GET /user) and, when the token's scopes allow, the primary verified e-mail (GET /user/emails: /user
 * shows only the public one) are read when needed (see profile.ts).
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
    const headers = { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };

    async function checkToken(token: string): Promise<{ id: number; login: string | undefined }> {
      const answer = await http.json(`${config.apiUrl}/applications/${encodeURIComponent(config.clientId)}/token`, {
        method: 'POST',
        headers: { ...headers, authorization: basic, 'content-type': 'application/json' },
        body: JSON.stringify({ access_token: token }),
      });
      refuseRateLimit(answer);
      if (answer.status === 404) throw new InvalidTokenError('the token is invalid or was issued to another app');
      if (answer.status === 401 || answer.status === 403) {
        throw providerRefusedApp('github', `HTTP ${answer.status} on the token check`, 'check SOCIAL_AUTH_GITHUB_KEY and SOCIAL_AUTH_GITHUB_SECRET (the OAuth app client id and secret)');
      }
      const owner = isObject(answer.body) && isObject(answer.body.user) ? answer.body.user : undefined;
      if (answer.status !== 200 || !owner || typeof owner.id !== 'number') {
        throw new ProviderUnavailableError('github', `answered the token check with HTTP ${answer.status} and an unexpected body`);
      }
      return { id: owner.id, login: stringField(owner, 'login') };
    }

    async function readProfile(token: string): Promise<{ id: unknown; profile: Profile }> {
      const bearer = { ...headers, authorization: `Bearer ${token}` };
      const answer = await http.json(`${config.apiUrl}/user`, { headers: bearer });
      refuseRateLimit(answer);
      if (answer.status === 401 || answer.status === 403) throw new InvalidTokenError('the token is invalid or revoked');
      const user = answer.body;
      if (answer.status !== 200 || !isObject(user) || typeof user.id !== 'number') {
        throw new ProviderUnavailableError('github', `answered /user with HTTP ${answer.status} and an unexpected body`);
      }
      const email = mayReadEmails(answer.headers['x-oauth-scopes']) ? await primaryVerifiedEmail(bearer) : undefined;
      return {
        id: user.id,
        profile: {
          details: { username: stringField(user, 'login'), email, fullname: stringField(user, 'name') },
          extraData: { id: user.id, login: stringField(user, 'login') ?? null, name: stringField(user, 'name') ?? null, email: email ?? null },
        },
      };
    }

    /** The primary e-mail when GitHub has verified it; no e-mail otherwise. */
    async function primaryVerifiedEmail(bearer: Record<string, string>): Promise<string | undefined> {
      const answer = await http.json(`${config.apiUrl}/user/emails`, { headers: bearer });
      refuseRateLimit(answer);
      if (answer.status !== 200 || !Array.isArray(answer.body)) return undefined; // the scope was not granted after all
      const primary = answer.body.find((entry) => isObject(entry) && entry.primary === true && entry.verified === true);
      return isObject(primary) ? stringField(primary, 'email') : undefined;
    }

    return {
      name: 'github',
      async verify(input, options) {
        const token = requireField(input, 'access_token', 'github');
        // Asked for now, the profile is read beside the token check; its failure counts once awaited.
        const profile = options?.profile === false ? undefined : readProfile(token);
        profile?.catch(() => {});
        const owner = await checkToken(token);
        const uid = String(owner.id);
        return {
          uid,
          details: { username: owner.login },
          extraData: { id: owner.id, login: owner.login ?? null },
          // Kept as they are by a sign-in that does not read the profile.
          keptFacts: ['name', 'email', 'profile_read_at'],
          async loadProfile() {
            const read = await (profile ?? readProfile(token));
            if (read.id !== owner.id) throw new InvalidTokenError('the token belongs to another user than /user answered');
            return read.profile;
          },
        };
      },
    };
  },
};

/**
 * GitHub throttles with 429, or 403 with x-ratelimit-remaining 0 (primary limit), a message about a
 * secondary rate limit, or "Maximum number of login attempts exceeded" (which refuses valid tokens too):
 * the provider's problem, never the user's token.
 */
function refuseRateLimit({ status, headers, body }: JsonResponse): void {
  if (status !== 403 && status !== 429) return;
  const message = isObject(body) ? (stringField(body, 'message') ?? '') : '';
  if (status === 429 || headers['x-ratelimit-remaining'] === '0' || /rate limit|login attempts/i.test(message)) {
    throw providerRateLimited('github', `HTTP ${status}`, retryAfterSeconds(headers));
  }
}

/** /user/emails needs the user:email (or user) scope; classic OAuth tokens list theirs in X-OAuth-Scopes. */
function mayReadEmails(scopesHeader: string | string[] | undefined): boolean {
  const scopes = String(scopesHeader ?? '').split(',').map((scope) => scope.trim());
  return scopes.includes('user:email') || scopes.includes('user');
}
