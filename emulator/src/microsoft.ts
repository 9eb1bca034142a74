import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { providerFaultHook } from './faults.js';
import {
  compactClaims,
  idTokenTimes,
  InvalidRequestError,
  listeningOrigin,
  sendJwks,
  upsertPerson,
  type MintIdTokenInput,
  type MintedIdToken,
  type Person,
} from './id-tokens.js';
import { OidcIssuer, type FirstKeyPairs } from './oidc-issuer.js';
import { randomBytesBase64Url } from './random.js';
import type { EmulatorState } from './state.js';

// Emulates the Microsoft identity platform's OpenID Connect endpoints (https://login.microsoftonline.com):
// per-tenant and multi-tenant discovery (`common` and `organizations` name the issuer template
// "…/{tenantid}/v2.0"; `consumers` and a tenant's domain name name the tenant's id, not the alias asked for),
// the key set, and v2.0 ID tokens whose `iss` names the user's tenant (`tid`).

export interface MicrosoftOptions {
  /** Our app's client (application) ids; the first is the default audience. */
  clientIds: string[];
}

export interface MintMicrosoftIdTokenInput extends MintIdTokenInput {
  /** The user's tenant; default: the personal-accounts tenant. */
  tid?: string;
  /**
   * Which published key signs: `common` (default), a key whose `issuer` is the {tenantid} template, or
   * `consumers`, a key bound to the personal-accounts tenant — signing another tenant's token with it is
   * the forgery a verifier must refuse; or `unbound`, a key published without an `issuer` member (Microsoft's
   * own validator checks a key's issuer only when the key names one).
   */
  signing_key?: 'common' | 'consumers' | 'unbound';
}

/** Personal Microsoft accounts (outlook.com, xbox…) all belong to this tenant. */
export const CONSUMERS_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';
const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class MicrosoftProvider {
  // Microsoft's kids are 27 base64url characters (the x5t of their certificate).
  readonly issuer: OidcIssuer;
  /** Keys published for the personal-accounts tenant only (their `issuer` names it). */
  readonly consumersKeys: OidcIssuer;
  /** Keys published without an `issuer` member. */
  readonly unboundKeys: OidcIssuer;
  readonly users = new Map<string, Person>();

  constructor(
    readonly clientIds: readonly string[],
    keyPairs: FirstKeyPairs,
  ) {
    const microsoftKid = () => randomBytesBase64Url(20);
    this.issuer = new OidcIssuer(keyPairs, microsoftKid);
    this.consumersKeys = new OidcIssuer(keyPairs, microsoftKid);
    this.unboundKeys = new OidcIssuer(keyPairs, microsoftKid);
  }

  reset(): void {
    this.issuer.reset();
    this.consumersKeys.reset();
    this.unboundKeys.reset();
    this.users.clear();
  }
}

/**
 * The emulator's tenant id for a domain-named tenant (contoso.onmicrosoft.com): a GUID made from the name, so that
 * every emulator gives the same. (Microsoft looks the verified domain up in its directory.)
 */
export function tenantOfDomain(domain: string): string {
  const hex = createHash('sha256').update(domain.toLowerCase()).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export function microsoftIssuer(origin: string, tenant: string): string {
  return `${origin}/microsoft/${tenant}/v2.0`;
}

/** A v2.0 ID token as Microsoft issues it for one of its tenants. */
export async function mintMicrosoftIdToken(
  ms: MicrosoftProvider,
  origin: string,
  input: MintMicrosoftIdTokenInput,
): Promise<MintedIdToken> {
  const aud = input.aud ?? ms.clientIds[0];
  if (aud === undefined) throw new InvalidRequestError('no Microsoft client id is configured: pass aud');
  const tid = input.tid ?? CONSUMERS_TENANT;
  if (!TENANT_ID.test(tid)) throw new InvalidRequestError('tid must be a tenant id (a GUID)');
  const user = upsertPerson(ms.users, input, randomUUID);
  const times = idTokenTimes(input);
  const claims = {
    ...compactClaims({
      ver: '2.0',
      iss: input.iss ?? microsoftIssuer(origin, tid),
      // sub is pairwise: one value per user and app; oid is the user's object id in the tenant.
      sub: createHash('sha256')
        .update(`${user.sub} ${String(aud)}`)
        .digest('base64url')
        .slice(0, 43),
      aud,
      exp: times.exp,
      iat: times.iat,
      nbf: times.iat,
      name: user.name,
      preferred_username: user.email,
      oid: user.sub,
      tid,
      nonce: input.nonce,
      aio: randomBytesBase64Url(64),
    }),
    ...input.claims,
  };
  const keys =
    input.signing_key === 'consumers' ? ms.consumersKeys : input.signing_key === 'unbound' ? ms.unboundKeys : ms.issuer;
  return { id_token: await keys.mint(claims, input.forge), sub: String(claims.sub), claims };
}

export function microsoftRoutes(state: EmulatorState, ms: MicrosoftProvider) {
  /** `common` and `organizations` name the issuer template; `consumers`, a tenant's domain name and a tenant id name that tenant's id. */
  function issuerOf(origin: string, tenant: string): string | undefined {
    if (tenant === 'common' || tenant === 'organizations') return microsoftIssuer(origin, '{tenantid}');
    if (tenant === 'consumers') return microsoftIssuer(origin, CONSUMERS_TENANT);
    if (/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(tenant)) return microsoftIssuer(origin, tenantOfDomain(tenant));
    return TENANT_ID.test(tenant) ? microsoftIssuer(origin, tenant.toLowerCase()) : undefined;
  }

  const unknownTenant = (reply: FastifyReply, tenant: string) =>
    reply.code(400).send({
      error: 'invalid_tenant',
      error_description: `AADSTS90002: Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
      error_codes: [90002],
      timestamp: new Date()
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z'),
      trace_id: randomUUID(),
      correlation_id: randomUUID(),
    });

  return async function microsoftPlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'oidc', { serverError: () => ({ error: 'server_error' }) }));

    app.get('/:tenant/v2.0/.well-known/openid-configuration', async (request: FastifyRequest, reply) => {
      const { tenant } = request.params as { tenant: string };
      const origin = listeningOrigin(request);
      const issuer = issuerOf(origin, tenant);
      if (!issuer) return unknownTenant(reply, tenant);
      const base = `${origin}/microsoft/${tenant}`;
      return {
        token_endpoint: `${base}/oauth2/v2.0/token`,
        token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
        jwks_uri: `${base}/discovery/v2.0/keys`,
        response_modes_supported: ['query', 'fragment', 'form_post'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        issuer,
        request_uri_parameter_supported: false,
        userinfo_endpoint: 'https://graph.microsoft.com/oidc/userinfo',
        // Listed as the real document lists them; sign-in itself happens in the app and is not emulated.
        authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
        device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
        http_logout_supported: true,
        frontchannel_logout_supported: true,
        end_session_endpoint: `${base}/oauth2/v2.0/logout`,
        claims_supported: [
          'sub',
          'iss',
          'cloud_instance_name',
          'cloud_instance_host_name',
          'cloud_graph_host_name',
          'msgraph_host',
          'aud',
          'exp',
          'iat',
          'auth_time',
          'acr',
          'nonce',
          'preferred_username',
          'name',
          'tid',
          'ver',
          'at_hash',
          'c_hash',
          'email',
        ],
        kerberos_endpoint: `${base}/kerberos`,
        tenant_region_scope: null,
        cloud_instance_name: 'microsoftonline.com',
        cloud_graph_host_name: 'graph.windows.net',
        msgraph_host: 'graph.microsoft.com',
        rbac_url: 'https://pas.windows.net',
      };
    });

    // Every tenant's key set is the same; each key names the issuers it signs for.
    app.get('/:tenant/discovery/v2.0/keys', async (request: FastifyRequest, reply) => {
      const { tenant } = request.params as { tenant: string };
      const issuer = issuerOf(listeningOrigin(request), tenant);
      if (!issuer) return unknownTenant(reply, tenant);
      const origin = listeningOrigin(request);
      const published = (keys: Array<{ kid: string; alg?: string }>, keyIssuer?: string) =>
        keys.map(({ alg: _alg, ...key }) => ({ ...key, x5t: key.kid, ...(keyIssuer ? { issuer: keyIssuer } : {}) }));
      const keys = [
        ...published((await ms.issuer.jwks()).keys, microsoftIssuer(origin, '{tenantid}')),
        ...published((await ms.consumersKeys.jwks()).keys, microsoftIssuer(origin, CONSUMERS_TENANT)),
        ...published((await ms.unboundKeys.jwks()).keys),
      ];
      return sendJwks(reply, { keys }, ms.issuer.jwksMaxAgeSeconds);
    });
  };
}
