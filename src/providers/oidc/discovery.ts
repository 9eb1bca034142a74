import type { JWK, JWTPayload } from 'jose';
import { isSafeTransport } from '../../lib/settings.js';
import { isObject, text } from '../../lib/narrowing.js';
import type { Context } from '../define.js';
import type { IdTokenPolicy } from '../id-token.js';
import { JwksCache } from '../jwks.js';
import type { OidcConfig } from './config.js';

/**
 * `discover`, once: the policy is kept, and a failed discovery is retried by the next request instead of being
 * remembered.
 */
export function discovered(ctx: Context<OidcConfig, object>): () => Promise<IdTokenPolicy> {
  let policy: Promise<IdTokenPolicy> | undefined;
  return () =>
    (policy ??= discover(ctx).catch((error: unknown) => {
      policy = undefined;
      throw error;
    }));
}

/** The policy its ID tokens must meet, from the issuer's discovery document. */
export async function discover({
  name,
  config,
  http,
  clockToleranceSeconds,
  unavailable,
}: Context<OidcConfig, object>) {
  const url = `${config.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const { status, body } = await http.json(url);
  const jwksUri = isObject(body) ? text(body, 'jwks_uri') : undefined;
  if (status !== 200 || !isObject(body) || !jwksUri || !/^https?:\/\//.test(jwksUri)) {
    throw unavailable(`answered its discovery document with HTTP ${status} and no jwks_uri`);
  }
  // The keys are the trust anchor: fetched over plain http, anyone on the path could swap them.
  if (config.httpsOnly && !isSafeTransport(new URL(jwksUri))) {
    throw unavailable('its discovery document names a jwks_uri that is not https', {
      failure: 'app_refused',
      hint: `${name}'s keys would travel over plain http: refused in production`,
    });
  }
  const issuers = issuersOf(config, text(body, 'issuer'));
  if (!issuers) throw unavailable('its discovery document names another issuer than configured');
  const policy: IdTokenPolicy = {
    jwks: new JwksCache(http, jwksUri),
    issuers,
    audiences: config.clientIds,
    algorithms: config.algorithms,
    nonceRule: config.nonceRule,
    clockToleranceSeconds,
    keyAccepted: keySignsFor,
  };
  return policy;
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
