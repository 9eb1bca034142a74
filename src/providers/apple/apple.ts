import type { JWTPayload } from 'jose';
import { ConfigError } from '../../lib/settings.js';
import { InvalidTokenError, invalidRequest } from '../../lib/errors.js';
import { flag, isObject, text } from '../../lib/narrowing.js';
import { AppleApi, appleSigningSettings, APPLE_ISSUER, type AppleSigning } from './api.js';
import { redeemCode } from './code.js';
import { defineProvider, type Proof } from '../define.js';
import { nonceMatches } from '../id-token.js';
import type { NonceRule, TokenInput } from '../types.js';

/**
 * Sign in with Apple. The identity token is verified against Apple's keys. When the app also sends the
 * authorization code and the team key is configured, the code is redeemed (api.ts) and the refresh
 * token kept, so that unlinking revokes it (App Store rules for account deletion); see code.ts.
 *
 * Nonce: Apple copies the nonce the app set on its request into the token unchanged. Many apps set the
 * SHA-256 (hex) of a raw nonce and send us the raw one (Firebase's convention), others set and send the
 * same value: the token's nonce must equal what the app sent, or its SHA-256. A device that cannot do
 * nonces says `nonce_supported: false` and leaves the nonce out.
 *
 * The user's name is never in the token: Apple gives it to the app once, on the first authorization
 * (`user`: {name: {firstName, lastName}, email}). It is kept for display, never used for identity.
 * Sources: test/fixtures/providers/apple/.
 */
export const apple = defineProvider({
  name: 'apple',
  emailTrust: 'verified',
  tokens: ['id_token', 'code'],

  settings(s): AppleConfig | undefined {
    const clientIds = s.list('KEY');
    if (clientIds.length === 0) return undefined;
    return {
      clientIds,
      jwksUrl: s.url('JWKS_URL', `${APPLE_ISSUER}/auth/keys`),
      apiUrl: s.url('API_URL', APPLE_ISSUER),
      signing: appleSigningSettings(s.settings),
      redirectUris: redirectUrisOf(s.variable('REDIRECT_URIS'), s.list('REDIRECT_URIS'), clientIds),
      nonceRule: s.nonceRule(),
    };
  },

  setup({ name, config: { clientIds, redirectUris, ...config }, http, idTokenVerifier }) {
    const { jwksUrl, nonceRule } = config;
    const idTokens = idTokenVerifier({
      jwksUrl,
      issuers: [APPLE_ISSUER],
      audiences: clientIds,
      algorithms: ['RS256'],
      nonceAccepted,
      nonceRule,
    });
    const api = config.signing && new AppleApi(http, config.apiUrl, config.signing);
    return { idTokens, api, redemption: api && { provider: name, api, idTokens, clientIds, redirectUris } };
  },

  async prove(form, input, ctx): Promise<Proof<Facts>> {
    const { idTokens, redemption } = ctx;
    const name = userName(input.user);
    const claims = form === 'id_token' ? await idTokens.verify(input.id_token!, input.nonce) : undefined;
    if (input.code && redemption) {
      const { facts, ...kept } = await redeemCode(redemption, input.code, claims, input);
      return { facts: { claims: facts, name }, ...kept };
    }
    // The app can send its id_token instead; the server's settings are the operator's to complete.
    if (!claims)
      throw invalidRequest(
        `id_token is required for ${ctx.name}: this server cannot redeem codes (no Sign in with Apple key is configured)`,
      );
    return { facts: { claims, name }, idToken: idTokens.proof(input.id_token!, claims, input.nonce) };
  },

  account: ({ claims, name }) => ({
    uid: String(claims.sub),
    name: [name.first_name, name.last_name].filter(Boolean).join(' ') || undefined,
    email: text(claims, 'email'),
    email_verified: flag(claims.email_verified),
    ...name,
    extraData: {
      sub: claims.sub,
      email: text(claims, 'email') ?? null,
      email_verified: flag(claims.email_verified),
      is_private_email: flag(claims.is_private_email),
      real_user_status: typeof claims.real_user_status === 'number' ? claims.real_user_status : null,
      expires_at: claims.exp ?? null,
      ...(name.first_name ? { first_name: name.first_name } : {}),
      ...(name.last_name ? { last_name: name.last_name } : {}),
    },
    // Apple gives the name once: a later sign-in without it never erases the one kept.
    keptFacts: (['first_name', 'last_name'] as const).filter((key) => !name[key]),
    // After an app transfer, for Apple's transition window: the user's transfer identifier (core/apple-transfer.ts).
    transferSub: text(claims, 'transfer_sub'),
  }),

  async revoke(tokens, { api }) {
    if (api && tokens.refresh_token && tokens.client_id) await api.revoke(tokens.client_id, tokens.refresh_token);
  },
  warmUp: ({ idTokens }) => idTokens.warmUp(),

  callbacks: {
    // Server-to-server notifications: {"payload": JWT}, its `events` a JSON text (or an object, as Apple's page
    // shows it) of {type, sub, email?, event_time} (test/fixtures/callbacks/apple/).
    async verifyNotification(payload, { idTokens }) {
      const claims = await idTokens.verifyEvent(payload);
      let events: unknown = claims.events;
      if (typeof events === 'string') {
        try {
          events = JSON.parse(events);
        } catch {
          throw new InvalidTokenError('the notification events are not JSON');
        }
      }
      const event = Array.isArray(events) ? events[0] : events;
      if (!isObject(event) || !text(event, 'type') || !text(event, 'sub'))
        throw new InvalidTokenError('the notification names no event type or account');
      return {
        type: text(event, 'type')!,
        uid: text(event, 'sub')!,
        id: typeof claims.jti === 'string' ? claims.jti : undefined,
        email: text(event, 'email'),
        issuedAt: claims.iat,
      };
    },
  },
});

/** What `apple.configure` reads (the apple CLI redeems and revokes with it too). */
export interface AppleConfig {
  /** Bundle ids (native apps) and services ids (web): the accepted audiences. */
  clientIds: string[];
  jwksUrl: string;
  apiUrl: string;
  /** For redeeming codes and revoking tokens: the team's Sign in with Apple key. */
  signing?: AppleSigning;
  /** Services ID -> the redirect URIs registered for its web flow (SOCIAL_AUTH_APPLE_REDIRECT_URIS); the first is the default. */
  redirectUris: Record<string, string[]>;
  nonceRule: NonceRule;
}
type Facts = { claims: JWTPayload; name: Name };

type Name = { first_name?: string; last_name?: string };

/** The token's nonce is what the app sent, or its SHA-256 in hex; a device without nonce support may leave it out. */
function nonceAccepted(claims: JWTPayload, sent: string): boolean {
  if (claims.nonce === undefined) return claims.nonce_supported === false || claims.nonce_supported === 'false';
  return nonceMatches(claims, sent);
}

/** Control characters and lone UTF-16 surrogates (a pair is one code point, kept). */
const UNKEEPABLE = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The name from the `user` JSON of the first authorization (an object, or the JSON text a web form post carries). */
function userName(user: TokenInput['user']): Name {
  if (user === undefined) return {};
  let parsed: unknown = user;
  if (typeof user === 'string') {
    try {
      parsed = JSON.parse(user);
    } catch {
      throw invalidRequest('user must be the JSON object Sign in with Apple gave the app');
    }
  }
  const name = isObject(parsed) && isObject(parsed.name) ? parsed.name : {};
  // The name is kept for display only (in jsonb on PostgreSQL, which refuses NUL and lone surrogates), never
  // for identity: what cannot be kept is stripped rather than refused, so that a garbled name never costs
  // the person their sign-in. Stripped: control characters (NUL among them) and lone UTF-16 surrogates; the
  // 150-character bound counts code points, so that it never cuts a pair in two.
  const part = (key: string) => {
    const clean = text(name, key)?.replace(UNKEEPABLE, '').trim();
    return clean ? Array.from(clean).slice(0, 150).join('').trim() || undefined : undefined;
  };
  return { first_name: part('firstName'), last_name: part('lastName') };
}

/**
 * SOCIAL_AUTH_APPLE_REDIRECT_URIS: `services.id=https://…` pairs, comma-separated; a Services ID may have several.
 * Apple requires https with a domain name for a web flow's redirect URI.
 */
function redirectUrisOf(name: string, pairs: string[], clientIds: readonly string[]): Record<string, string[]> {
  const uris: Record<string, string[]> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    const clientId = pair.slice(0, at).trim();
    const uri = pair.slice(at + 1).trim();
    if (at <= 0 || !clientIds.includes(clientId))
      throw new ConfigError(
        `${name}: "${pair}" must be <client id>=<redirect URI>, with a client id of SOCIAL_AUTH_APPLE_KEY`,
      );
    let parsed: URL | undefined;
    try {
      parsed = new URL(uri);
    } catch {
      parsed = undefined;
    }
    if (parsed?.protocol !== 'https:')
      throw new ConfigError(
        `${name}: the redirect URI of ${clientId} must be an https URL, as Apple requires, got "${uri}"`,
      );
    (uris[clientId] ??= []).push(uri);
  }
  return uris;
}
