import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { providerFaultHook } from './faults.js';
import {
  compactClaims,
  firstAudience,
  hostOrigin,
  idTokenTimes,
  InvalidRequestError,
  queryParam,
  sendJwks,
  upsertPerson,
  type MintIdTokenInput,
  type MintedIdToken,
  type Person,
} from './id-tokens.js';
import { OidcIssuer, type FirstKeyPairs } from './oidc-issuer.js';
import { randomAlphanumeric, randomDigits } from './random.js';
import type { EmulatorState } from './state.js';

// Emulates Google Sign-In's ID tokens (https://www.googleapis.com/oauth2/v3/certs), the access-token
// check https://oauth2.googleapis.com/tokeninfo and https://openidconnect.googleapis.com/v1/userinfo.

export const GOOGLE_ISSUER = 'https://accounts.google.com';

export interface GoogleOptions {
  /** The server's OAuth client ids; the first is the default audience: the web ("server") client id. */
  clientIds: string[];
  /** The Android app's client id, the default `azp` of tokens for the web client id. Default: an emulated one. */
  androidClientId?: string;
}

/** A native app asking for a token for its backend gets aud = the web client id, azp = its own client id. */
const EMULATED_ANDROID_CLIENT_ID = '000000000000-emulatedandroidapp.apps.googleusercontent.com';

export interface MintGoogleAccessTokenInput {
  client_id?: string;
  sub?: string;
  email?: string;
  /** Space-separated, as Google writes scopes. */
  scope?: string;
  expires_in?: number;
}

export interface MintedGoogleAccessToken {
  access_token: string;
  sub: string;
  client_id: string;
  expires_at: number;
}

export const mintGoogleAccessTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    client_id: { type: 'string', minLength: 1 },
    sub: { type: 'string', minLength: 1, maxLength: 255 },
    email: { type: 'string', format: 'email' },
    scope: { type: 'string', minLength: 1 },
    expires_in: { type: 'integer' },
  },
} as const;

const EMAIL_SCOPE = 'https://www.googleapis.com/auth/userinfo.email';
const PROFILE_SCOPE = 'https://www.googleapis.com/auth/userinfo.profile';
const DEFAULT_SCOPE = `openid ${EMAIL_SCOPE} ${PROFILE_SCOPE}`;
/** Google's access tokens live an hour; its token endpoint says 3599. */
const ACCESS_TOKEN_LIFETIME_SECONDS = 3599;

export class GoogleProvider {
  readonly issuer: OidcIssuer;
  readonly users = new Map<string, Person>();

  constructor(
    keyPairs: FirstKeyPairs,
    readonly clientIds: readonly string[],
    readonly androidClientId = EMULATED_ANDROID_CLIENT_ID,
  ) {
    this.issuer = new OidcIssuer(keyPairs);
  }

  reset(): void {
    this.issuer.reset();
    this.users.clear();
  }

  defaultClientId(): string {
    const clientId = this.clientIds[0];
    if (clientId === undefined)
      throw new InvalidRequestError('no Google client id is configured: pass aud / client_id');
    return clientId;
  }
}

/** Google subs are 21-digit strings. */
function newGoogleSub(): string {
  return `1${randomDigits(20)}`;
}

/** The same user always has the same picture URL. */
function googlePicture(sub: string): string {
  return `https://lh3.googleusercontent.com/a/${createHash('sha256').update(sub).digest('base64url').slice(0, 40)}=s96-c`;
}

export async function mintGoogleIdToken(google: GoogleProvider, input: MintIdTokenInput): Promise<MintedIdToken> {
  const aud = input.aud ?? google.defaultClientId();
  const user = upsertPerson(google.users, input, newGoogleSub);
  // As Android's Credential Manager gets it for setServerClientId(web id); a token asked for another
  // audience (an iOS app without serverClientID) is authorized for that audience itself.
  const azp = input.azp ?? (input.aud === undefined ? google.androidClientId : firstAudience(aud));
  const claims = {
    ...compactClaims({
      iss: input.iss ?? GOOGLE_ISSUER,
      azp,
      aud,
      sub: user.sub,
      email: user.email,
      email_verified: user.email_verified,
      nonce: input.nonce,
      name: user.name,
      picture: googlePicture(user.sub),
      given_name: user.given_name,
      family_name: user.family_name,
      ...idTokenTimes(input),
    }),
    ...input.claims,
  };
  return { id_token: await google.issuer.mint(claims, input.forge), sub: user.sub, claims };
}

/** An opaque "ya29." access token, answered by tokeninfo and userinfo. */
export function mintGoogleAccessToken(
  state: EmulatorState,
  google: GoogleProvider,
  input: MintGoogleAccessTokenInput,
): MintedGoogleAccessToken {
  const clientId = input.client_id ?? google.defaultClientId();
  const user = upsertPerson(google.users, input, newGoogleSub);
  const now = Date.now();
  const expiresAtMs = now + (input.expires_in ?? ACCESS_TOKEN_LIFETIME_SECONDS) * 1000;
  const accessToken = `ya29.${randomAlphanumeric(160)}`;
  state.tokens.set(accessToken, {
    provider: 'google',
    clientId,
    userId: user.sub,
    scopes: (input.scope ?? DEFAULT_SCOPE).split(' ').filter(Boolean),
    issuedAtMs: Math.min(now, expiresAtMs),
    expiresAtMs,
  });
  return { access_token: accessToken, sub: user.sub, client_id: clientId, expires_at: Math.floor(expiresAtMs / 1000) };
}

function googleServerError() {
  return { error: { code: 500, message: 'Internal error encountered.', status: 'INTERNAL' } };
}

/** What tokeninfo answers for any token it cannot accept (unknown, expired, forged). */
const INVALID_TOKEN = { error: 'invalid_token', error_description: 'Invalid Value' };

function bearerToken(request: FastifyRequest): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
  return match?.[1] ?? queryParam(request, 'access_token');
}

export function googleRoutes(state: EmulatorState, google: GoogleProvider) {
  function validAccessToken(accessToken: string | undefined) {
    const token = accessToken === undefined ? undefined : state.tokens.get(accessToken);
    if (!token || token.provider !== 'google' || !state.isLive(token)) return undefined;
    const user = google.users.get(token.userId);
    return user ? { token, user } : undefined;
  }

  async function tokeninfo(request: FastifyRequest, reply: FastifyReply) {
    const idToken = queryParam(request, 'id_token');
    if (idToken !== undefined) return idTokenInfo(idToken, reply);

    const found = validAccessToken(queryParam(request, 'access_token'));
    if (!found) return reply.code(400).send(INVALID_TOKEN);
    const { token, user } = found;
    const expiresAt = Math.floor((token.expiresAtMs ?? 0) / 1000);
    const withEmail = token.scopes.includes(EMAIL_SCOPE) || token.scopes.includes('email');
    // Google writes every value of this answer as a string.
    return {
      azp: token.clientId,
      aud: token.clientId,
      sub: user.sub,
      scope: token.scopes.join(' '),
      exp: String(expiresAt),
      expires_in: String(Math.max(0, expiresAt - Math.floor(Date.now() / 1000))),
      ...(withEmail ? { email: user.email, email_verified: String(user.email_verified) } : {}),
      access_type: 'online',
    };
  }

  /** tokeninfo?id_token=: the token's claims (as strings) once its signature and expiry check out. */
  async function idTokenInfo(idToken: string, reply: FastifyReply) {
    try {
      const { payload, protectedHeader } = await jwtVerify(idToken, createLocalJWKSet(await google.issuer.jwks()), {
        algorithms: ['RS256'],
      });
      const claims = Object.fromEntries(
        Object.entries(payload).map(([name, value]) => [
          name,
          typeof value === 'number' || typeof value === 'boolean' ? String(value) : value,
        ]),
      );
      return { ...claims, alg: protectedHeader.alg, kid: protectedHeader.kid, typ: protectedHeader.typ };
    } catch {
      return reply.code(400).send(INVALID_TOKEN);
    }
  }

  async function userinfo(request: FastifyRequest, reply: FastifyReply) {
    const found = validAccessToken(bearerToken(request));
    if (!found) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="https://accounts.google.com/", error="invalid_token"')
        .send({ error: 'invalid_request', error_description: 'Invalid Credentials' });
    }
    const { token, user } = found;
    const scopes = token.scopes;
    const withProfile = scopes.includes(PROFILE_SCOPE) || scopes.includes('profile');
    const withEmail = scopes.includes(EMAIL_SCOPE) || scopes.includes('email');
    return compactClaims({
      sub: user.sub,
      ...(withProfile
        ? {
            name: user.name,
            given_name: user.given_name,
            family_name: user.family_name,
            picture: googlePicture(user.sub),
          }
        : {}),
      ...(withEmail ? { email: user.email, email_verified: user.email_verified } : {}),
    });
  }

  return async function googlePlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'google', { serverError: googleServerError }));

    app.get('/oauth2/v3/certs', async (_request, reply) =>
      sendJwks(reply, await google.issuer.jwks(), google.issuer.jwksMaxAgeSeconds, ', must-revalidate, no-transform'),
    );

    app.get('/.well-known/openid-configuration', async (request) => {
      const base = `${hostOrigin(request)}/google`;
      return {
        issuer: GOOGLE_ISSUER,
        // Sign-in itself happens in the app: these two are listed for completeness, not emulated.
        authorization_endpoint: `${base}/o/oauth2/v2/auth`,
        token_endpoint: `${base}/token`,
        userinfo_endpoint: `${base}/v1/userinfo`,
        jwks_uri: `${base}/oauth2/v3/certs`,
        response_types_supported: [
          'code',
          'token',
          'id_token',
          'code token',
          'code id_token',
          'token id_token',
          'code token id_token',
          'none',
        ],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid', 'email', 'profile'],
        token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
        claims_supported: [
          'aud',
          'email',
          'email_verified',
          'exp',
          'family_name',
          'given_name',
          'iat',
          'iss',
          'name',
          'picture',
          'sub',
        ],
      };
    });

    app.get('/tokeninfo', tokeninfo);
    app.get('/v1/userinfo', userinfo);
    // The same answer under www.googleapis.com's older path.
    app.get('/oauth2/v3/userinfo', userinfo);
  };
}
