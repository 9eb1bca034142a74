import { ConfigError } from '../config/settings.js';
import { InvalidTokenError, ProviderUnavailableError } from '../core/errors.js';
import { claimString, verifyIdToken } from './id-token.js';
import { JwksCache } from './jwks.js';
import { isObject, stringField } from './http.js';
import { requireOneOf } from './fields.js';
import type { ProviderModule, SocialIdentity } from './types.js';

export interface GoogleConfig {
  /** Our OAuth client ids: iOS, Android and web ids differ, so a list. */
  clientIds: string[];
  jwksUrl: string;
  tokeninfoUrl: string;
}

const ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];

/**
 * Google Sign-In. The native SDKs hand the app an ID token, verified here against Google's published
 * keys without a network call; an access token is accepted too, checked with tokeninfo, whose
 * aud/azp must be one of our client ids.
 */
export const google: ProviderModule<GoogleConfig> = {
  name: 'google',

  configure(settings) {
    const clientIds = settings.list('SOCIAL_AUTH_GOOGLE_KEY');
    if (clientIds.length === 0) {
      if (settings.string('SOCIAL_AUTH_GOOGLE_SECRET')) throw new ConfigError('SOCIAL_AUTH_GOOGLE_KEY must list the client ids');
      return undefined;
    }
    return {
      clientIds,
      jwksUrl: settings.url('SOCIAL_AUTH_GOOGLE_JWKS_URL', 'https://www.googleapis.com/oauth2/v3/certs'),
      tokeninfoUrl: settings.url('SOCIAL_AUTH_GOOGLE_TOKENINFO_URL', 'https://oauth2.googleapis.com/tokeninfo'),
    };
  },

  create(config, { http }) {
    const jwks = new JwksCache(http, config.jwksUrl);
    const policy = { jwks, issuers: ISSUERS, audiences: config.clientIds, algorithms: ['RS256'] };

    return {
      name: 'google',
      warmUp: () => jwks.warmUp(),
      async verify(input) {
        const form = requireOneOf(input, ['id_token', 'access_token'], 'google');
        if (form === 'id_token') {
          const claims = await verifyIdToken(input.id_token!, policy, input.nonce);
          return identity(claims.sub!, claims);
        }
        const { status, body } = await http.json(`${config.tokeninfoUrl}?${new URLSearchParams({ access_token: input.access_token! })}`);
        if (status >= 400 && status < 500) throw new InvalidTokenError('the token is invalid or expired');
        if (status !== 200 || !isObject(body)) throw new ProviderUnavailableError('google', `answered tokeninfo with HTTP ${status}`);
        const audience = stringField(body, 'aud');
        const party = stringField(body, 'azp');
        if (!config.clientIds.some((id) => id === audience || id === party)) {
          throw new InvalidTokenError('the token was issued to another app');
        }
        if (Number(body.expires_in ?? 0) <= 0) throw new InvalidTokenError('the token has expired');
        const sub = stringField(body, 'sub');
        if (!sub) throw new ProviderUnavailableError('google', 'answered tokeninfo without sub');
        return identity(sub, body);
      },
    };
  },
};

function identity(sub: string, claims: Record<string, unknown>): SocialIdentity {
  const email = claimString(claims, 'email');
  const name = claimString(claims, 'name');
  return {
    uid: sub,
    details: {
      username: name,
      email,
      fullname: name,
      first_name: claimString(claims, 'given_name'),
      last_name: claimString(claims, 'family_name'),
    },
    extraData: {
      sub,
      email: email ?? null,
      email_verified: claims.email_verified === true || claims.email_verified === 'true',
      name: name ?? null,
      hd: claimString(claims, 'hd') ?? null,
      expires_at: typeof claims.exp === 'number' ? claims.exp : Number(claims.exp) || null,
    },
  };
}
