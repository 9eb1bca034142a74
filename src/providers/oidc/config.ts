import { ConfigError, type Settings } from '../../lib/settings.js';
import type { ProviderSettings } from '../define.js';
import type { NonceRule } from '../types.js';

/**
 * An OpenID Connect issuer's configuration: one provider `oidc:<name>` per issuer (oidc.ts),
 *   SOCIAL_AUTH_OIDC_<NAME>_ISSUER=https://login.example.com
 *   SOCIAL_AUTH_OIDC_<NAME>_KEY=client-id[,other-client-id]
 *   SOCIAL_AUTH_OIDC_<NAME>_ALGORITHMS=RS256   (optional; asymmetric algorithms only)
 *   SOCIAL_AUTH_OIDC_<NAME>_TENANTS=tid[,tid]  (optional; multi-tenant issuers: the tenants accepted)
 */
export interface OidcConfig {
  /** The provider is `oidc:<name>` in the API paths. */
  name: string;
  /** Compared exactly with the discovery document's and the tokens' `iss`. */
  issuer: string;
  clientIds: string[];
  algorithms: string[];
  /** Multi-tenant issuers only (Microsoft's `common`): the tenant ids (`tid`) accepted; empty = any tenant. */
  tenants: string[];
  /** Production: the jwks_uri the discovery document names must be https (plain http on loopback only). */
  httpsOnly: boolean;
  nonceRule: NonceRule;
}

/** The `<name>` of every issuer configured (SOCIAL_AUTH_OIDC_<NAME>_ISSUER), in order. */
export const issuerNames = (settings: Settings): string[] =>
  Object.keys(settings.env)
    .sort()
    .flatMap((variable) => {
      const match = /^SOCIAL_AUTH_OIDC_([A-Z0-9_]+)_ISSUER$/.exec(variable);
      return match ? [match[1]!.toLowerCase()] : [];
    });

const ASYMMETRIC = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);

/** The issuer `<name>`'s configuration, read from its settings; undefined when it has no _ISSUER. */
export function issuerConfig(name: string, s: ProviderSettings): OidcConfig | undefined {
  const variable = s.variable('ISSUER');
  const issuer = s.string('ISSUER');
  if (!issuer) return undefined;
  if (!/^https?:\/\/[^\s]+$/.test(issuer)) throw new ConfigError(`${variable} must be the issuer URL, got "${issuer}"`);
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
}
