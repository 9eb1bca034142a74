import { createHmac } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { ConfigError } from '../../lib/settings.js';
import { InvalidTokenError } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import type { Refusal, RefusalReader } from '../answers.js';
import { defineProvider, type Proof } from '../define.js';
import { verifySignedRequest } from './signed-request.js';

/**
 * Facebook Login from the native SDK: an OAuth 2 user access token (or, on iOS, a Limited Login ID token).
 * GET /debug_token with our app token proves the token is valid, was issued to OUR app, and names its user —
 * without it, a token any other Facebook app obtained from the user would sign in here (an account takeover).
 * Graph inspects only tokens of the app that asks: another app's token answers 400 (#100). The profile (GET /me,
 * signed with appsecret_proof) is read only when needed (profile.ts). Sources: test/fixtures/providers/facebook/.
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

  setup: ({ config, idTokenVerifier }) => ({
    limitedLogin: idTokenVerifier({
      jwksUrl: config.limitedJwksUrl,
      // Meta's SDK takes any facebook.com host as issuer (facebook-ios-sdk, AuthenticationTokenClaims.swift).
      issuers: ['https://www.facebook.com', 'https://limited.facebook.com'],
      audiences: [config.appId],
      algorithms: ['RS256'],
      nonceRule: config.limitedNonceRule,
    }),
    appAccessToken: `${config.appId}|${config.appSecret}`,
  }),

  async prove(form, { id_token, access_token, nonce }, ctx): Promise<Proof<Facts>> {
    const { config, limitedLogin, call, unavailable } = ctx;
    if (form === 'id_token') {
      const claims = await limitedLogin.verify(id_token!, nonce);
      return { facts: { limited: claims }, idToken: limitedLogin.proof(id_token!, claims, nonce) };
    }
    const query = new URLSearchParams({ input_token: access_token!, access_token: ctx.appAccessToken });
    const { data } = await call('debug_token', `${config.graphUrl}/debug_token?${query}`, debugTokenRefusal);
    if (!isObject(data)) throw unavailable('answered debug_token without data');
    if (data.is_valid !== true) throw new InvalidTokenError('the token is invalid or expired');
    if (text(data, 'app_id') !== config.appId) throw new InvalidTokenError('the token was issued to another app');
    if (!text(data, 'user_id')) throw new InvalidTokenError('the token is not a user access token');
    return { facts: { debugged: data } };
  },

  account: ({ limited, debugged = {} }) =>
    limited
      ? {
          ...person(limited, String(limited.sub), 'given_name', 'family_name'),
          extraData: {
            id: limited.sub,
            name: text(limited, 'name') ?? null,
            email: text(limited, 'email') ?? null,
            expires_at: limited.exp ?? null,
            limited_login: true,
          },
        }
      : {
          uid: text(debugged, 'user_id')!,
          extraData: {
            id: text(debugged, 'user_id'),
            expires_at: typeof debugged.expires_at === 'number' && debugged.expires_at > 0 ? debugged.expires_at : null,
            scopes: Array.isArray(debugged.scopes) ? debugged.scopes : [],
          },
        },

  profile: {
    form: 'access_token',
    what: '/me',
    kept: ['name', 'email', 'profile_read_at'],
    read(token, { config, call }) {
      const query = new URLSearchParams({
        fields: 'id,name,email,first_name,last_name',
        access_token: token,
        appsecret_proof: createHmac('sha256', config.appSecret).update(token).digest('hex'),
      });
      return call('/me', `${config.graphUrl}/me?${query}`, meRefusal);
    },
    account: (me) => ({
      ...person(me, text(me, 'id') ?? '', 'first_name', 'last_name'),
      extraData: { name: text(me, 'name') ?? null, email: text(me, 'email') ?? null },
    }),
  },

  callbacks: { verifySignedRequest: (signed, { config }) => verifySignedRequest(signed, config.appSecret) },
});

/** A Limited Login token's claims, or debug_token's data about an access token. */
type Facts = { limited?: JWTPayload; debugged?: Record<string, unknown> };

const person = (facts: Record<string, unknown>, uid: string, given: string, family: string) => ({
  uid,
  name: text(facts, 'name'),
  email: text(facts, 'email'),
  first_name: text(facts, given),
  last_name: text(facts, family),
});

/** Graph's codes for throttling: application, user, page, custom and business use case limits. */
const RATE_LIMIT_CODES = new Set([4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014]);

/** Graph's error answer, {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}: its code read per endpoint. */
const graphError =
  (endpoint: string, known: Record<number, Refusal>): RefusalReader =>
  ({ status, body }) => {
    const code = isObject(body) && isObject(body.error) ? body.error.code : undefined;
    if (status < 400 || status >= 500 || typeof code !== 'number') return undefined;
    if (known[code]) return known[code];
    if (RATE_LIMIT_CODES.has(code)) return { throttled: `Graph error ${code}` };
    return { outage: `answered ${endpoint} with Graph error ${code}` };
  };

/** debug_token: #100 is a token of another app, 190 our app token refused; 1 and 2 (internal, also sent with 400) are Graph's. */
const debugTokenRefusal = graphError('debug_token', {
  100: { token: 'the token was issued to another app' },
  190: {
    app: 'Graph error 190 on debug_token',
    hint: 'check SOCIAL_AUTH_FACEBOOK_KEY and SOCIAL_AUTH_FACEBOOK_SECRET (the app id and app secret)',
  },
});

/** /me (after debug_token proved the token ours): 190 the token died meanwhile, #100 a proof our secret made wrong. */
const expired = { token: 'the token is invalid or expired' };
const meRefusal = graphError('/me', {
  190: expired,
  102: expired,
  2500: expired,
  100: {
    app: 'Graph refused our appsecret_proof on /me',
    hint: 'check SOCIAL_AUTH_FACEBOOK_SECRET: it must be the secret of the app SOCIAL_AUTH_FACEBOOK_KEY names',
  },
});
