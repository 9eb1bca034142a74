import { ConfigError } from '../../lib/settings.js';
import { InvalidTokenError } from '../../lib/errors.js';
import { flag, isObject, text } from '../../lib/narrowing.js';
import { normalizeEmail } from '../../store/verified-email.js';
import { byStatus } from '../answers.js';
import { defineProvider } from '../define.js';

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
    // Cross-Account Protection: security event tokens, signed with the same keys; their issuer is written with a trailing
    // slash in Google's example and without in its configuration document (test/fixtures/callbacks/google/).
    securityEvents: idTokenVerifier({
      jwksUrl,
      issuers: ['https://accounts.google.com/', 'https://accounts.google.com'],
      audiences: clientIds,
      algorithms: ['RS256'],
    }),
  }),

  async prove(form, { id_token, access_token, nonce }, { config, idTokens, call, nonceNeedsIdToken, unavailable }) {
    if (form === 'id_token') {
      const claims = await idTokens.verify(id_token!, nonce);
      return { facts: claims, idToken: idTokens.proof(id_token!, claims, nonce) };
    }
    // An access token carries no nonce: refused when the operator requires one.
    if (config.nonceRule !== 'optional') throw nonceNeedsIdToken();
    const url = `${config.tokeninfoUrl}?${new URLSearchParams({ access_token: access_token! })}`;
    // tokeninfo answers 400 for any token it cannot accept (unknown, expired, forged).
    const info = await call('tokeninfo', url, byStatus({ 400: INVALID, 401: INVALID }));
    if (!config.clientIds.some((id) => id === text(info, 'aud') || id === text(info, 'azp')))
      throw new InvalidTokenError('the token was issued to another app');
    if (Number(info.expires_in ?? 0) <= 0) throw new InvalidTokenError('the token has expired');
    if (!text(info, 'sub')) throw unavailable('answered tokeninfo without sub');
    return { facts: info };
  },

  /** An ID token's claims, or tokeninfo's answer: the same names, every value a string (email_verified "true"). */
  account: (claims) => ({
    uid: String(claims.sub),
    name: text(claims, 'name'),
    email: text(claims, 'email'),
    email_verified: flag(claims.email_verified),
    first_name: text(claims, 'given_name'),
    last_name: text(claims, 'family_name'),
    extraData: {
      sub: String(claims.sub),
      email: text(claims, 'email') ?? null,
      email_verified: flag(claims.email_verified),
      name: text(claims, 'name') ?? null,
      hd: text(claims, 'hd') ?? null,
      expires_at: Number(claims.exp) || null,
    },
  }),

  /**
   * Google vouches for an address it marks verified only when it is a Gmail address or the account is in a
   * Google Workspace domain (`hd`); another address was checked once, when the account was made, and its
   * mailbox may have changed hands since (Google's "Verify the Google ID token" guide).
   */
  vouchesFor: (email, { hd }) => normalizeEmail(email).endsWith('@gmail.com') || (typeof hd === 'string' && hd !== ''),

  callbacks: {
    // Their audience is any client id of the Google project: one not ours is acknowledged and ignored (core/provider-callbacks.ts).
    async verifySecurityEvent(token, { config, securityEvents }) {
      const claims = await securityEvents.verifyEvent(token, { anyAudience: true });
      // Every audience ours: acted on; none: another client of the project, acknowledged; a mix is no event Google sends.
      const audiences = [claims.aud].flat();
      const ours = audiences.filter((aud) => typeof aud === 'string' && config.clientIds.includes(aud)).length;
      if (ours > 0 && ours < audiences.length)
        throw new InvalidTokenError('the event token names an audience that is not ours (aud)');
      const [uri, event] = isObject(claims.events) ? (Object.entries(claims.events)[0] ?? []) : [];
      if (typeof uri !== 'string' || !isObject(event))
        throw new InvalidTokenError('the security event token carries no event');
      return {
        type: uri.slice(uri.lastIndexOf('/') + 1),
        uid: text(isObject(event.subject) ? event.subject : {}, 'sub') ?? '',
        id: typeof claims.jti === 'string' ? claims.jti : undefined,
        reason: text(event, 'reason'),
        issuedAt: claims.iat,
        forAnotherClient: ours === 0,
      };
    },
  },
  warmUp: ({ idTokens }) => idTokens.warmUp(),
});

const INVALID = { token: 'the token is invalid or expired' };
