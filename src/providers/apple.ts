import { createHash } from 'node:crypto';
import { SignJWT, importPKCS8, type CryptoKey } from 'jose';
import { ConfigError, type Settings } from '../settings.js';
import { InvalidTokenError, ProviderUnavailableError } from '../errors.js';
import { claimString, verifyIdToken, type IdTokenPolicy } from './id-token.js';
import { JwksCache } from './jwks.js';
import { isObject, stringField, type ProviderHttp } from './http.js';
import { requireOneOf } from './fields.js';
import type { ProviderModule, SocialIdentity } from './types.js';

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
 * Nonce: the app sends Apple the SHA-256 (hex) of a random nonce and sends us the raw nonce; we compare
 * the token's nonce with SHA-256(raw nonce).
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
    const policy: IdTokenPolicy = { jwks, issuers: [ISSUER], audiences: config.clientIds, algorithms: ['RS256'] };
    const secrets = config.signing && new ClientSecrets(config.signing);

    return {
      name: 'apple',
      warmUp: () => jwks.warmUp(),
      async verify(input) {
        const form = requireOneOf(input, ['id_token', 'code'], 'apple');
        const nonce = input.nonce === undefined ? undefined : createHash('sha256').update(input.nonce).digest('hex');
        const claims = form === 'id_token' ? await verifyIdToken(input.id_token!, policy, nonce) : undefined;
        if (!input.code || !secrets) {
          if (!claims) throw new InvalidTokenError('code needs the Sign in with Apple key settings (SOCIAL_AUTH_APPLE_TEAM_ID, _KEY_ID, _PRIVATE_KEY)');
          return identity(claims);
        }
        const clientId = typeof claims?.aud === 'string' ? claims.aud : config.clientIds[0]!;
        const exchanged = await exchangeCode(http, config.apiUrl, clientId, await secrets.get(clientId), input.code);
        const codeClaims = await verifyIdToken(exchanged.idToken, policy, claims ? undefined : nonce);
        if (claims && codeClaims.sub !== claims.sub) throw new InvalidTokenError('the code belongs to another user than the identity token');
        return { ...identity(claims ?? codeClaims), tokens: { refresh_token: exchanged.refreshToken, client_id: clientId } };
      },
      async revoke(tokens) {
        if (!secrets || !tokens.refresh_token || !tokens.client_id) return;
        const body = new URLSearchParams({
          client_id: tokens.client_id,
          client_secret: await secrets.get(tokens.client_id),
          token: tokens.refresh_token,
          token_type_hint: 'refresh_token',
        });
        const status = await http.send(`${config.apiUrl}/auth/revoke`, formPost(body));
        if (status !== 200) throw new ProviderUnavailableError('apple', `refused to revoke the token (HTTP ${status})`);
      },
    };
  },
};

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

async function exchangeCode(http: ProviderHttp, apiUrl: string, clientId: string, clientSecret: string, code: string) {
  const body = new URLSearchParams({ client_id: clientId, client_secret: clientSecret, code, grant_type: 'authorization_code' });
  const { status, body: answer } = await http.json(`${apiUrl}/auth/token`, formPost(body));
  if (status === 400 && isObject(answer) && answer.error === 'invalid_grant') {
    throw new InvalidTokenError('the authorization code is invalid, expired or already used');
  }
  if (status !== 200 || !isObject(answer)) {
    // invalid_client and the like: our key settings are wrong, not the user's code.
    throw new ProviderUnavailableError('apple', `refused the code exchange (HTTP ${status}${isObject(answer) && typeof answer.error === 'string' ? `, ${answer.error}` : ''})`);
  }
  const idToken = stringField(answer, 'id_token');
  const refreshToken = stringField(answer, 'refresh_token');
  if (!idToken || !refreshToken) throw new ProviderUnavailableError('apple', 'answered the code exchange without tokens');
  return { idToken, refreshToken };
}

function identity(claims: Record<string, unknown>): SocialIdentity {
  const email = claimString(claims, 'email');
  const flag = (value: unknown) => value === true || value === 'true';
  return {
    uid: String(claims.sub),
    details: { email },
    extraData: {
      sub: claims.sub,
      email: email ?? null,
      email_verified: flag(claims.email_verified),
      is_private_email: flag(claims.is_private_email),
      real_user_status: typeof claims.real_user_status === 'number' ? claims.real_user_status : null,
      expires_at: typeof claims.exp === 'number' ? claims.exp : null,
    },
  };
}
