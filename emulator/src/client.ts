import type { FaultInput } from './control.js';
import type * as Oidc from './control-oidc.js';
import type { MintFacebookTokenInput, MintedFacebookToken } from './facebook.js';
import type { MintGithubTokenInput, MintedGithubToken } from './github.js';
import type { MintLineTokenInput, MintedLineToken } from './line.js';
import type { MintMicrosoftIdTokenInput } from './microsoft.js';
import type { MintTwitterOAuth2TokenInput, MintedTwitterOAuth2Token } from './twitter-oauth2.js';
import type { MintTwitterTokenInput, MintedTwitterToken } from './twitter.js';

/** Typed access to a running emulator's control API, over HTTP, for tests and dev tooling. */
export class EmulatorClient {
  private readonly baseUrl: string;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /** Facebook calls the app's data-deletion or deauthorize callback at `url` (loopback), signed with the app secret. */
  sendFacebookCallback(input: {
    kind: 'data_deletion' | 'deauthorize';
    user_id: string;
    url: string;
    app_id?: string;
  }): Promise<{ status: number; body: string }> {
    return this.call('POST', '/_emulator/facebook/callbacks', input);
  }

  mintFacebookToken(input: MintFacebookTokenInput = {}): Promise<MintedFacebookToken> {
    return this.call('POST', '/_emulator/facebook/tokens', input);
  }

  mintTwitterToken(input: MintTwitterTokenInput = {}): Promise<MintedTwitterToken> {
    return this.call('POST', '/_emulator/twitter/tokens', input);
  }

  mintLineToken(input: MintLineTokenInput = {}): Promise<MintedLineToken> {
    return this.call('POST', '/_emulator/line/tokens', input);
  }

  mintGithubToken(input: MintGithubTokenInput = {}): Promise<MintedGithubToken> {
    return this.call('POST', '/_emulator/github/tokens', input);
  }

  mintTwitterOAuth2Token(input: MintTwitterOAuth2TokenInput = {}): Promise<MintedTwitterOAuth2Token> {
    return this.call('POST', '/_emulator/twitter/oauth2_tokens', input);
  }

  /** An X app-only bearer token (client credentials), which names no user. */
  mintTwitterAppOnlyToken(): Promise<{ access_token: string }> {
    return this.call('POST', '/_emulator/twitter/app_tokens');
  }

  // ID-token providers: `oidc:NAME` is the generic OpenID Connect issuer NAME.

  mintIdToken(provider: IdTokenProvider, input: Oidc.MintIdTokenInput = {}): Promise<Oidc.MintedIdToken> {
    const path = provider === 'facebook' ? '/facebook/limited_tokens' : `${idProviderPath(provider)}/id_tokens`;
    return this.call('POST', `/_emulator${path}`, input);
  }

  /** A Microsoft v2.0 ID token of tenant `tid` (default: personal accounts), as the multi-tenant endpoint issues it. */
  mintMicrosoftIdToken(input: MintMicrosoftIdTokenInput = {}): Promise<Oidc.MintedIdToken> {
    return this.call('POST', '/_emulator/microsoft/id_tokens', input);
  }

  /** The configured issuer of Microsoft's multi-tenant endpoint (SOCIAL_AUTH_OIDC_<NAME>_ISSUER). */
  microsoftIssuerUrl(tenant = 'common'): string {
    return `${this.baseUrl}/microsoft/${tenant}/v2.0`;
  }

  mintGoogleAccessToken(input: Oidc.MintGoogleAccessTokenInput = {}): Promise<Oidc.MintedGoogleAccessToken> {
    return this.call('POST', '/_emulator/google/tokens', input);
  }

  mintAppleCode(input: Oidc.MintAppleCodeInput = {}): Promise<Oidc.MintedAppleCode> {
    return this.call('POST', '/_emulator/apple/codes', input);
  }

  /** Google sends a Cross-Account Protection (RISC) security event token to `url` (loopback), signed with its keys. */
  sendGoogleSecurityEvent(input: {
    event: string;
    sub: string;
    url: string;
    reason?: string;
    state?: string;
    client_id?: string;
    forge?: string;
  }): Promise<{ status: number; body: string }> {
    return this.call('POST', '/_emulator/google/risc', input);
  }

  /** Apple notifies the app's server at `url` (loopback): a server-to-server notification signed with Apple's keys. */
  sendAppleNotification(input: {
    type: string;
    sub: string;
    url: string;
    email?: string;
    client_id?: string;
    forge?: string;
  }): Promise<{ status: number; body: string }> {
    return this.call('POST', '/_emulator/apple/notifications', input);
  }

  /** Another developer team (an app transfer's recipient) and the public JWKs of its keys, by key id. */
  addAppleTeam(teamId: string, keys: Record<string, Record<string, unknown>>): Promise<void> {
    return this.call('POST', '/_emulator/apple/teams', { team_id: teamId, keys });
  }

  appleRevocations(): Promise<{ revoked: Oidc.AppleRevocation[] }> {
    return this.call('GET', '/_emulator/apple/revocations');
  }

  rotateKeys(provider: IdTokenProvider, input: Oidc.RotateKeysInput = {}): Promise<Oidc.RotatedKeys> {
    return this.call('POST', `/_emulator${idProviderPath(provider)}/keys/rotate`, input);
  }

  async setJwksMaxAge(provider: IdTokenProvider, seconds: number): Promise<void> {
    await this.call('PUT', `/_emulator${idProviderPath(provider)}/jwks_cache`, { max_age: seconds });
  }

  /** The issuer identifier (iss) of the generic OpenID Connect issuer `name`; discovery is at <it>/.well-known/openid-configuration. */
  oidcIssuerUrl(name: string): string {
    return `${this.baseUrl}/oidc/${name}`;
  }

  async expireToken(accessToken: string): Promise<void> {
    await this.call('POST', '/_emulator/tokens/expire', { access_token: accessToken });
  }

  /** The user ended the grant (removed the app, changed the password): the provider refuses the token as revoked. */
  async revokeToken(accessToken: string): Promise<void> {
    await this.call('POST', '/_emulator/tokens/revoke', { access_token: accessToken });
  }

  async setFault(provider: string, fault: FaultInput): Promise<void> {
    await this.call('PUT', `/_emulator/faults/${encodeURIComponent(provider)}`, fault);
  }

  async clearFaults(): Promise<void> {
    await this.call('DELETE', '/_emulator/faults');
  }

  stats(): Promise<{ requests: Record<string, number> }> {
    return this.call('GET', '/_emulator/stats');
  }

  async reset(): Promise<void> {
    await this.call('POST', '/_emulator/reset');
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      // No content-type without a body: Fastify refuses an empty JSON body.
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`emulator ${method} ${path} answered HTTP ${response.status}: ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** An ID-token provider of the emulator; `oidc:NAME` names a generic OpenID Connect issuer. */
export type IdTokenProvider = 'google' | 'apple' | 'facebook' | 'microsoft' | `oidc:${string}`;

/** Where a provider's control routes live: facebook's keys are Limited Login's. */
function idProviderPath(provider: IdTokenProvider): string {
  if (provider.startsWith('oidc:')) return `/oidc/${encodeURIComponent(provider.slice('oidc:'.length))}`;
  return provider === 'facebook' ? '/facebook-limited' : `/${provider}`;
}
