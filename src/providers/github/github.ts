import { isObject, text } from '../../lib/narrowing.js';
import { defineProvider } from '../define.js';
import { checkTokenRefusal } from './refusals.js';
import { HEADERS, readUser, userAccount } from './user.js';

/**
 * GitHub with an OAuth app's user token. POST /applications/{client_id}/token ("Check a token", basic auth
 * with our client id and secret) proves it was issued to OUR OAuth app — GitHub answers 404 for a token of
 * any other app — and names its user: that alone signs in a linked account. The profile (GET /user) and,
 * when the token's scopes allow, the primary verified e-mail are read when needed (user.ts). What GitHub's
 * error answers mean: refusals.ts. Sources: test/fixtures/providers/github/.
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
    read: (token, ctx) => readUser(token, ctx.config.apiUrl, ctx),
    account: userAccount,
  },
});
