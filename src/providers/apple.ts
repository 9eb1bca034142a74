import type { JWTPayload } from 'jose';
import { ConfigError, type Settings } from '../lib/settings.js';
import { InvalidTokenError, invalidRequest, providerRefusedApp } from '../lib/errors.js';
import { account } from './answers.js';
import { flag, isObject, text } from '../lib/narrowing.js';
import { AppleApi, appleKeyHint, appleSigningSettings, APPLE_ISSUER, type AppleSigning } from './apple-api.js';
import { requireOneOf } from './fields.js';
import { idTokenVerifier, nonceMatches, nonceRuleOf } from './id-token.js';
import type { NonceRule, ProviderModule, SocialIdentity, TokenInput } from './types.js';

/**
 * Sign in with Apple. The identity token is verified against Apple's keys. When the app also sends the
 * authorization code and the team key is configured, the code is redeemed (apple-api.ts) and the refresh
 * token kept, so that unlinking revokes it (App Store rules for account deletion). A code from the web flow
 * (Sign in with Apple on Android) is redeemed with the redirect URI its authorization used: Apple redeems it with
 * that one only (SOCIAL_AUTH_APPLE_REDIRECT_URIS, per Services ID).
 *
 * A code Apple will not redeem (invalid_grant: used, expired, or another redirect URI) beside a valid identity
 * token does not refuse the sign-in: the identity token alone proves the account, as Firebase Auth and Supabase
 * Auth sign in with it alone (test/fixtures/sdk-flows/). The link then keeps no grant, and the operator is told
 * what to fix. A code sent without an identity token is the only proof: refused then.
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

export const apple: ProviderModule<AppleConfig> = {
  name: 'apple',
  emailTrust: 'verified',

  configure(settings) {
    const clientIds = settings.list('SOCIAL_AUTH_APPLE_KEY');
    if (clientIds.length === 0) return undefined;
    return {
      clientIds,
      jwksUrl: settings.url('SOCIAL_AUTH_APPLE_JWKS_URL', `${APPLE_ISSUER}/auth/keys`),
      apiUrl: settings.url('SOCIAL_AUTH_APPLE_API_URL', APPLE_ISSUER),
      signing: appleSigningSettings(settings),
      redirectUris: redirectUrisOf(settings, clientIds),
      nonceRule: nonceRuleOf(settings, 'SOCIAL_AUTH_APPLE_REQUIRE_NONCE'),
    };
  },

  create(config, context) {
    const { http } = context;
    const idTokens = idTokenVerifier(context, {
      jwksUrl: config.jwksUrl,
      issuers: [APPLE_ISSUER],
      audiences: config.clientIds,
      algorithms: ['RS256'],
      nonceAccepted,
      nonceRule: config.nonceRule,
    });
    const api = config.signing && new AppleApi(http, config.apiUrl, config.signing);

    /** The client ids a code may have been issued to: the identity token's, the one the app names, or every one. */
    const codeClientIds = (claims: JWTPayload | undefined, sent: string | undefined): string[] => {
      if (typeof claims?.aud === 'string') return [claims.aud];
      if (sent === undefined) return config.clientIds;
      if (!config.clientIds.includes(sent))
        throw invalidRequest('client_id is not one of the configured Sign in with Apple client ids');
      return [sent];
    };

    /**
     * The client ids a code may have been issued to, each with the redirect URI to redeem it with: the app's, for
     * the client ids it is configured for (400 when it is for none); else the first configured one; else none.
     */
    const redemptions = (
      candidates: string[],
      sent: string | undefined,
    ): Array<[clientId: string, redirectUri: string | undefined]> => {
      if (sent === undefined) return candidates.map((clientId) => [clientId, config.redirectUris[clientId]?.[0]]);
      const matching = candidates.filter((clientId) => config.redirectUris[clientId]?.includes(sent));
      if (matching.length === 0)
        throw invalidRequest(
          `redirect_uri is not one configured for ${candidates.join(', ')} (SOCIAL_AUTH_APPLE_REDIRECT_URIS)`,
        );
      return matching.map((clientId) => [clientId, sent]);
    };

    /** Redeems the code: the identity it proves, with the refresh token to keep. */
    const redeem = async (
      api: AppleApi,
      code: string,
      claims: JWTPayload | undefined,
      input: TokenInput,
      name: Name,
    ): Promise<SocialIdentity> => {
      // A code alone does not say which of our client ids it was issued to: try each. (That Apple does not
      // redeem a code refused for another client id is assumed: no source says; sending client_id avoids it.)
      const candidates = redemptions(codeClientIds(claims, input.client_id), input.redirect_uri);
      const refusedClients: string[] = [];
      for (const [clientId, redirectUri] of candidates) {
        const redeemed = await api.redeem(clientId, code, redirectUri);
        if ('refused' in redeemed) {
          if (redeemed.refused === 'invalid_client') refusedClients.push(clientId);
          continue;
        }
        // With the app's identity token, that token carries the nonce; with a code alone, the one Apple gave us.
        const codeClaims = claims
          ? await idTokens.verify(redeemed.idToken, undefined, 'optional')
          : await idTokens.verify(redeemed.idToken, input.nonce);
        if (claims && codeClaims.sub !== claims.sub)
          throw new InvalidTokenError('the code belongs to another user than the identity token');
        const idToken = claims
          ? idTokens.proof(input.id_token!, claims, input.nonce)
          : idTokens.proof(redeemed.idToken, codeClaims, input.nonce);
        return {
          ...identity(claims ?? codeClaims, name),
          tokens: { refresh_token: redeemed.refreshToken, client_id: clientId },
          idToken,
        };
      }
      if (refusedClients.length === candidates.length)
        throw providerRefusedApp('apple', 'invalid_client', appleKeyHint(refusedClients));
      if (!claims) throw new InvalidTokenError('the authorization code is invalid, expired or already used');
      // The identity token proves the account; only a new grant to keep is lost.
      const [[clientId, redirectUri]] = candidates as [[string, string | undefined]];
      const operatorNotice = {
        reason: `Apple refused the authorization code of ${clientId} (invalid_grant): no new grant is kept for the link`,
        hint: redirectUri
          ? 'the code was used or expired (it lives 5 minutes), or its authorization used another redirect URI than SOCIAL_AUTH_APPLE_REDIRECT_URIS gives'
          : `the code was used or expired (it lives 5 minutes); or, if ${clientId} is a Services ID whose web flow (Sign in with Apple on Android) made it, set SOCIAL_AUTH_APPLE_REDIRECT_URIS=${clientId}=<the redirect URI it used> (never for an app's bundle id: its codes have none)`,
      };
      return {
        ...identity(claims, name),
        idToken: idTokens.proof(input.id_token!, claims, input.nonce),
        operatorNotice,
      };
    };

    return {
      name: 'apple',
      warmUp: () => idTokens.warmUp(),
      // Server-to-server notifications: {"payload": JWT}, its `events` a JSON text (or an object, as Apple's page
      // shows it) of {type, sub, email?, event_time} (test/fixtures/callbacks/apple/).
      async verifyNotification(payload) {
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
      async verify(input) {
        const form = requireOneOf(input, ['id_token', 'code'], 'apple');
        const name = userName(input.user);
        const claims = form === 'id_token' ? await idTokens.verify(input.id_token!, input.nonce) : undefined;
        if (input.code && api) return redeem(api, input.code, claims, input, name);
        // The app can send its id_token instead; the server's settings are the operator's to complete.
        if (!claims)
          throw invalidRequest(
            'id_token is required for apple: this server cannot redeem codes (no Sign in with Apple key is configured)',
          );
        return { ...identity(claims, name), idToken: idTokens.proof(input.id_token!, claims, input.nonce) };
      },
      async revoke(tokens) {
        if (api && tokens.refresh_token && tokens.client_id) await api.revoke(tokens.client_id, tokens.refresh_token);
      },
    };
  },
};

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

function identity(claims: JWTPayload, name: Name): SocialIdentity {
  const email = text(claims, 'email');
  const fullname = [name.first_name, name.last_name].filter(Boolean).join(' ') || undefined;
  const extraData = {
    sub: claims.sub,
    email: email ?? null,
    email_verified: flag(claims.email_verified),
    is_private_email: flag(claims.is_private_email),
    real_user_status: typeof claims.real_user_status === 'number' ? claims.real_user_status : null,
    expires_at: claims.exp ?? null,
    ...(name.first_name ? { first_name: name.first_name } : {}),
    ...(name.last_name ? { last_name: name.last_name } : {}),
  };
  // Apple gives the name once: a later sign-in without it never erases the one kept.
  // After an app transfer, for Apple's transition window: the user's transfer identifier (core/apple-transfer.ts).
  const transferSub = text(claims, 'transfer_sub');
  return account(
    { uid: String(claims.sub), name: fullname, email, email_verified: flag(claims.email_verified), ...name },
    extraData,
    {
      keptFacts: (['first_name', 'last_name'] as const).filter((key) => !name[key]),
      ...(transferSub ? { transferSub } : {}),
    },
  );
}

/**
 * SOCIAL_AUTH_APPLE_REDIRECT_URIS: `services.id=https://…` pairs, comma-separated; a Services ID may have several.
 * Apple requires https with a domain name for a web flow's redirect URI.
 */
function redirectUrisOf(settings: Settings, clientIds: readonly string[]): Record<string, string[]> {
  const name = 'SOCIAL_AUTH_APPLE_REDIRECT_URIS';
  const uris: Record<string, string[]> = {};
  for (const pair of settings.list(name)) {
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
