import { ConfigError, type Settings } from '../../lib/settings.js';
import { flag, text } from '../../lib/narrowing.js';
import { defineProvider } from '../define.js';
import { idTokenProof, verifyIdToken, type IdTokenPolicy } from '../id-token.js';
import { discover, isMultiTenantIssuer, type OidcConfig } from './discovery.js';
import type { Provider, ProviderContext, ProviderModule } from '../types.js';

export type { OidcConfig } from './discovery.js';

const ASYMMETRIC = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);

/**
 * Any OpenID Connect provider (Microsoft, Kakao, Auth0, Keycloak…), configured without code, one provider
 * `oidc:<name>` per issuer:
 *   SOCIAL_AUTH_OIDC_<NAME>_ISSUER=https://login.example.com
 *   SOCIAL_AUTH_OIDC_<NAME>_KEY=client-id[,other-client-id]
 *   SOCIAL_AUTH_OIDC_<NAME>_ALGORITHMS=RS256   (optional; asymmetric algorithms only)
 *   SOCIAL_AUTH_OIDC_<NAME>_TENANTS=tid[,tid]  (optional; multi-tenant issuers: the tenants accepted)
 */
export function oidcProviders(settings: Settings): Array<ProviderModule<OidcConfig>> {
  return Object.keys(settings.env)
    .sort()
    .flatMap((variable) => {
      const match = /^SOCIAL_AUTH_OIDC_([A-Z0-9_]+)_ISSUER$/.exec(variable);
      return match ? [oidcIssuer(match[1]!.toLowerCase())] : [];
    });
}

/** The issuer `oidc:<name>`: verifies ID tokens with the keys its discovery document names, fetched once and cached. */
export const oidcIssuer = (name: string) =>
  defineProvider({
    name: `oidc:${name}`,
    // OpenID Connect Core 5.1: email_verified true says the provider verified the e-mail; a multi-tenant
    // issuer's tenants each say it of their own accounts, so it needs the operator's opt-in.
    emailTrust: 'verified',
    emailTrustFor: (config: OidcConfig) => (isMultiTenantIssuer(config.issuer) ? 'never' : 'verified'),
    tokens: ['id_token'],

    settings(s): OidcConfig | undefined {
      const variable = s.variable('ISSUER');
      const issuer = s.string('ISSUER');
      if (!issuer) return undefined;
      if (!/^https?:\/\/[^\s]+$/.test(issuer))
        throw new ConfigError(`${variable} must be the issuer URL, got "${issuer}"`);
      s.url('ISSUER', issuer); // https in production
      const clientIds = s.list('KEY');
      if (clientIds.length === 0) throw new ConfigError(`${s.variable('KEY')} must list the client ids of ${variable}`);
      const algorithms = s.list('ALGORITHMS');
      for (const alg of algorithms) {
        if (!ASYMMETRIC.has(alg))
          throw new ConfigError(`${s.variable('ALGORITHMS')}: "${alg}" is not an allowed asymmetric algorithm`);
      }
      return {
        name,
        issuer,
        clientIds,
        algorithms: algorithms.length ? algorithms : ['RS256'],
        tenants: s.list('TENANTS'),
        httpsOnly: s.production,
        nonceRule: s.nonceRule(),
      };
    },

    setup: (ctx) => {
      let policy: Promise<IdTokenPolicy> | undefined;
      // A failed discovery is retried by the next request instead of being remembered.
      const getPolicy = () =>
        (policy ??= discover(ctx).catch((error: unknown) => {
          policy = undefined;
          throw error;
        }));
      return { getPolicy };
    },

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
