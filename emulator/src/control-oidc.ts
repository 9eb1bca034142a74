import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import { controlConventions } from './control-conventions.js';
import {
  addAppleTeamBodySchema,
  mintAppleCode,
  mintAppleCodeBodySchema,
  mintAppleIdToken,
  type MintAppleCodeInput,
} from './apple.js';
import { mintFacebookLimitedToken } from './facebook-limited.js';
import {
  mintGoogleAccessToken,
  mintGoogleAccessTokenBodySchema,
  mintGoogleIdToken,
  type MintGoogleAccessTokenInput,
} from './google.js';
import type { IdProviders } from './id-providers.js';
import { listeningOrigin, mintIdTokenBodySchema, type MintIdTokenInput } from './id-tokens.js';
import { FORGERIES, type Forgery, type OidcIssuer } from './oidc-issuer.js';
import { mintMicrosoftIdToken, type MintMicrosoftIdTokenInput } from './microsoft.js';
import { mintOidcIdToken, OIDC_NAME_PATTERN } from './oidc.js';
import type { EmulatorState } from './state.js';

// The control API of the ID-token providers (under /_emulator): mint ID tokens (real or forged),
// Google access tokens and Apple codes, rotate signing keys, set the JWKS cache lifetime.

export type { AppleRevocation, MintAppleCodeInput, MintedAppleCode } from './apple.js';
export type { MintGoogleAccessTokenInput, MintedGoogleAccessToken } from './google.js';
export type { MintIdTokenInput, MintedIdToken } from './id-tokens.js';
export type { Forgery } from './oidc-issuer.js';

export interface RotateKeysInput {
  /** Stop publishing the older keys (tokens they signed stop verifying). Default false. */
  retire_old?: boolean;
}

export interface RotatedKeys {
  /** The new signing key. */
  kid: string;
  /** Every published key id. */
  kids: string[];
}

/** Providers with a key ring of their own; facebook is an alias of facebook-limited (Graph has no keys). */
const KEYED_PROVIDERS = ['google', 'apple', 'facebook-limited', 'facebook', 'microsoft'] as const;
type KeyedProvider = (typeof KEYED_PROVIDERS)[number];

const keyedProviderParamsSchema = {
  type: 'object',
  required: ['provider'],
  properties: { provider: { type: 'string', enum: KEYED_PROVIDERS } },
} as const;

const oidcNameParamsSchema = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', pattern: OIDC_NAME_PATTERN } },
} as const;

const rotateBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { retire_old: { type: 'boolean' } },
} as const;

const jwksCacheBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['max_age'],
  properties: { max_age: { type: 'integer', minimum: 0, maximum: 31_536_000 } },
} as const;

export const OIDC_CONTROL_ENDPOINTS = [
  'POST /_emulator/google/id_tokens',
  'POST /_emulator/google/tokens',
  'POST /_emulator/apple/id_tokens',
  'POST /_emulator/apple/codes',
  'GET /_emulator/apple/revocations',
  'POST /_emulator/apple/teams',
  'POST /_emulator/apple/notifications',
  'POST /_emulator/google/risc',
  'POST /_emulator/facebook/limited_tokens',
  'POST /_emulator/oidc/:name/id_tokens',
  'POST /_emulator/microsoft/id_tokens',
  'POST /_emulator/:provider/keys/rotate',
  'POST /_emulator/oidc/:name/keys/rotate',
  'PUT /_emulator/:provider/jwks_cache',
  'PUT /_emulator/oidc/:name/jwks_cache',
];

export function oidcControlRoutes(state: EmulatorState, ids: IdProviders) {
  function keyRing(provider: KeyedProvider): OidcIssuer {
    if (provider === 'google') return ids.google.issuer;
    if (provider === 'apple') return ids.apple.issuer;
    if (provider === 'microsoft') return ids.microsoft.issuer;
    return ids.facebookLimited.issuer;
  }

  return async function oidcControlPlugin(app: FastifyInstance): Promise<void> {
    controlConventions(app);

    const idTokenSchema = { schema: { body: mintIdTokenBodySchema } };

    app.post<{ Body: MintIdTokenInput }>('/google/id_tokens', idTokenSchema, async (request, reply) =>
      reply.code(201).send(await mintGoogleIdToken(ids.google, request.body)),
    );

    app.post<{ Body: MintIdTokenInput }>('/apple/id_tokens', idTokenSchema, async (request, reply) =>
      reply.code(201).send(await mintAppleIdToken(ids.apple, request.body)),
    );

    app.post<{ Body: MintIdTokenInput }>('/facebook/limited_tokens', idTokenSchema, async (request, reply) =>
      reply.code(201).send(await mintFacebookLimitedToken(state, ids.facebookLimited, request.body)),
    );

    app.post<{ Params: { name: string }; Body: MintIdTokenInput }>(
      '/oidc/:name/id_tokens',
      { schema: { params: oidcNameParamsSchema, body: mintIdTokenBodySchema } },
      async (request, reply) => {
        const issuer = ids.oidc.getOrCreate(request.params.name);
        return reply.code(201).send(await mintOidcIdToken(issuer, listeningOrigin(request), request.body));
      },
    );

    app.post<{ Body: MintMicrosoftIdTokenInput }>(
      '/microsoft/id_tokens',
      {
        schema: {
          body: {
            ...mintIdTokenBodySchema,
            properties: {
              ...mintIdTokenBodySchema.properties,
              tid: { type: 'string' },
              signing_key: { type: 'string', enum: ['common', 'consumers', 'unbound'] },
            },
          },
        },
      },
      async (request, reply) =>
        reply.code(201).send(await mintMicrosoftIdToken(ids.microsoft, listeningOrigin(request), request.body)),
    );

    app.post<{ Body: MintGoogleAccessTokenInput }>(
      '/google/tokens',
      { schema: { body: mintGoogleAccessTokenBodySchema } },
      async (request, reply) => reply.code(201).send(mintGoogleAccessToken(state, ids.google, request.body)),
    );

    app.post<{ Body: MintAppleCodeInput }>(
      '/apple/codes',
      { schema: { body: mintAppleCodeBodySchema } },
      async (request, reply) => reply.code(201).send(await mintAppleCode(ids.apple, request.body)),
    );

    app.get('/apple/revocations', async () => ({ revoked: ids.apple.revocations }));
    // Google's Cross-Account Protection (RISC): a security event token, signed with Google's keys, posted as
    // application/secevent+jwt (sources: test/fixtures/callbacks/google/).
    app.post<{
      Body: {
        event: string;
        sub: string;
        url: string;
        reason?: string;
        state?: string;
        client_id?: string;
        forge?: Forgery;
      };
    }>(
      '/google/risc',
      {
        schema: {
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['event', 'sub', 'url'],
            properties: {
              event: { type: 'string', pattern: '^[a-z-]+$' },
              sub: { type: 'string', minLength: 1 },
              url: { type: 'string', pattern: '^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])[:/]' },
              reason: { type: 'string' },
              state: { type: 'string' },
              client_id: { type: 'string' },
              forge: { enum: [...FORGERIES] },
            },
          },
        },
      },
      async (request) => {
        const { event, sub, url, reason, state } = request.body;
        // The OAuth event types (token(s)-revoked) have their own namespace.
        const namespace = event.startsWith('token') ? 'oauth' : 'risc';
        const subject = { subject_type: 'iss-sub', iss: 'https://accounts.google.com/', sub };
        const claims = {
          iss: 'https://accounts.google.com/',
          aud: request.body.client_id ?? ids.google.defaultClientId(),
          iat: Math.floor(Date.now() / 1000),
          jti: randomBytes(16).toString('hex'),
          // A verification event (the stream's test) echoes the state the receiver asked for.
          events: {
            [`https://schemas.openid.net/secevent/${namespace}/event-type/${event}`]: {
              subject,
              ...(reason ? { reason } : {}),
              ...(state ? { state } : {}),
            },
          },
        };
        const token = await ids.google.issuer.mint(claims, request.body.forge);
        const answer = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/secevent+jwt' },
          body: token,
        });
        return { status: answer.status, body: await answer.text() };
      },
    );

    // Apple notifies the app's server (server-to-server notifications): {"payload": JWT} signed with Apple's
    // identity-token keys, `events` a JSON text (sources: test/fixtures/callbacks/apple/).
    app.post<{ Body: { type: string; sub: string; url: string; email?: string; client_id?: string; forge?: Forgery } }>(
      '/apple/notifications',
      {
        schema: {
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['type', 'sub', 'url'],
            properties: {
              type: { type: 'string', minLength: 1 },
              sub: { type: 'string', minLength: 1 },
              url: { type: 'string', pattern: '^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])[:/]' },
              email: { type: 'string' },
              client_id: { type: 'string' },
              forge: { enum: [...FORGERIES] },
            },
          },
        },
      },
      async (request) => {
        const { type, sub, url, email } = request.body;
        const iat = Math.floor(Date.now() / 1000);
        const event = {
          type,
          sub,
          ...(email ? { email, is_private_email: String(email.endsWith('@privaterelay.appleid.com')) } : {}),
          event_time: Date.now(),
        };
        const claims = {
          iss: 'https://appleid.apple.com',
          aud: request.body.client_id ?? ids.apple.defaultClientId(),
          iat,
          exp: iat + 86_400,
          jti: randomBytes(16).toString('base64url'),
          events: JSON.stringify(event),
        };
        const payload = await ids.apple.issuer.mint(claims, request.body.forge);
        const answer = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ payload }),
        });
        return { status: answer.status, body: await answer.text() };
      },
    );
    // Another developer team (an app transfer's recipient), with the public JWKs of its Sign in with Apple keys by key id.
    app.post<{ Body: { team_id: string; keys: Record<string, JWK> } }>(
      '/apple/teams',
      { schema: { body: addAppleTeamBodySchema } },
      async (request, reply) => {
        ids.apple.addTeam(request.body.team_id, request.body.keys);
        return reply.code(204).send();
      },
    );

    app.post<{ Params: { provider: KeyedProvider }; Body: RotateKeysInput }>(
      '/:provider/keys/rotate',
      { schema: { params: keyedProviderParamsSchema, body: rotateBodySchema } },
      async (request): Promise<RotatedKeys> => keyRing(request.params.provider).rotate(request.body),
    );

    app.post<{ Params: { name: string }; Body: RotateKeysInput }>(
      '/oidc/:name/keys/rotate',
      { schema: { params: oidcNameParamsSchema, body: rotateBodySchema } },
      async (request): Promise<RotatedKeys> => ids.oidc.getOrCreate(request.params.name).keys.rotate(request.body),
    );

    app.put<{ Params: { provider: KeyedProvider }; Body: { max_age: number } }>(
      '/:provider/jwks_cache',
      { schema: { params: keyedProviderParamsSchema, body: jwksCacheBodySchema } },
      async (request) => {
        keyRing(request.params.provider).jwksMaxAgeSeconds = request.body.max_age;
        return { max_age: request.body.max_age };
      },
    );

    app.put<{ Params: { name: string }; Body: { max_age: number } }>(
      '/oidc/:name/jwks_cache',
      { schema: { params: oidcNameParamsSchema, body: jwksCacheBodySchema } },
      async (request) => {
        ids.oidc.getOrCreate(request.params.name).keys.jwksMaxAgeSeconds = request.body.max_age;
        return { max_age: request.body.max_age };
      },
    );
  };
}
