import { ConfigError } from '../../lib/settings.js';
import { InvalidTokenError } from '../../lib/errors.js';
import { text } from '../../lib/narrowing.js';
import { defineProvider } from '../define.js';
import { claimsAccount, vouchesFor } from './account.js';
import { tokeninfoRefusal } from './refusals.js';
import { readSecurityEvent, securityEventTokens } from './security-events.js';

/**
 * Google Sign-In. The native SDKs hand the app an ID token, verified here against Google's published keys
 * without a network call. It binds on `aud` alone, as Google's backend guide says: a native app asking for
 * a token for its backend gets aud = the web client id and azp = its own Android/iOS client id. An access
 * token is accepted too, checked with tokeninfo, whose aud/azp must be one of our client ids.
 * Sources: test/fixtures/providers/google/.
 */
export const google = defineProvider({
  name: 'google',
  emailTrust: 'verified',
  tokens: ['id_token', 'access_token'],

  settings(s) {
    /** Our OAuth client ids: the web ("server") client id, and any iOS id asked for without serverClientID. */
    const clientIds = s.list('KEY');
    if (clientIds.length === 0) {
      if (s.string('SECRET')) throw new ConfigError(`${s.variable('KEY')} must list the client ids`);
      return undefined;
    }
    return {
      clientIds,
      jwksUrl: s.url('JWKS_URL', 'https://www.googleapis.com/oauth2/v3/certs'),
      tokeninfoUrl: s.url('TOKENINFO_URL', 'https://oauth2.googleapis.com/tokeninfo'),
      nonceRule: s.nonceRule(),
    };
  },

  setup: ({ config: { clientIds, jwksUrl, nonceRule }, idTokenVerifier }) => ({
    idTokens: idTokenVerifier({
      jwksUrl,
      issuers: ['https://accounts.google.com', 'accounts.google.com'],
      audiences: clientIds,
      algorithms: ['RS256'],
      nonceRule,
    }),
    securityEvents: idTokenVerifier(securityEventTokens(jwksUrl, clientIds)),
  }),

  async prove(form, { id_token, access_token, nonce }, { config, idTokens, call, nonceNeedsIdToken, unavailable }) {
    if (form === 'id_token') {
      const claims = await idTokens.verify(id_token!, nonce);
      return { facts: claims, idToken: idTokens.proof(id_token!, claims, nonce) };
    }
    // An access token carries no nonce: refused when the operator requires one.
    if (config.nonceRule !== 'optional') throw nonceNeedsIdToken();
    const url = `${config.tokeninfoUrl}?${new URLSearchParams({ access_token: access_token! })}`;
    const info = await call('tokeninfo', url, tokeninfoRefusal);
    if (!config.clientIds.some((id) => id === text(info, 'aud') || id === text(info, 'azp')))
      throw new InvalidTokenError('the token was issued to another app');
    if (Number(info.expires_in ?? 0) <= 0) throw new InvalidTokenError('the token has expired');
    if (!text(info, 'sub')) throw unavailable('answered tokeninfo without sub');
    return { facts: info };
  },

  account: claimsAccount,
  vouchesFor, // Gmail addresses and Workspace accounts only (account.ts)

  callbacks: {
    verifySecurityEvent: (token, ctx) => readSecurityEvent(token, ctx.securityEvents, ctx.config.clientIds),
  },
  warmUp: ({ idTokens }) => idTokens.warmUp(),
});
