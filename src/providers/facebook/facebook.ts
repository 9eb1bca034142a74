import type { JWTPayload } from 'jose';
import { ConfigError } from '../../lib/settings.js';
import { defineProvider, type Proof } from '../define.js';
import { debuggedAccount, debugToken } from './debug-token.js';
import { limitedLoginAccount, limitedLoginTokens } from './limited-login.js';
import { meAccount, readMe } from './me.js';
import { verifySignedRequest } from './signed-request.js';

/**
 * Facebook Login from the native SDK: an OAuth 2 user access token (or, on iOS, a Limited Login ID token).
 * GET /debug_token with our app token proves the token is valid, was issued to OUR app, and names its user —
 * without it, a token any other Facebook app obtained from the user would sign in here (an account takeover).
 * The profile (GET /me, signed with appsecret_proof) is read only when needed (profile.ts). What Graph's error
 * answers mean: refusals.ts. Sources: test/fixtures/providers/facebook/.
 */
export const facebook = defineProvider({
  name: 'facebook',
  emailTrust: 'never',
  tokens: ['access_token', 'id_token'],

  settings(s) {
    const app = s.credentials();
    if (!app) return undefined;
    const version = s.string('API_VERSION', 'v23.0').replace(/^v?/, 'v');
    if (!/^v\d+\.\d+$/.test(version))
      throw new ConfigError(`${s.variable('API_VERSION')} must look like v23.0, got "${version}"`);
    return {
      appId: app.key,
      appSecret: app.secret,
      graphUrl: `${s.url('API_URL', 'https://graph.facebook.com')}/${version}`,
      limitedJwksUrl: s.url('LIMITED_JWKS_URL', 'https://limited.facebook.com/.well-known/oauth/openid/jwks/'),
      limitedNonceRule: s.nonceRule(), // Limited Login's ID tokens only: a classic access token has no nonce
    };
  },

  setup: ({ config, idTokenVerifier }) => ({ limitedLogin: idTokenVerifier(limitedLoginTokens(config)) }),

  async prove(form, { id_token, access_token, nonce }, ctx): Promise<Proof<Facts>> {
    const { config, limitedLogin } = ctx;
    if (form === 'access_token') return { facts: { debugged: await debugToken(access_token!, config, ctx) } };
    const claims = await limitedLogin.verify(id_token!, nonce);
    return { facts: { limited: claims }, idToken: limitedLogin.proof(id_token!, claims, nonce) };
  },

  account: ({ limited, debugged }) => (limited ? limitedLoginAccount(limited) : debuggedAccount(debugged!)),

  profile: {
    form: 'access_token',
    what: '/me',
    kept: ['name', 'email', 'profile_read_at'],
    read: (token, { config, call }) => readMe(token, config, call),
    account: meAccount,
  },

  callbacks: { verifySignedRequest: (signed, { config }) => verifySignedRequest(signed, config.appSecret) },
});

/** A Limited Login token's claims, or debug_token's data about an access token. */
type Facts = { limited?: JWTPayload; debugged?: Record<string, unknown> };
