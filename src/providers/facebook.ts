import { verifySignedRequest } from './signed-request.js';
import { createHmac } from 'node:crypto';
import { ConfigError } from '../lib/settings.js';
import { InvalidTokenError, ProviderUnavailableError } from '../lib/errors.js';
import { accepted, account, type RefusalReader } from './answers.js';
import { isObject, text } from '../lib/narrowing.js';
import { requireOneOf } from './fields.js';
import { idTokenVerifier, nonceRuleOf } from './id-token.js';
import type { NonceRule, ProviderModule } from './types.js';

/**
 * Facebook Login from the native SDK: an OAuth 2 user access token (or, on iOS, a Limited Login ID token).
 *
 * GET /debug_token with our app token proves the token is valid, was issued to OUR app, and names its user —
 * without it, a token any other Facebook app obtained from the user would sign in here (an account
 * takeover). Graph inspects only tokens of the app that asks: another app's token answers 400 (#100).
 * The profile (GET /me, signed with appsecret_proof) is read only when needed (see profile.ts): a sign-in
 * of a linked account is one Graph call. Sources: test/fixtures/providers/facebook/.
 */
export interface FacebookConfig {
  appId: string;
  appSecret: string;
  graphUrl: string;
  limitedJwksUrl: string;
  /** For Limited Login's ID tokens only: a classic access token has no nonce. */
  limitedNonceRule: NonceRule;
}

/**
 * Limited Login's issuer: https://www.facebook.com in the tokens recorded (fixtures); Meta has since moved Limited
 * Login's endpoints to limited.facebook.com, and its own SDK takes any facebook.com host as issuer
 * (facebook/facebook-ios-sdk, AuthenticationTokenClaims.swift). Both are Meta's, with the same keys.
 */
const LIMITED_LOGIN_ISSUERS = ['https://www.facebook.com', 'https://limited.facebook.com'];
/** What the profile read adds to extra_data: kept as they are by a sign-in that does not read it. */
const PROFILE_FACTS = ['name', 'email', 'profile_read_at'];
/** Graph's codes for throttling: application, user, page, custom and business use case limits. */
const RATE_LIMIT_CODES = new Set([4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014]);
const APP_HINT = 'check SOCIAL_AUTH_FACEBOOK_KEY and SOCIAL_AUTH_FACEBOOK_SECRET (the app id and app secret)';

/** Graph's error answer: {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}, its code read per endpoint. */
const graphCode = ({ body }: { body: unknown }) =>
  isObject(body) && isObject(body.error) && typeof body.error.code === 'number' ? body.error.code : undefined;

const throttled = (code: number | undefined) =>
  code !== undefined && RATE_LIMIT_CODES.has(code) ? { throttled: `Graph error ${code}` } : undefined;

/** debug_token: #100 is a token of another app, 190 our app token refused; 1 and 2 (internal, also sent with 400) are Graph's. */
const debugTokenRefusal: RefusalReader = (answer) => {
  const code = graphCode(answer);
  if (answer.status < 400 || answer.status >= 500 || code === undefined) return undefined;
  if (code === 100) return { token: 'the token was issued to another app' };
  if (code === 190) return { app: 'Graph error 190 on debug_token', hint: APP_HINT };
  return throttled(code) ?? { outage: `answered debug_token with Graph error ${code}` };
};

/** /me (after debug_token proved the token ours): 190 the token died meanwhile, #100 a proof our secret made wrong. */
const meRefusal: RefusalReader = (answer) => {
  const code = graphCode(answer);
  if (answer.status < 400 || answer.status >= 500 || code === undefined) return undefined;
  if (code === 190 || code === 102 || code === 2500) return { token: 'the token is invalid or expired' };
  if (code === 100)
    return {
      app: 'Graph refused our appsecret_proof on /me',
      hint: 'check SOCIAL_AUTH_FACEBOOK_SECRET: it must be the secret of the app SOCIAL_AUTH_FACEBOOK_KEY names',
    };
  return throttled(code) ?? { outage: `answered /me with Graph error ${code}` };
};

export const facebook: ProviderModule<FacebookConfig> = {
  name: 'facebook',
  emailTrust: 'never',

  configure(settings) {
    const app = settings.credentials('FACEBOOK');
    if (!app) return undefined;
    const version = settings.string('SOCIAL_AUTH_FACEBOOK_API_VERSION', 'v23.0').replace(/^v?/, 'v');
    if (!/^v\d+\.\d+$/.test(version))
      throw new ConfigError(`SOCIAL_AUTH_FACEBOOK_API_VERSION must look like v23.0, got "${version}"`);
    return {
      appId: app.key,
      appSecret: app.secret,
      graphUrl: `${settings.url('SOCIAL_AUTH_FACEBOOK_API_URL', 'https://graph.facebook.com')}/${version}`,
      limitedJwksUrl: settings.url(
        'SOCIAL_AUTH_FACEBOOK_LIMITED_JWKS_URL',
        'https://limited.facebook.com/.well-known/oauth/openid/jwks/',
      ),
      limitedNonceRule: nonceRuleOf(settings, 'SOCIAL_AUTH_FACEBOOK_REQUIRE_NONCE'),
    };
  },

  create(config, context) {
    const { http } = context;
    const limitedLogin = idTokenVerifier(context, {
      jwksUrl: config.limitedJwksUrl,
      issuers: LIMITED_LOGIN_ISSUERS,
      audiences: [config.appId],
      algorithms: ['RS256'],
      nonceRule: config.limitedNonceRule,
    });
    const appAccessToken = `${config.appId}|${config.appSecret}`;

    const debugToken = async (token: string) => {
      const query = new URLSearchParams({ input_token: token, access_token: appAccessToken });
      const { data } = accepted(
        'facebook',
        'debug_token',
        await http.json(`${config.graphUrl}/debug_token?${query}`),
        debugTokenRefusal,
      );
      if (!isObject(data)) throw new ProviderUnavailableError('facebook', 'answered debug_token without data');
      if (data.is_valid !== true) throw new InvalidTokenError('the token is invalid or expired');
      if (text(data, 'app_id') !== config.appId) throw new InvalidTokenError('the token was issued to another app');
      const userId = text(data, 'user_id');
      if (!userId) throw new InvalidTokenError('the token is not a user access token');
      return {
        userId,
        expiresAt: typeof data.expires_at === 'number' && data.expires_at > 0 ? data.expires_at : null,
        scopes: Array.isArray(data.scopes) ? data.scopes : [],
      };
    };

    const readProfile = async (token: string) => {
      const proof = createHmac('sha256', config.appSecret).update(token).digest('hex');
      const query = new URLSearchParams({
        fields: 'id,name,email,first_name,last_name',
        access_token: token,
        appsecret_proof: proof,
      });
      return accepted('facebook', '/me', await http.json(`${config.graphUrl}/me?${query}`), meRefusal);
    };

    return {
      name: 'facebook',
      verifySignedRequest: (signedRequest) => verifySignedRequest(signedRequest, config.appSecret),
      async verify(input, options) {
        if (requireOneOf(input, ['access_token', 'id_token'], 'facebook') === 'id_token') {
          const claims = await limitedLogin.verify(input.id_token!, input.nonce);
          const facts = {
            uid: String(claims.sub),
            name: text(claims, 'name'),
            email: text(claims, 'email'),
            first_name: text(claims, 'given_name'),
            last_name: text(claims, 'family_name'),
          };
          return account(
            facts,
            {
              id: claims.sub,
              name: facts.name ?? null,
              email: facts.email ?? null,
              expires_at: claims.exp ?? null,
              limited_login: true,
            },
            { idToken: limitedLogin.proof(input.id_token!, claims, input.nonce) },
          );
        }
        const token = input.access_token!;
        // Asked for now, the profile is read beside debug_token; its failure counts once awaited.
        const profile = options?.profile === false ? undefined : readProfile(token);
        profile?.catch(() => {});
        const { userId, expiresAt, scopes } = await debugToken(token);
        return account(
          { uid: userId },
          { id: userId, expires_at: expiresAt, scopes },
          {
            details: {},
            keptFacts: PROFILE_FACTS,
            async loadProfile() {
              const me = await (profile ?? readProfile(token));
              if (text(me, 'id') !== userId)
                throw new InvalidTokenError('the token belongs to another user than /me answered');
              const facts = {
                uid: userId,
                name: text(me, 'name'),
                email: text(me, 'email'),
                first_name: text(me, 'first_name'),
                last_name: text(me, 'last_name'),
              };
              return {
                details: account(facts, {}).details,
                extraData: { name: facts.name ?? null, email: facts.email ?? null },
              };
            },
          },
        );
      },
    };
  },
};
