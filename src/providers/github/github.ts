import { isObject, text } from '../../lib/narrowing.js';
import { byStatus } from '../answers.js';
import { defineProvider } from '../define.js';
import { bearer, type JsonResponse } from '../http.js';

/**
 * GitHub with an OAuth app's user token. POST /applications/{client_id}/token ("Check a token", basic auth
 * with our client id and secret) proves it was issued to OUR OAuth app — GitHub answers 404 for a token of
 * any other app — and names its user: that alone signs in a linked account. The profile (GET /user) and,
 * when the token's scopes allow, the primary verified e-mail (GET /user/emails: /user shows only the
 * public one) are read when needed (see profile.ts). Sources: test/fixtures/providers/github/.
 */
export const github = defineProvider({
  name: 'github',
  emailTrust: 'verified',
  tokens: ['access_token'],

  settings(s) {
    const app = s.credentials();
    if (!app) return undefined;
    return { clientId: app.key, clientSecret: app.secret, apiUrl: s.url('API_URL', 'https://api.github.com') };
  },

  setup: ({ config }) => ({
    basic: `Basic ${Buffer.from(`${config.clientId}:${config.clientSecret}`).toString('base64')}`,
    checkUrl: `${config.apiUrl}/applications/${encodeURIComponent(config.clientId)}/token`,
  }),

  async prove(_form, { access_token }, { basic, checkUrl, call, unavailable }) {
    const init = {
      method: 'POST' as const,
      headers: { ...HEADERS, authorization: basic, 'content-type': 'application/json' },
      body: JSON.stringify({ access_token }),
    };
    const owner = (await call('the token check', checkUrl, checkTokenRefusal, init)).user;
    if (!isObject(owner) || typeof owner.id !== 'number')
      throw unavailable('answered the token check without its user');
    return { facts: owner };
  },

  account: (owner) => ({
    uid: String(owner.id),
    username: text(owner, 'login'),
    extraData: { id: owner.id, login: text(owner, 'login') ?? null },
  }),

  profile: {
    form: 'access_token',
    what: '/user',
    kept: ['name', 'email', 'profile_read_at'],
    async read(token, { config, http, accepted, refused, unavailable }) {
      const answer = await http.json(`${config.apiUrl}/user`, bearer(token, HEADERS));
      const user = accepted('/user', answer, userRefusal);
      if (typeof user.id !== 'number') throw unavailable('answered /user without a user id');
      if (!mayReadEmails(answer.headers['x-oauth-scopes'])) return { user };
      // The primary e-mail when GitHub has verified it; none otherwise (or without the scope after all: 404).
      const emails = await http.json(`${config.apiUrl}/user/emails`, bearer(token, HEADERS));
      const limited = throttled(emails);
      if (limited) throw refused('/user/emails', emails, limited);
      const primary =
        Array.isArray(emails.body) && emails.status === 200
          ? emails.body.find((entry) => isObject(entry) && entry.primary === true && entry.verified === true)
          : undefined;
      return { user, email: isObject(primary) ? text(primary, 'email') : undefined };
    },
    // The e-mail is the primary one /user/emails marks verified (never /user's public one).
    account: ({ user, email }) => ({
      uid: String(user.id),
      name: text(user, 'name'),
      email,
      email_verified: true,
      username: text(user, 'login'),
      extraData: {
        id: user.id,
        login: text(user, 'login') ?? null,
        name: text(user, 'name') ?? null,
        email: email ?? null,
      },
    }),
  },
});

const HEADERS = { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };

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
const appRefused = (status: number) => ({
  app: `HTTP ${status} on the token check`,
  hint: 'check SOCIAL_AUTH_GITHUB_KEY and SOCIAL_AUTH_GITHUB_SECRET (the OAuth app client id and secret)',
});
const checkTokenRefusal = byStatus(
  { 404: { token: 'the token is invalid or was issued to another app' }, 401: appRefused(401), 403: appRefused(403) },
  throttled,
);
const revoked = { token: 'the token is invalid or revoked' };
const userRefusal = byStatus({ 401: revoked, 403: revoked }, throttled);

/** /user/emails needs the user:email (or user) scope; classic OAuth tokens list theirs in X-OAuth-Scopes. */
function mayReadEmails(scopesHeader: string | string[] | undefined): boolean {
  const scopes = String(scopesHeader ?? '')
    .split(',')
    .map((scope) => scope.trim());
  return scopes.includes('user:email') || scopes.includes('user');
}
