import type { JWK, JWTPayload } from 'jose';
import { ConfigError, isSafeTransport, type Settings } from '../lib/settings.js';
import { ProviderUnavailableError } from '../lib/errors.js';
import { account } from './answers.js';
import { flag, isObject, text } from '../lib/narrowing.js';
import { idTokenProof, nonceRuleOf, verifyIdToken, type IdTokenPolicy } from './id-token.js';
import { JwksCache } from './jwks.js';
import { requireField } from './fields.js';
import type { NonceRule, Provider, ProviderContext } from './types.js';

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

const ASYMMETRIC = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);

/**
 * Any OpenID Connect provider (Microsoft, Kakao, Auth0, Keycloak…), configured without code:
 *   SOCIAL_AUTH_OIDC_<NAME>_ISSUER=https://login.example.com
 *   SOCIAL_AUTH_OIDC_<NAME>_KEY=client-id[,other-client-id]
 *   SOCIAL_AUTH_OIDC_<NAME>_ALGORITHMS=RS256   (optional; asymmetric algorithms only)
 *   SOCIAL_AUTH_OIDC_<NAME>_TENANTS=tid[,tid]  (optional; multi-tenant issuers: the tenants accepted)
 */
export function configureOidcProviders(settings: Settings): OidcConfig[] {
  const configs: OidcConfig[] = [];
  for (const variable of Object.keys(settings.env).sort()) {
    const match = /^SOCIAL_AUTH_OIDC_([A-Z0-9_]+)_ISSUER$/.exec(variable);
    if (!match) continue;
    const prefix = `SOCIAL_AUTH_OIDC_${match[1]}`;
    const issuer = settings.string(variable);
    if (!issuer) continue;
    if (!/^https?:\/\/[^\s]+$/.test(issuer))
      throw new ConfigError(`${variable} must be the issuer URL, got "${issuer}"`);
    settings.url(variable, issuer); // https in production
    const clientIds = settings.list(`${prefix}_KEY`);
    if (clientIds.length === 0) throw new ConfigError(`${prefix}_KEY must list the client ids of ${variable}`);
    const algorithms = settings.list(`${prefix}_ALGORITHMS`);
    for (const alg of algorithms) {
      if (!ASYMMETRIC.has(alg))
        throw new ConfigError(`${prefix}_ALGORITHMS: "${alg}" is not an allowed asymmetric algorithm`);
    }
    configs.push({
      name: match[1]!.toLowerCase(),
      issuer,
      clientIds,
      algorithms: algorithms.length ? algorithms : ['RS256'],
      tenants: settings.list(`${prefix}_TENANTS`),
      httpsOnly: settings.production,
      nonceRule: nonceRuleOf(settings, `${prefix}_REQUIRE_NONCE`),
    });
  }
  return configs;
}

/** Verifies ID tokens with the keys named by the issuer's discovery document, fetched once and cached. */
export function createOidcProvider(config: OidcConfig, { http, clockToleranceSeconds }: ProviderContext): Provider {
  const name = `oidc:${config.name}`;
  let policy: Promise<IdTokenPolicy> | undefined;

  const discover = async (): Promise<IdTokenPolicy> => {
    const url = `${config.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const { status, body } = await http.json(url);
    const jwksUri = isObject(body) ? text(body, 'jwks_uri') : undefined;
    if (status !== 200 || !isObject(body) || !jwksUri || !/^https?:\/\//.test(jwksUri)) {
      throw new ProviderUnavailableError(name, `answered its discovery document with HTTP ${status} and no jwks_uri`);
    }
    // The keys are the trust anchor: fetched over plain http, anyone on the path could swap them.
    if (config.httpsOnly && !isSafeTransport(new URL(jwksUri))) {
      throw new ProviderUnavailableError(name, 'its discovery document names a jwks_uri that is not https', {
        failure: 'app_refused',
        hint: `${name}'s keys would travel over plain http: refused in production`,
      });
    }
    const discovered = text(body, 'issuer');
    const issuers = issuersOf(config, discovered);
    if (!issuers)
      throw new ProviderUnavailableError(name, 'its discovery document names another issuer than configured');
    return {
      jwks: new JwksCache(http, jwksUri),
      issuers,
      audiences: config.clientIds,
      algorithms: config.algorithms,
      nonceRule: config.nonceRule,
      clockToleranceSeconds,
      keyAccepted: keySignsFor,
    };
  };
  // A failed discovery is retried by the next request instead of being remembered.
  const getPolicy = () =>
    (policy ??= discover().catch((error: unknown) => {
      policy = undefined;
      throw error;
    }));

  return {
    name,
    warmUp() {
      getPolicy().then(
        (ready) => ready.jwks.warmUp(),
        () => {},
      );
    },
    async verify(input) {
      const token = requireField(input, 'id_token', name);
      const policy = await getPolicy();
      const claims = await verifyIdToken(token, policy, input.nonce);
      // sub is unique within its issuer (OpenID Connect Core 2); a multi-tenant endpoint's issuer is the tenant's.
      const multiTenant = typeof policy.issuers === 'function';
      const facts = {
        uid: multiTenant ? `${String(claims.tid)}:${String(claims.sub)}` : String(claims.sub),
        name: text(claims, 'name'),
        email: text(claims, 'email'),
        email_verified: flag(claims.email_verified), // OpenID Connect Core 5.1: only this claim says so
        username: text(claims, 'preferred_username'),
      };
      return account(
        facts,
        {
          sub: claims.sub,
          iss: claims.iss,
          email: facts.email ?? null,
          email_verified: flag(claims.email_verified),
          ...(multiTenant ? { tid: claims.tid } : {}),
          name: facts.name ?? null,
          expires_at: claims.exp ?? null,
        },
        { idToken: idTokenProof(token, claims, input.nonce, config.nonceRule, clockToleranceSeconds) },
      );
    },
  };
}

/**
 * A key that names the issuer it signs for (Microsoft's keys: `{tenantid}` or one tenant) must not sign another
 * issuer's tokens; a key that names none may sign any, as Microsoft's own validator has it
 * (AzureAD/azure-activedirectory-identitymodel-extensions-for-dotnet, AadTokenValidationParametersExtension.cs).
 */
function keySignsFor(key: JWK | undefined, claims: JWTPayload, published: readonly JWK[]): boolean {
  // Which key signed is unknown (no kid): only a set where no key is bound to an issuer leaves no doubt.
  if (key === undefined) return published.every((candidate) => issuerOfKey(candidate) === undefined);
  const keyIssuer = issuerOfKey(key);
  return keyIssuer === undefined || keyIssuer.replace('{tenantid}', String(claims.tid)) === claims.iss;
}

/** The issuer a published key is bound to (Microsoft's `issuer` member), if any. */
function issuerOfKey(key: JWK): string | undefined {
  const issuer = (key as { issuer?: unknown }).issuer;
  return typeof issuer === 'string' && issuer.trim() !== '' ? issuer : undefined;
}

/** Microsoft's tenant-independent endpoints, whose discovery document names an issuer template. */
const TENANT_INDEPENDENT = ['common', 'organizations', 'consumers'];

/**
 * Whether the configured issuer is a tenant-independent endpoint (Microsoft's `…/common/v2.0`): every
 * tenant's administrator decides its accounts' e-mail claims, so its e-mails are no evidence by default.
 */
export const isMultiTenantIssuer = (issuer: string): boolean =>
  TENANT_INDEPENDENT.some((tenant) => new URL(issuer).pathname.split('/').includes(tenant));
const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The issuers to accept, from the discovery document's `issuer`: the configured issuer exactly (OpenID
 * Connect Discovery 4.3); or, for a multi-tenant endpoint such as Microsoft's `…/common/v2.0`, whose document
 * names `…/{tenantid}/v2.0`, the template filled with the token's own `tid` claim — so a token's `iss` must
 * name the tenant its `tid` names (Microsoft's rule for multi-tenant apps); or, for a Microsoft alias of one
 * tenant (`…/consumers/v2.0`, or the tenant's domain name `…/contoso.onmicrosoft.com/v2.0`), whose document names
 * the tenant by its id, that tenant's issuer. Undefined: not the configured issuer.
 */
function issuersOf(config: OidcConfig, discovered: string | undefined): IdTokenPolicy['issuers'] | undefined {
  if (discovered === config.issuer) return [config.issuer];
  if (discovered !== undefined && namesTheSameTenant(config.issuer, discovered)) return [discovered];
  if (!discovered?.includes('{tenantid}')) return undefined;
  if (!TENANT_INDEPENDENT.some((tenant) => discovered.replace('{tenantid}', tenant) === config.issuer))
    return undefined;
  return (claims) => {
    const tid = claims.tid;
    if (typeof tid !== 'string' || !TENANT_ID.test(tid)) return [];
    if (config.tenants.length > 0 && !config.tenants.includes(tid)) return [];
    return [discovered.replace('{tenantid}', tid)];
  };
}

/**
 * Is `discovered` the issuer of the one tenant the configured alias names? Same origin and path but for the
 * tenant segment before the final `v2.0`: `consumers` or a domain name in the configuration, a tenant id in the
 * document. (The document came
 * from the configured issuer's own host, over https in production: it is the authority on its tenant's id.)
 */
function namesTheSameTenant(configured: string, discovered: string): boolean {
  let ours: URL;
  let theirs: URL;
  try {
    ours = new URL(configured);
    theirs = new URL(discovered);
  } catch {
    return false;
  }
  if (ours.origin !== theirs.origin) return false;
  // Microsoft's shape, …/{tenant}/v2.0: only the tenant, the segment before the final v2.0, differs.
  const a = ours.pathname.replace(/\/+$/, '').split('/');
  const b = theirs.pathname.replace(/\/+$/, '').split('/');
  const at = a.length - 2;
  if (at < 1 || a.length !== b.length || a.at(-1) !== 'v2.0' || a.some((segment, i) => i !== at && segment !== b[i]))
    return false;
  return TENANT_ID.test(b[at]!) && (a[at] === 'consumers' || /^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$/i.test(a[at]!));
}
