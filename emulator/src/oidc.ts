import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { providerFaultHook } from './faults.js';
import {
  compactClaims,
  firstAudience,
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
import type { EmulatorState } from './state.js';

// Any number of generic OpenID Connect issuers, by name, under /oidc/:name: discovery and JWKS,
// for the "any OpenID Connect provider" support. An issuer's identifier is <emulator origin>/oidc/<name>.

export interface OidcIssuerOptions {
  /** Our client ids at this issuer; the first is the default audience. */
  clientIds: string[];
}

/** Issuer names are one URL path segment. */
export const OIDC_NAME_PATTERN = '^[A-Za-z0-9_-]{1,64}$';

export interface GenericIssuer {
  readonly name: string;
  readonly keys: OidcIssuer;
  readonly clientIds: readonly string[];
  readonly users: Map<string, Person>;
}

export class OidcProviders {
  private readonly issuers = new Map<string, GenericIssuer>();

  constructor(
    configured: Record<string, OidcIssuerOptions>,
    private readonly keyPairs: FirstKeyPairs,
  ) {
    for (const [name, options] of Object.entries(configured)) this.create(name, options.clientIds);
  }

  get(name: string): GenericIssuer | undefined {
    return this.issuers.get(name);
  }

  /** The issuer of this name, created (with no client id of ours) on first use. */
  getOrCreate(name: string): GenericIssuer {
    return this.issuers.get(name) ?? this.create(name, []);
  }

  names(): string[] {
    return [...this.issuers.keys()];
  }

  /** Issuers stay (with their first key, so cached key sets stay good); their users go. */
  reset(): void {
    for (const issuer of this.issuers.values()) {
      issuer.keys.reset();
      issuer.users.clear();
    }
  }

  private create(name: string, clientIds: readonly string[]): GenericIssuer {
    if (!new RegExp(OIDC_NAME_PATTERN).test(name)) throw new Error(`invalid OpenID Connect issuer name "${name}"`);
    const issuer = {
      name,
      keys: new OidcIssuer(this.keyPairs),
      clientIds: [...clientIds],
      users: new Map<string, Person>(),
    };
    this.issuers.set(name, issuer);
    return issuer;
  }
}

export function oidcIssuerUrl(origin: string, name: string): string {
  return `${origin}/oidc/${name}`;
}

/** `origin`: the emulator's own, so that iss equals the discovery document's issuer. */
export async function mintOidcIdToken(
  issuer: GenericIssuer,
  origin: string,
  input: MintIdTokenInput,
): Promise<MintedIdToken> {
  const aud = input.aud ?? issuer.clientIds[0];
  if (aud === undefined)
    throw new InvalidRequestError(
      `no client id is configured for the OpenID Connect issuer "${issuer.name}": pass aud`,
    );
  const user = upsertPerson(issuer.users, input, randomUUID);
  const claims = {
    ...compactClaims({
      iss: input.iss ?? oidcIssuerUrl(origin, issuer.name),
      sub: user.sub,
      aud,
      // Required with several audiences (OpenID Connect Core 2).
      azp: input.azp ?? (Array.isArray(aud) && aud.length > 1 ? firstAudience(aud) : undefined),
      nonce: input.nonce,
      email: user.email,
      email_verified: user.email_verified,
      name: user.name,
      given_name: user.given_name,
      family_name: user.family_name,
      ...idTokenTimes(input),
    }),
    ...input.claims,
  };
  return { id_token: await issuer.keys.mint(claims, input.forge), sub: user.sub, claims };
}

export function oidcRoutes(state: EmulatorState, providers: OidcProviders) {
  function issuerOr404(request: FastifyRequest, reply: FastifyReply): GenericIssuer | undefined {
    const { name } = request.params as { name: string };
    const issuer = providers.get(name);
    if (!issuer)
      void reply
        .code(404)
        .send({ error: 'not_found', error_description: `no OpenID Connect issuer is named "${name}"` });
    return issuer;
  }

  return async function oidcPlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'oidc', { serverError: () => ({ error: 'server_error' }) }));

    app.get('/:name/.well-known/openid-configuration', async (request, reply) => {
      const issuer = issuerOr404(request, reply);
      if (!issuer) return reply;
      const base = oidcIssuerUrl(listeningOrigin(request), issuer.name);
      return {
        issuer: base,
        jwks_uri: `${base}/jwks`,
        // Listed as discovery requires them; only the ID tokens minted by the control API are emulated.
        authorization_endpoint: `${base}/authorize`,
        token_endpoint: `${base}/token`,
        userinfo_endpoint: `${base}/userinfo`,
        id_token_signing_alg_values_supported: ['RS256'],
        subject_types_supported: ['public'],
        response_types_supported: ['code', 'id_token', 'code id_token'],
        scopes_supported: ['openid', 'email', 'profile'],
        claims_supported: [
          'iss',
          'sub',
          'aud',
          'azp',
          'exp',
          'iat',
          'nonce',
          'email',
          'email_verified',
          'name',
          'given_name',
          'family_name',
        ],
      };
    });

    app.get('/:name/jwks', async (request, reply) => {
      const issuer = issuerOr404(request, reply);
      if (!issuer) return reply;
      return sendJwks(reply, await issuer.keys.jwks(), issuer.keys.jwksMaxAgeSeconds);
    });
  };
}
