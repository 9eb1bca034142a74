import { SignJWT, importPKCS8, type CryptoKey } from 'jose';
import { ProviderUnavailableError, providerRefusedApp } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import { formPost, type ProviderHttp } from '../http.js';

/**
 * Sign in with Apple's REST API, for the server: redeem an authorization code (POST /auth/token) and revoke
 * the refresh token it gave (POST /auth/revoke), authenticated by a client secret — an ES256 JWT signed
 * with the team's Sign in with Apple key. Sources: test/fixtures/providers/apple/token.*, revoke.*.
 */
export interface AppleSigning {
  teamId: string;
  keyId: string;
  privateKeyPem: string;
}

export const APPLE_ISSUER = 'https://appleid.apple.com';
const KEY_HINT = 'check SOCIAL_AUTH_APPLE_TEAM_ID, _KEY_ID and _PRIVATE_KEY';

export class AppleApi {
  private key: Promise<CryptoKey> | undefined;
  private readonly secrets = new Map<string, { jwt: string; renewAt: number }>();

  constructor(
    private readonly http: ProviderHttp,
    private readonly apiUrl: string,
    private readonly signing: AppleSigning,
  ) {}

  /** Redeems the code for one client id: its tokens, or Apple's refusal (invalid_grant, invalid_client) so the next id can be tried. */
  async redeem(
    clientId: string,
    code: string,
    redirectUri?: string,
  ): Promise<{ idToken: string; refreshToken: string } | { refused: 'invalid_grant' | 'invalid_client' }> {
    // redirect_uri: the one the authorization used, when it used one (a web or Android flow): Apple redeems the code with it only.
    const fields = {
      client_id: clientId,
      client_secret: await this.clientSecret(clientId),
      code,
      grant_type: 'authorization_code',
      ...(redirectUri ? { redirect_uri: redirectUri } : {}),
    };
    const { status, body } = await this.http.json(`${this.apiUrl}/auth/token`, formPost(fields));
    const error = isObject(body) ? text(body, 'error') : undefined;
    if (status === 400 && (error === 'invalid_grant' || error === 'invalid_client')) return { refused: error };
    if (status !== 200)
      throw new ProviderUnavailableError(
        'apple',
        `refused the code exchange (HTTP ${status}${error ? `, ${error}` : ''})`,
      );
    const idToken = isObject(body) ? text(body, 'id_token') : undefined;
    const refreshToken = isObject(body) ? text(body, 'refresh_token') : undefined;
    if (!idToken || !refreshToken)
      throw new ProviderUnavailableError('apple', 'answered the code exchange without its tokens');
    return { idToken, refreshToken };
  }

  /** Revokes a refresh token kept for a link (App Store rule: unlinking and account deletion end the grant). */
  async revoke(clientId: string, refreshToken: string): Promise<void> {
    const fields = {
      client_id: clientId,
      client_secret: await this.clientSecret(clientId),
      token: refreshToken,
      token_type_hint: 'refresh_token',
    };
    const { status, body } = await this.http.json(`${this.apiUrl}/auth/revoke`, formPost(fields));
    if (status === 400 && isObject(body) && body.error === 'invalid_client')
      throw providerRefusedApp('apple', 'invalid_client on revoke', KEY_HINT);
    if (status !== 200) throw new ProviderUnavailableError('apple', `refused to revoke the token (HTTP ${status})`);
  }

  /**
   * Team transfer (user migration): an access token of scope user.migration, for POST /auth/usermigrationinfo.
   * Sources: test/fixtures/apple-migration/token.*.
   */
  async migrationToken(clientId: string): Promise<string> {
    const fields = {
      grant_type: 'client_credentials',
      scope: 'user.migration',
      client_id: clientId,
      client_secret: await this.clientSecret(clientId),
    };
    const { status, body } = await this.http.json(`${this.apiUrl}/auth/token`, formPost(fields));
    const error = isObject(body) ? text(body, 'error') : undefined;
    if (status === 400 && error === 'invalid_client')
      throw providerRefusedApp('apple', 'invalid_client on the user.migration token', KEY_HINT);
    const accessToken = status === 200 && isObject(body) ? text(body, 'access_token') : undefined;
    if (!accessToken)
      throw new ProviderUnavailableError(
        'apple',
        `refused the user.migration token (HTTP ${status}${error ? `, ${error}` : ''})`,
      );
    return accessToken;
  }

  /**
   * The old team asks the transfer identifier of one of its users for the recipient team (`{sub, target}`),
   * or the recipient team exchanges a transfer identifier for its own sub (`{transfer_sub}`). Apple's
   * 400 invalid_request (not a user of this team, or one who revoked the app) comes back as `refused`;
   * invalid_grant says the access token expired. Sources: test/fixtures/apple-migration/usermigrationinfo.*.
   */
  async migrationInfo(
    clientId: string,
    accessToken: string,
    ask: { sub: string; target: string } | { transfer_sub: string },
  ): Promise<{ body: Record<string, unknown> } | { refused: 'invalid_request' | 'invalid_grant' }> {
    const fields = { ...ask, client_id: clientId, client_secret: await this.clientSecret(clientId) };
    const request = formPost(fields);
    const { status, body } = await this.http.json(`${this.apiUrl}/auth/usermigrationinfo`, {
      ...request,
      headers: { ...request.headers, authorization: `Bearer ${accessToken}` },
    });
    const error = isObject(body) ? text(body, 'error') : undefined;
    if (status === 400 && (error === 'invalid_request' || error === 'invalid_grant')) return { refused: error };
    if (status === 400 && error === 'invalid_client')
      throw providerRefusedApp('apple', 'invalid_client on usermigrationinfo', KEY_HINT);
    if (status !== 200 || !isObject(body))
      throw new ProviderUnavailableError(
        'apple',
        `refused usermigrationinfo (HTTP ${status}${error ? `, ${error}` : ''})`,
      );
    return { body };
  }

  /** Our client secret for this client id, reused until close to its expiry. */
  private async clientSecret(clientId: string): Promise<string> {
    const cached = this.secrets.get(clientId);
    if (cached && cached.renewAt > Date.now()) return cached.jwt;
    this.key ??= importPKCS8(this.signing.privateKeyPem, 'ES256');
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.signing.keyId })
      .setIssuer(this.signing.teamId)
      .setSubject(clientId)
      .setAudience(APPLE_ISSUER)
      .setIssuedAt()
      .setExpirationTime('1d')
      .sign(await this.key);
    this.secrets.set(clientId, { jwt, renewAt: Date.now() + 23 * 3_600_000 });
    return jwt;
  }
}

export const appleKeyHint = (clientIds: string[]) =>
  `${KEY_HINT}, and that ${clientIds.join(', ')} belong to that team`;
