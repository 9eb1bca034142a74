import { createHash } from 'node:crypto';
import { SignJWT, importPKCS8, type CryptoKey, type JWTPayload } from 'jose';
import { ConfigError, type Settings } from '../config/settings.js';
import { InvalidTokenError, ProviderUnavailableError, invalidRequest, providerRefusedApp } from '../core/errors.js';
import { claimString, verifyIdToken, type IdTokenPolicy } from './id-token.js';
import { JwksCache } from './jwks.js';
import { isObject, stringField, type ProviderHttp } from './http.js';
import { requireOneOf } from './fields.js';
import type { ProviderModule, SocialIdentity, TokenInput } from './types.js';

export interface AppleConfig {
  /** Bundle ids (native apps) and services ids (web): the accepted audiences. */
  clientIds: string[];
  jwksUrl: string;
  apiUrl: string;
  /** For exchanging authorization codes and revoking tokens: the team's Sign in with Apple key. */
  signing?: { teamId: string; keyId: string; privateKeyPem: string };
}

const ISSUER = 'https://appleid.apple.com';

/**
 * Sign in with Apple. The identity token is verified against Apple's keys. When the app also sends the
 * authorization code and the team key is configured, the code is exchanged for a refresh token that is
 * kept, so that unlinking revokes it (App Store rules for account deletion).
 *
 * Nonce: Apple copies the nonce the app set on its request into the token unchanged. Many apps set the
 * SHA-256 (hex) of a raw nonce and send us the raw one (Firebase's convention), others set and send the
 * same value: the token's nonce must equal what the app sent, or its SHA-256. A device that cannot do
 * nonces says `nonce_supported: false` and leaves the nonce out.
 *
 * The user's name is never in the token: Apple gives it to the app once, on the first authorization
 * (`user`: {name: {firstName, lastName}, email}). It is kept for display, never used for identity.
 */
export const apple: ProviderModule<AppleConfig> = {
  name: 'apple',

  configure(settings) {
    const clientIds = settings.list('SOCIAL_AUTH_APPLE_KEY');
    if (clientIds.length === 0) return undefined;
    return {
      clientIds,
      jwksUrl: settings.url('SOCIAL_AUTH_APPLE_JWKS_URL', `${ISSUER}/auth/keys`),
      apiUrl: settings.url('SOCIAL_AUTH_APPLE_API_URL', ISSUER),
      signing: signingSettings(settings),
    };
  },

  create(config, { http }) {
    const jwks = new JwksCache(http, config.jwksUrl);
    const policy: IdTokenPolicy = { jwks, issuers: [ISSUER], audiences: config.clientIds, algorithms: ['RS256'], nonceAccepted };
    const secrets = config.signing && new ClientSecrets(config.signing);

    /** The client ids the code may have been issued to, most likely first. */
    const codeClientIds = (claims: JWTPayload | undefined, sent: string | undefined): string[] => {
      if (typeof claims?.aud === 'string') return [claims.aud];
      if (sent === undefined) return config.clientIds;
      if (!config.clientIds.includes(sent)) throw invalidRequest('client_id is not one of the configured Sign in with Apple client ids');
      return [sent];
    };

    return {
      name: 'apple',
      warmUp: () => jwks.warmUp(),
      async verify(input) {
        const form = requireOneOf(input, ['id_token', 'code'], 'apple');
        const name = appleUserName(input.user);
        const claims = form === 'id_token' ? await verifyIdToken(input.id_token!, policy, input.nonce) : undefined;
        if (!input.code || !secrets) {
          // The app can send its id_token instead; the server's settings are the operator's to complete.
          if (!claims) throw invalidRequest('id_token is required for apple: this server cannot redeem codes (no Sign in with Apple key is configured)');
          return identity(claims, name);
        }
        // A code alone does not say which of our client ids it was issued to: try each. (That Apple does not
        // redeem a code refused for another client id is assumed: no source says; sending client_id avoids it.)
        const refusedClients: string[] = [];
        for (const clientId of codeClientIds(claims, input.client_id)) {
          const exchanged = await exchangeCode(http, config.apiUrl, clientId, await secrets.get(clientId), input.code);
          if ('refused' in exchanged) {
            if (exchanged.refused === 'invalid_client') refusedClients.push(clientId);
            continue;
          }
          const codeClaims = await verifyIdToken(exchanged.idToken, policy, claims ? undefined : input.nonce);
          if (claims && codeClaims.sub !== claims.sub) throw new InvalidTokenError('the code belongs to another user than the identity token');
          return { ...identity(claims ?? codeClaims, name), tokens: { refresh_token: exchanged.refreshToken, client_id: clientId } };
        }
        if (refusedClients.length === codeClientIds(claims, input.client_id).length) {
          throw providerRefusedApp('apple', 'invalid_client', `check SOCIAL_AUTH_APPLE_TEAM_ID, _KEY_ID, _PRIVATE_KEY, and that ${refusedClients.join(', ')} belong to that team`);
        }
        throw new InvalidTokenError('the authorization code is invalid, expired or already used');
      },
      async revoke(tokens) {
        if (!secrets || !tokens.refresh_token || !tokens.client_id) return;
        const body = new URLSearchParams({
          client_id: tokens.client_id,
          client_secret: await secrets.get(tokens.client_id),
          token: tokens.refresh_token,
          token_type_hint: 'refresh_token',
        });
        const { status, body: answer } = await http.json(`${config.apiUrl}/auth/revoke`, formPost(body));
        if (status === 400 && isObject(answer) && answer.error === 'invalid_client') {
          throw providerRefusedApp('apple', 'invalid_client on revoke', 'check SOCIAL_AUTH_APPLE_TEAM_ID, _KEY_ID and _PRIVATE_KEY');
        }
        if (status !== 200) throw new ProviderUnavailableError('apple', `refused to revoke the token (HTTP ${status})`);
      },
    };
  },
};

/** The token's nonce is what the app sent, or its SHA-256 in hex; a device without nonce support may leave it out. */
function nonceAccepted(claims: JWTPayload, sent: string): boolean {
  if (claims.nonce === undefined) return claims.nonce_supported === false || claims.nonce_supported === 'false';
  return claims.nonce === sent || claims.nonce === createHash('sha256').update(sent).digest('hex');
}

/** The name from the `user` JSON of the first authorization (an object, or the JSON text a web form post carries). */
function appleUserName(user: TokenInput['user']): { first_name?: string; last_name?: string } {
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
  const part = (key: string) => {
    const value = stringField(name, key)?.trim();
    return value ? value.slice(0, 150) : undefined;
  };
  return { first_name: part('firstName'), last_name: part('lastName') };
}

function signingSettings(settings: Settings): AppleConfig['signing'] {
  const teamId = settings.string('SOCIAL_AUTH_APPLE_TEAM_ID');
  const keyId = settings.string('SOCIAL_AUTH_APPLE_KEY_ID');
  // A PEM in an environment variable often arrives with literal "\n".
  const privateKeyPem = settings.string('SOCIAL_AUTH_APPLE_PRIVATE_KEY')?.replace(/\\n/g, '\n');
  if (!teamId && !keyId && !privateKeyPem) return undefined;
  if (!teamId || !keyId || !privateKeyPem) {
    throw new ConfigError('SOCIAL_AUTH_APPLE_TEAM_ID, SOCIAL_AUTH_APPLE_KEY_ID and SOCIAL_AUTH_APPLE_PRIVATE_KEY must be set together');
  }
  if (!privateKeyPem.includes('BEGIN PRIVATE KEY')) {
    throw new ConfigError('SOCIAL_AUTH_APPLE_PRIVATE_KEY must be the PKCS#8 PEM of the .p8 key file');
  }
  return { teamId, keyId, privateKeyPem };
}

/** Apple's client secret: an ES256 JWT signed with the team key, reused until close to its expiry. */
class ClientSecrets {
  private key: Promise<CryptoKey> | undefined;
  private readonly cache = new Map<string, { jwt: string; renewAt: number }>();

  constructor(private readonly signing: NonNullable<AppleConfig['signing']>) {}

  async get(clientId: string): Promise<string> {
    const cached = this.cache.get(clientId);
    if (cached && cached.renewAt > Date.now()) return cached.jwt;
    this.key ??= importPKCS8(this.signing.privateKeyPem, 'ES256');
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.signing.keyId })
      .setIssuer(this.signing.teamId)
      .setSubject(clientId)
      .setAudience(ISSUER)
      .setIssuedAt()
      .setExpirationTime('1d')
      .sign(await this.key);
    this.cache.set(clientId, { jwt, renewAt: Date.now() + 23 * 3_600_000 });
    return jwt;
  }
}

const formPost = (body: URLSearchParams) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: body.toString(),
});

/** Redeems the code with one client id: its tokens, or Apple's refusal (invalid_grant, invalid_client) to try the next id. */
async function exchangeCode(http: ProviderHttp, apiUrl: string, clientId: string, clientSecret: string, code: string) {
  const body = new URLSearchParams({ client_id: clientId, client_secret: clientSecret, code, grant_type: 'authorization_code' });
  const { status, body: answer } = await http.json(`${apiUrl}/auth/token`, formPost(body));
  const error = isObject(answer) ? stringField(answer, 'error') : undefined;
  if (status === 400 && (error === 'invalid_grant' || error === 'invalid_client')) return { refused: error };
  if (status !== 200 || !isObject(answer)) {
    throw new ProviderUnavailableError('apple', `refused the code exchange (HTTP ${status}${error ? `, ${error}` : ''})`);
  }
  const idToken = stringField(answer, 'id_token');
  const refreshToken = stringField(answer, 'refresh_token');
  if (!idToken || !refreshToken) throw new ProviderUnavailableError('apple', 'answered the code exchange without tokens');
  return { idToken, refreshToken };
}

function identity(claims: Record<string, unknown>, name: { first_name?: string; last_name?: string }): SocialIdentity {
  const email = claimString(claims, 'email');
  const flag = (value: unknown) => value === true || value === 'true';
  const fullname = [name.first_name, name.last_name].filter(Boolean).join(' ') || undefined;
  return {
    uid: String(claims.sub),
    details: { email, username: fullname, fullname, ...name },
    extraData: {
      sub: claims.sub,
      email: email ?? null,
      email_verified: flag(claims.email_verified),
      is_private_email: flag(claims.is_private_email),
      real_user_status: typeof claims.real_user_status === 'number' ? claims.real_user_status : null,
      expires_at: typeof claims.exp === 'number' ? claims.exp : null,
      ...(name.first_name ? { first_name: name.first_name } : {}),
      ...(name.last_name ? { last_name: name.last_name } : {}),
    },
    // Apple gives the name once: a later sign-in without it never erases the one kept.
    keptFacts: (['first_name', 'last_name'] as const).filter((key) => !name[key]),
  };
}
