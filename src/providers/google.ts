import { googleIsAuthoritative } from '../store/verified-email.js';
import { InvalidTokenError, ProviderUnavailableError, invalidRequest } from '../lib/errors.js';
import { ConfigError } from '../lib/settings.js';
import { accepted, account } from './answers.js';
import { flag, isObject, text } from '../lib/narrowing.js';
import { requireOneOf } from './fields.js';
import { idTokenVerifier, nonceRuleOf } from './id-token.js';
import type { NonceRule, ProviderModule, SocialIdentity } from './types.js';

/**
 * Google Sign-In. The native SDKs hand the app an ID token, verified here against Google's published keys
 * without a network call. It binds on `aud` alone, as Google's backend guide says: a native app asking for
 * a token for its backend gets aud = the web client id and azp = its own Android/iOS client id. An access
 * token is accepted too, checked with tokeninfo, whose aud/azp must be one of our client ids.
 * Sources: test/fixtures/providers/google/.
 */
export interface GoogleConfig {
  /** Our OAuth client ids: the web ("server") client id, and any iOS id asked for without serverClientID. */
  clientIds: string[];
  jwksUrl: string;
  tokeninfoUrl: string;
  nonceRule: NonceRule;
}

const ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];

export const google: ProviderModule<GoogleConfig> = {
  name: 'google',
  emailTrust: 'verified',

  configure(settings) {
    const clientIds = settings.list('SOCIAL_AUTH_GOOGLE_KEY');
    if (clientIds.length === 0) {
      if (settings.string('SOCIAL_AUTH_GOOGLE_SECRET'))
        throw new ConfigError('SOCIAL_AUTH_GOOGLE_KEY must list the client ids');
      return undefined;
    }
    return {
      clientIds,
      jwksUrl: settings.url('SOCIAL_AUTH_GOOGLE_JWKS_URL', 'https://www.googleapis.com/oauth2/v3/certs'),
      tokeninfoUrl: settings.url('SOCIAL_AUTH_GOOGLE_TOKENINFO_URL', 'https://oauth2.googleapis.com/tokeninfo'),
      nonceRule: nonceRuleOf(settings, 'SOCIAL_AUTH_GOOGLE_REQUIRE_NONCE'),
    };
  },

  create(config, context) {
    const { http } = context;
    const idTokens = idTokenVerifier(context, {
      jwksUrl: config.jwksUrl,
      issuers: ISSUERS,
      audiences: config.clientIds,
      algorithms: ['RS256'],
      nonceRule: config.nonceRule,
    });

    // Cross-Account Protection: Google's security event tokens, signed with the same keys; their issuer is written
    // with a trailing slash in Google's example and without in its configuration document (test/fixtures/callbacks/google/).
    // Their audience is any client id of the Google project: one not ours is acknowledged and ignored (core/provider-callbacks.ts).
    const securityEvents = idTokenVerifier(context, {
      jwksUrl: config.jwksUrl,
      issuers: ['https://accounts.google.com/', 'https://accounts.google.com'],
      audiences: config.clientIds,
      algorithms: ['RS256'],
    });

    return {
      name: 'google',
      warmUp: () => idTokens.warmUp(),
      async verifySecurityEvent(token) {
        const claims = await securityEvents.verifyEvent(token, { anyAudience: true });
        // Every audience ours: acted on; none: another client of the project, acknowledged; a mix is no event Google sends.
        const audiences = [claims.aud].flat();
        const ours = audiences.filter(
          (audience) => typeof audience === 'string' && config.clientIds.includes(audience),
        ).length;
        if (ours > 0 && ours < audiences.length)
          throw new InvalidTokenError('the event token names an audience that is not ours (aud)');
        const forAnotherClient = ours === 0;
        const events = claims.events;
        const [uri, event] = isObject(events) ? (Object.entries(events)[0] ?? []) : [];
        if (typeof uri !== 'string' || !isObject(event))
          throw new InvalidTokenError('the security event token carries no event');
        const subject = isObject(event.subject) ? event.subject : {};
        return {
          type: uri.slice(uri.lastIndexOf('/') + 1),
          uid: text(subject, 'sub') ?? '',
          id: typeof claims.jti === 'string' ? claims.jti : undefined,
          reason: text(event, 'reason'),
          issuedAt: claims.iat,
          forAnotherClient,
        };
      },
      async verify(input) {
        if (requireOneOf(input, ['id_token', 'access_token'], 'google') === 'id_token') {
          const claims = await idTokens.verify(input.id_token!, input.nonce);
          return { ...identity(claims), idToken: idTokens.proof(input.id_token!, claims, input.nonce) };
        }
        // An access token carries no nonce: refused when the operator requires one.
        if (config.nonceRule !== 'optional')
          throw invalidRequest(
            'id_token is required for google: this server requires a nonce (SOCIAL_AUTH_GOOGLE_REQUIRE_NONCE)',
          );
        const answer = await http.json(
          `${config.tokeninfoUrl}?${new URLSearchParams({ access_token: input.access_token! })}`,
        );
        // tokeninfo answers 400 for any token it cannot accept (unknown, expired, forged).
        const info = accepted('google', 'tokeninfo', answer, ({ status }) =>
          status === 400 || status === 401 ? { token: 'the token is invalid or expired' } : undefined,
        );
        if (!config.clientIds.some((id) => id === text(info, 'aud') || id === text(info, 'azp')))
          throw new InvalidTokenError('the token was issued to another app');
        if (Number(info.expires_in ?? 0) <= 0) throw new InvalidTokenError('the token has expired');
        if (!text(info, 'sub')) throw new ProviderUnavailableError('google', 'answered tokeninfo without sub');
        return identity(info);
      },
    };
  },
};

/** An ID token's claims, or tokeninfo's answer (the same names, every value a string). */
function identity(claims: Record<string, unknown>): SocialIdentity {
  const sub = String(claims.sub);
  // email_verified: a boolean in ID tokens, the text "true" in tokeninfo's answer; and Google is the authority.
  const email = text(claims, 'email');
  const verified = flag(claims.email_verified) && email !== undefined && googleIsAuthoritative(email, claims.hd);
  const facts = {
    uid: sub,
    name: text(claims, 'name'),
    email,
    email_verified: verified,
    first_name: text(claims, 'given_name'),
    last_name: text(claims, 'family_name'),
  };
  return account(facts, {
    sub,
    email: facts.email ?? null,
    email_verified: flag(claims.email_verified),
    name: facts.name ?? null,
    hd: text(claims, 'hd') ?? null,
    expires_at: Number(claims.exp) || null,
  });
}
