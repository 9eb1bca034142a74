import type { Settings } from '../../lib/settings.js';
import { flag, text } from '../../lib/narrowing.js';
import { defineProvider } from '../define.js';
import { idTokenProof, verifyIdToken } from '../id-token.js';
import { issuerConfig, issuerNames, type OidcConfig } from './config.js';
import { discovered, isMultiTenantIssuer } from './discovery.js';
import type { Provider, ProviderContext, ProviderModule } from '../types.js';

export type { OidcConfig } from './config.js';

/**
 * Any OpenID Connect provider (Microsoft, Kakao, Auth0, Keycloak…), configured without code, one provider
 * `oidc:<name>` per issuer: its settings are config.ts's, its discovery document and keys discovery.ts's.
 */
export const oidcProviders = (settings: Settings): Array<ProviderModule<OidcConfig>> =>
  issuerNames(settings).map((name) => oidcIssuer(name));

/** The issuer `oidc:<name>`: verifies ID tokens with the keys its discovery document names, fetched once and cached. */
export const oidcIssuer = (name: string) =>
  defineProvider({
    name: `oidc:${name}`,
    // OpenID Connect Core 5.1: email_verified true says the provider verified the e-mail; a multi-tenant
    // issuer's tenants each say it of their own accounts, so it needs the operator's opt-in.
    emailTrust: 'verified',
    emailTrustFor: (config: OidcConfig) => (isMultiTenantIssuer(config.issuer) ? 'never' : 'verified'),
    tokens: ['id_token'],

    settings: (s) => issuerConfig(name, s),

    setup: (ctx) => ({ getPolicy: discovered(ctx) }),

    async prove(_form, { id_token, nonce }, { config, getPolicy, clockToleranceSeconds }) {
      const policy = await getPolicy();
      const claims = await verifyIdToken(id_token!, policy, nonce);
      return {
        // sub is unique within its issuer (OpenID Connect Core 2); a multi-tenant endpoint's issuer is the tenant's.
        facts: { claims, multiTenant: typeof policy.issuers === 'function' },
        idToken: idTokenProof(id_token!, claims, nonce, config.nonceRule, clockToleranceSeconds),
      };
    },

    account: ({ claims, multiTenant }) => ({
      uid: multiTenant ? `${String(claims.tid)}:${String(claims.sub)}` : String(claims.sub),
      name: text(claims, 'name'),
      email: text(claims, 'email'),
      email_verified: flag(claims.email_verified), // OpenID Connect Core 5.1: only this claim says so
      username: text(claims, 'preferred_username'),
      extraData: {
        sub: claims.sub,
        iss: claims.iss,
        email: text(claims, 'email') ?? null,
        email_verified: flag(claims.email_verified),
        ...(multiTenant ? { tid: claims.tid } : {}),
        name: text(claims, 'name') ?? null,
        expires_at: claims.exp ?? null,
      },
    }),

    warmUp: ({ getPolicy }) =>
      void getPolicy().then(
        (ready) => ready.jwks.warmUp(),
        () => {},
      ),
  });

/** The provider of one issuer's configuration (as `oidcIssuer(config.name).configure` reads it). */
export const createOidcProvider = (config: OidcConfig, context: ProviderContext): Provider =>
  oidcIssuer(config.name).create(config, context);
