import { InvalidTokenError, ProviderUnavailableError } from '../lib/errors.js';
import { accepted, account, refusalError, type RefusalReader } from './answers.js';
import { isObject, text } from '../lib/narrowing.js';
import { requireField } from './fields.js';
import type { JsonResponse } from './http.js';
import type { Profile, ProviderModule } from './types.js';

/**
 * GitHub with an OAuth app's user token. POST /applications/{client_id}/token ("Check a token", basic auth
 * with our client id and secret) proves it was issued to OUR OAuth app — GitHub answers 404 for a token of
 * any other app — and names its user: that alone signs in a linked account. The profile (GET /user) and,
 * when the token's scopes allow, the primary verified e-mail (GET /user/emails: /user shows only the
 * public one) are read when needed (see profile.ts). Sources: test/fixtures/providers/github/.
 */
export interface GithubConfig {
  clientId: string;
  clientSecret: string;
  apiUrl: string;
}

/**
 * GitHub throttles with 429, or 403 with x-ratelimit-remaining 0 (primary limit), a message about a
 * secondary rate limit, or "Maximum number of login attempts exceeded" (which refuses valid tokens too).
 */
function throttled({ status, headers, body }: JsonResponse) {
  const message = isObject(body) ? (text(body, 'message') ?? '') : '';
  const limited =
    status === 429 ||
    (status === 403 && (headers['x-ratelimit-remaining'] === '0' || /rate limit|login attempts/i.test(message)));
  return limited ? { throttled: `HTTP ${status}` } : undefined;
}

/** The token check: 404, not our app's token (or no token); 401, our client id and secret refused; 422, our request. */
const checkTokenRefusal: RefusalReader = (answer) =>
  throttled(answer) ??
  (answer.status === 404 ? { token: 'the token is invalid or was issued to another app' } : undefined) ??
  (answer.status === 401 || answer.status === 403
    ? {
        app: `HTTP ${answer.status} on the token check`,
        hint: 'check SOCIAL_AUTH_GITHUB_KEY and SOCIAL_AUTH_GITHUB_SECRET (the OAuth app client id and secret)',
      }
    : undefined);

const userRefusal: RefusalReader = (answer) =>
  throttled(answer) ??
  (answer.status === 401 || answer.status === 403 ? { token: 'the token is invalid or revoked' } : undefined);

export const github: ProviderModule<GithubConfig> = {
  name: 'github',
  emailTrust: 'verified',

  configure(settings) {
    const app = settings.credentials('GITHUB');
    if (!app) return undefined;
    return {
      clientId: app.key,
      clientSecret: app.secret,
      apiUrl: settings.url('SOCIAL_AUTH_GITHUB_API_URL', 'https://api.github.com'),
    };
  },

  create(config, { http }) {
    const basic = `Basic ${Buffer.from(`${config.clientId}:${config.clientSecret}`).toString('base64')}`;
    const headers = { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };

    async function checkToken(token: string) {
      const answer = await http.json(`${config.apiUrl}/applications/${encodeURIComponent(config.clientId)}/token`, {
        method: 'POST',
        headers: { ...headers, authorization: basic, 'content-type': 'application/json' },
        body: JSON.stringify({ access_token: token }),
      });
      const owner = accepted('github', 'the token check', answer, checkTokenRefusal).user;
      if (!isObject(owner) || typeof owner.id !== 'number')
        throw new ProviderUnavailableError('github', 'answered the token check without its user');
      return { id: owner.id, login: text(owner, 'login') };
    }

    async function readProfile(token: string): Promise<{ id: unknown; profile: Profile }> {
      const bearer = { ...headers, authorization: `Bearer ${token}` };
      const answer = await http.json(`${config.apiUrl}/user`, { headers: bearer });
      const user = accepted('github', '/user', answer, userRefusal);
      if (typeof user.id !== 'number') throw new ProviderUnavailableError('github', 'answered /user without a user id');
      const email = mayReadEmails(answer.headers['x-oauth-scopes']) ? await primaryVerifiedEmail(bearer) : undefined;
      // The e-mail is the primary one /user/emails marks verified (never /user's public one).
      const { details } = account(
        { uid: String(user.id), name: text(user, 'name'), email, email_verified: true, username: text(user, 'login') },
        {},
      );
      return {
        id: user.id,
        profile: {
          details,
          extraData: {
            id: user.id,
            login: text(user, 'login') ?? null,
            name: text(user, 'name') ?? null,
            email: email ?? null,
          },
        },
      };
    }

    /** The primary e-mail when GitHub has verified it; no e-mail otherwise (or without the scope after all: 404). */
    async function primaryVerifiedEmail(bearer: Record<string, string>): Promise<string | undefined> {
      const answer = await http.json(`${config.apiUrl}/user/emails`, { headers: bearer });
      const limited = throttled(answer);
      if (limited) throw refusalError('github', '/user/emails', answer, limited);
      const primary =
        Array.isArray(answer.body) && answer.status === 200
          ? answer.body.find((entry) => isObject(entry) && entry.primary === true && entry.verified === true)
          : undefined;
      return isObject(primary) ? text(primary, 'email') : undefined;
    }

    return {
      name: 'github',
      async verify(input, options) {
        const token = requireField(input, 'access_token', 'github');
        // Asked for now, the profile is read beside the token check; its failure counts once awaited.
        const profile = options?.profile === false ? undefined : readProfile(token);
        profile?.catch(() => {});
        const owner = await checkToken(token);
        return account(
          { uid: String(owner.id), username: owner.login },
          { id: owner.id, login: owner.login ?? null },
          {
            // Kept as they are by a sign-in that does not read the profile.
            keptFacts: ['name', 'email', 'profile_read_at'],
            async loadProfile() {
              const read = await (profile ?? readProfile(token));
              if (read.id !== owner.id)
                throw new InvalidTokenError('the token belongs to another user than /user answered');
              return read.profile;
            },
          },
        );
      },
    };
  },
};

/** /user/emails needs the user:email (or user) scope; classic OAuth tokens list theirs in X-OAuth-Scopes. */
function mayReadEmails(scopesHeader: string | string[] | undefined): boolean {
  const scopes = String(scopesHeader ?? '')
    .split(',')
    .map((scope) => scope.trim());
  return scopes.includes('user:email') || scopes.includes('user');
}
