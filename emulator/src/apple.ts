import { createHash, randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import { providerFaultHook } from './faults.js';
import { isFormPost, type RequestRequirement } from './request-checks.js';
import {
  compactClaims,
  hostOrigin,
  idTokenTimes,
  InvalidRequestError,
  sendJwks,
  upsertPerson,
  type MintIdTokenInput,
  type MintedIdToken,
  type Person,
} from './id-tokens.js';
import { OidcIssuer, type FirstKeyPairs } from './oidc-issuer.js';
import { randomAlphanumeric, randomHex } from './random.js';
import type { EmulatorState } from './state.js';

// Emulates Sign in with Apple (https://appleid.apple.com): the identity-token keys (/auth/keys), the
// token endpoint that redeems authorization codes (/auth/token) and token revocation (/auth/revoke), and
// the user migration of an app transfer (client_credentials tokens of scope user.migration,
// /auth/usermigrationinfo; sources: test/fixtures/apple-migration/).

export const APPLE_ISSUER = 'https://appleid.apple.com';

export interface AppleOptions {
  /** Bundle ids (native) and services ids (web); the first is the default audience. */
  clientIds: string[];
  /** Our Apple developer team id: the `iss` of our client secrets. */
  teamId: string;
  /** Public ES256 JWK of each of our Sign in with Apple private keys, by key id. */
  keys: Record<string, JWK>;
}

export interface MintAppleCodeInput {
  client_id?: string;
  sub?: string;
  email?: string;
  /** The user's name, which Apple gives the app (in `user`) on the first authorization only. */
  name?: string;
  /** Embedded in the ID tokens as sent: pass the hashed value, as the app gives Apple sha256(raw nonce). */
  nonce?: string;
  /**
   * The redirect_uri of the authorization request (a web flow). A code minted with one is redeemed only with that
   * same redirect_uri, one minted without (a native app's) only without: anything else is invalid_grant.
   */
  redirect_uri?: string;
}

export interface MintedAppleCode {
  code: string;
  sub: string;
  /** The identity token the app receives with this code (its c_hash binds the code). */
  id_token: string;
  /**
   * The `user` JSON text ({"name": {"firstName", "lastName"}, "email"}) Apple hands the app on the user's
   * FIRST authorization of this client only; absent afterwards.
   */
  user?: string;
}

export interface AppleRevocation {
  token: string;
  client_id: string;
  token_type_hint: string | null;
  /** ISO 8601. */
  at: string;
}

export const mintAppleCodeBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    client_id: { type: 'string', minLength: 1 },
    sub: { type: 'string', minLength: 1, maxLength: 255 },
    email: { type: 'string', format: 'email' },
    name: { type: 'string', minLength: 1 },
    nonce: { type: 'string', minLength: 1 },
    redirect_uri: { type: 'string', minLength: 1 },
  },
} as const;

/** Apple refuses client secrets valid for longer than 15777000 seconds (6 months). */
const MAX_CLIENT_SECRET_LIFETIME_SECONDS = 15_777_000;
/** Authorization codes are single use and valid for five minutes. */
const CODE_LIFETIME_MS = 5 * 60 * 1000;
const ACCESS_TOKEN_LIFETIME_SECONDS = 3600;

interface AppleCode {
  clientId: string;
  sub: string;
  nonce: string | undefined;
  /** The authorization request's redirect_uri, if it had one: the token request must repeat it exactly. */
  redirectUri: string | undefined;
  expiresAtMs: number;
  used: boolean;
}

interface AppleGrant {
  clientId: string;
  sub: string;
}

/** A client_credentials token of scope user.migration: good for one team's usermigrationinfo calls. */
interface MigrationToken {
  teamId: string;
  expiresAtMs: number;
}

export const addAppleTeamBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['team_id', 'keys'],
  properties: {
    team_id: { type: 'string', pattern: '^[A-Z0-9]{10}$' },
    keys: { type: 'object', minProperties: 1, additionalProperties: { type: 'object' } },
  },
} as const;

export class AppleProvider {
  // Apple's key ids are 10 characters: "lVHdOx8ltR".
  readonly issuer: OidcIssuer;
  /** "<client id> <sub>" of every authorization so far: Apple sends the user's name on the first one only. */
  readonly authorized = new Set<string>();
  readonly users = new Map<string, Person>();
  readonly codes = new Map<string, AppleCode>();
  readonly refreshTokens = new Map<string, AppleGrant>();
  readonly accessTokens = new Map<string, AppleGrant>();
  revocations: AppleRevocation[] = [];
  /** Configured client ids, plus those codes were minted for. */
  clientIds: Set<string>;
  readonly teamId: string;
  /** Public keys by team id, then key id: our team's, and the other teams an app may be transferred to. */
  readonly teams = new Map<string, Map<string, JWK>>();
  readonly migrationTokens = new Map<string, MigrationToken>();
  /** transfer_sub → the user's sub under our team, and the recipient team it was made for. */
  readonly transfers = new Map<string, { sub: string; target: string }>();
  /** "<sub> <team>" → the same person's sub under another team (made on the first exchange). */
  readonly teamSubs = new Map<string, string>();

  constructor(
    private readonly options: AppleOptions,
    keyPairs: FirstKeyPairs,
  ) {
    this.issuer = new OidcIssuer(keyPairs, () => randomAlphanumeric(10));
    this.clientIds = new Set(options.clientIds);
    this.teamId = options.teamId;
    this.teams.set(options.teamId, new Map(Object.entries(options.keys)));
  }

  reset(): void {
    this.issuer.reset();
    this.users.clear();
    this.codes.clear();
    this.refreshTokens.clear();
    this.accessTokens.clear();
    this.revocations = [];
    this.authorized.clear();
    this.clientIds = new Set(this.options.clientIds);
    this.teams.clear();
    this.teams.set(this.options.teamId, new Map(Object.entries(this.options.keys)));
    this.migrationTokens.clear();
    this.transfers.clear();
    this.teamSubs.clear();
  }

  /** Another developer team (the recipient of an app transfer), with its Sign in with Apple public keys. */
  addTeam(teamId: string, keys: Record<string, JWK>): void {
    this.teams.set(teamId, new Map(Object.entries(keys)));
  }

  defaultClientId(): string {
    const clientId = this.options.clientIds[0];
    if (clientId === undefined) throw new InvalidRequestError('no Apple client id is configured: pass aud / client_id');
    return clientId;
  }
}

/** "001234.5e201aec537347aeb79d23cbc345170a.1321": stable per user and developer team. */
function newAppleSub(): string {
  return `${String(randomInt(1_000_000)).padStart(6, '0')}.${randomHex(32)}.${String(randomInt(10_000)).padStart(4, '0')}`;
}

/** at_hash / c_hash (OpenID Connect Core 3.1.3.6): base64url of the left half of SHA-256 of the value. */
function halfHash(value: string): string {
  return createHash('sha256').update(value).digest().subarray(0, 16).toString('base64url');
}

/** Apple's opaque tokens and codes look like "c1f6...e8.0.rsza.AbCd...": a type letter, hex, then random parts. */
function appleOpaque(kind: 'a' | 'c' | 'r'): string {
  return `${kind}${randomHex(32)}.0.${randomAlphanumeric(4).toLowerCase()}.${randomAlphanumeric(22)}`;
}

async function appleIdToken(
  apple: AppleProvider,
  user: Person,
  aud: string | string[],
  input: MintIdTokenInput,
  hashes: { c_hash?: string; at_hash?: string } = {},
): Promise<MintedIdToken> {
  const times = idTokenTimes(input);
  const claims = {
    ...compactClaims({
      iss: input.iss ?? APPLE_ISSUER,
      aud,
      azp: input.azp,
      exp: times.exp,
      iat: times.iat,
      sub: user.sub,
      ...hashes,
      nonce: input.nonce,
      email: user.email,
      // Apple writes these flags as strings in the tokens apps get ("true"); pass claims {email_verified: true} for booleans.
      email_verified: String(user.email_verified),
      is_private_email: String(user.email.endsWith('@privaterelay.appleid.com')),
      auth_time: times.iat,
      nonce_supported: true,
      // 2: "likely real" (0 unsupported, 1 unknown).
      real_user_status: 2,
    }),
    ...input.claims,
  };
  return { id_token: await apple.issuer.mint(claims, input.forge), sub: user.sub, claims };
}

export function mintAppleIdToken(apple: AppleProvider, input: MintIdTokenInput): Promise<MintedIdToken> {
  const user = upsertPerson(apple.users, input, newAppleSub);
  return appleIdToken(apple, user, input.aud ?? apple.defaultClientId(), input);
}

/** A single-use authorization code for /auth/token, with the identity token the app would get along. */
export async function mintAppleCode(apple: AppleProvider, input: MintAppleCodeInput): Promise<MintedAppleCode> {
  const clientId = input.client_id ?? apple.defaultClientId();
  apple.clientIds.add(clientId);
  const user = upsertPerson(apple.users, input, newAppleSub);
  const code = appleOpaque('c');
  apple.codes.set(code, {
    clientId,
    sub: user.sub,
    nonce: input.nonce,
    redirectUri: input.redirect_uri,
    expiresAtMs: Date.now() + CODE_LIFETIME_MS,
    used: false,
  });
  const { id_token } = await appleIdToken(apple, user, clientId, { nonce: input.nonce }, { c_hash: halfHash(code) });
  const first = !apple.authorized.has(`${clientId} ${user.sub}`);
  apple.authorized.add(`${clientId} ${user.sub}`);
  const name = { firstName: user.given_name, lastName: user.family_name };
  return { code, sub: user.sub, id_token, ...(first ? { user: JSON.stringify({ name, email: user.email }) } : {}) };
}

type Form = Record<string, string | undefined>;

/**
 * Apple reads form posts only: its token, revocation and migration endpoints take application/x-www-form-urlencoded
 * and answer another body as one without client credentials, invalid_client (sources: provider-requests/apple.json).
 */
const FORM_REQUIRED: RequestRequirement = {
  id: 'form_encoded',
  met: isFormPost,
  refusal: () => ({ status: 400, body: { error: 'invalid_client' } }),
};
const FORM_POST = { config: { requires: [FORM_REQUIRED] } };

function sendAppleError(reply: FastifyReply, error: string, description?: string): FastifyReply {
  return reply.code(400).send(description === undefined ? { error } : { error, error_description: description });
}

export function appleRoutes(state: EmulatorState, apple: AppleProvider) {
  /**
   * The client secret is an ES256 JWT signed with a team's Sign in with Apple key: checked for real. Answers
   * the team it authenticates (its `iss`), or undefined. (An app transferred keeps its client id: the new team
   * signs for it too.)
   */
  async function authenticatedTeam(form: Form): Promise<string | undefined> {
    const { client_id: clientId, client_secret: clientSecret } = form;
    if (!clientId || !clientSecret || !apple.clientIds.has(clientId)) return undefined;
    try {
      const { kid, alg } = decodeProtectedHeader(clientSecret);
      const { iss } = decodeJwt(clientSecret);
      const jwk = kid === undefined || typeof iss !== 'string' ? undefined : apple.teams.get(iss)?.get(kid);
      if (!jwk || alg !== 'ES256') return undefined;
      const { payload } = await jwtVerify(clientSecret, await importJWK(jwk, 'ES256'), {
        algorithms: ['ES256'],
        issuer: iss,
        subject: clientId,
        audience: APPLE_ISSUER,
        requiredClaims: ['iat', 'exp'],
      });
      return (payload.exp ?? 0) - (payload.iat ?? 0) <= MAX_CLIENT_SECRET_LIFETIME_SECONDS
        ? (iss as string)
        : undefined;
    } catch {
      return undefined;
    }
  }

  /** Codes, refresh and revocation: our own team only. */
  const clientAuthenticated = async (form: Form) => (await authenticatedTeam(form)) === apple.teamId;

  function issueAccessToken(grant: AppleGrant): string {
    const accessToken = appleOpaque('a');
    apple.accessTokens.set(accessToken, grant);
    return accessToken;
  }

  async function token(request: FastifyRequest, reply: FastifyReply) {
    const form = formOf(request);
    // Apple checks the client first: an empty or JSON body gets invalid_client.
    const team = await authenticatedTeam(form);
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
    if (team !== undefined && form.grant_type === 'client_credentials') {
      // User migration: a token of scope user.migration, for usermigrationinfo (TN3159).
      if (form.scope !== 'user.migration') return sendAppleError(reply, 'invalid_scope');
      const accessToken = appleOpaque('a');
      apple.migrationTokens.set(accessToken, {
        teamId: team,
        expiresAtMs: Date.now() + ACCESS_TOKEN_LIFETIME_SECONDS * 1000,
      });
      return { access_token: accessToken, token_type: 'Bearer', expires_in: ACCESS_TOKEN_LIFETIME_SECONDS };
    }
    if (team !== apple.teamId) return sendAppleError(reply, 'invalid_client');
    const clientId = form.client_id ?? '';

    if (form.grant_type === 'authorization_code') {
      if (!form.code) return sendAppleError(reply, 'invalid_request', 'code is required');
      const code = apple.codes.get(form.code);
      if (!code || code.expiresAtMs <= Date.now())
        return sendAppleError(reply, 'invalid_grant', 'The code has expired or has been revoked.');
      if (code.used) return sendAppleError(reply, 'invalid_grant', 'The code has already been used.');
      if (code.clientId !== clientId)
        return sendAppleError(reply, 'invalid_grant', 'client_id mismatch. The code was not issued to this client.');
      // redirect_uri only if the authorization request had one, then the same (Apple's token doc, RFC 6749 §4.1.3;
      // a mismatch is invalid_grant, RFC 6749 §5.2): sources in test/fixtures/provider-requests/apple.json.
      if (code.redirectUri !== form.redirect_uri) return sendAppleError(reply, 'invalid_grant');
      const user = apple.users.get(code.sub);
      if (!user) return sendAppleError(reply, 'invalid_grant', 'The code has expired or has been revoked.');
      code.used = true;

      const grant = { clientId, sub: code.sub };
      const accessToken = issueAccessToken(grant);
      const refreshToken = appleOpaque('r');
      apple.refreshTokens.set(refreshToken, grant);
      const { id_token } = await appleIdToken(
        apple,
        user,
        clientId,
        { nonce: code.nonce },
        { at_hash: halfHash(accessToken) },
      );
      return {
        access_token: accessToken,
        token_type: 'Bearer',
        expires_in: ACCESS_TOKEN_LIFETIME_SECONDS,
        refresh_token: refreshToken,
        id_token,
      };
    }

    if (form.grant_type === 'refresh_token') {
      if (!form.refresh_token) return sendAppleError(reply, 'invalid_request', 'refresh_token is required');
      const grant = apple.refreshTokens.get(form.refresh_token);
      const user = grant && apple.users.get(grant.sub);
      if (!grant || !user || grant.clientId !== clientId) {
        return sendAppleError(reply, 'invalid_grant', 'The token has expired or has been revoked.');
      }
      const accessToken = issueAccessToken(grant);
      const { id_token } = await appleIdToken(apple, user, clientId, {}, { at_hash: halfHash(accessToken) });
      // A refresh answers no new refresh token.
      return { access_token: accessToken, token_type: 'Bearer', expires_in: ACCESS_TOKEN_LIFETIME_SECONDS, id_token };
    }

    return sendAppleError(reply, form.grant_type ? 'unsupported_grant_type' : 'invalid_request');
  }

  async function revoke(request: FastifyRequest, reply: FastifyReply) {
    const form = formOf(request);
    if (!(await clientAuthenticated(form))) return sendAppleError(reply, 'invalid_client');
    if (!form.token) return sendAppleError(reply, 'invalid_request');
    const clientId = form.client_id ?? '';
    // Like RFC 7009, Apple answers 200 whether or not it knew the token; only our client's tokens are revoked.
    for (const tokens of [apple.refreshTokens, apple.accessTokens]) {
      if (tokens.get(form.token)?.clientId === clientId) tokens.delete(form.token);
    }
    apple.revocations.push({
      token: form.token,
      client_id: clientId,
      token_type_hint: form.token_type_hint ?? null,
      at: new Date().toISOString(),
    });
    return reply.code(200).send();
  }

  /**
   * POST /auth/usermigrationinfo: the old team asks a user's transfer identifier for a recipient team
   * ({sub, target}), the recipient team exchanges it for its own sub ({transfer_sub}). Bearer: a
   * user.migration token of the calling team.
   */
  async function userMigrationInfo(request: FastifyRequest, reply: FastifyReply) {
    const form = formOf(request);
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
    const team = await authenticatedTeam(form);
    if (team === undefined) return sendAppleError(reply, 'invalid_client');
    const bearer = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];
    const token = bearer === undefined ? undefined : apple.migrationTokens.get(bearer);
    if (!token || token.expiresAtMs <= Date.now() || token.teamId !== team)
      return sendAppleError(reply, 'invalid_grant');
    if (form.sub !== undefined && form.target !== undefined) {
      // Our users' subs are our team's; a sub unknown to the calling team, or a target that is itself, is refused.
      if (team !== apple.teamId || !apple.users.has(form.sub) || form.target === team)
        return sendAppleError(reply, 'invalid_request');
      const existing = [...apple.transfers].find(
        ([, transfer]) => transfer.sub === form.sub && transfer.target === form.target,
      )?.[0];
      const transferSub = existing ?? newAppleSub();
      apple.transfers.set(transferSub, { sub: form.sub, target: form.target });
      return { transfer_sub: transferSub };
    }
    if (form.transfer_sub !== undefined) {
      const transfer = apple.transfers.get(form.transfer_sub);
      if (!transfer || transfer.target !== team) return sendAppleError(reply, 'invalid_request');
      const key = `${transfer.sub} ${team}`;
      const sub = apple.teamSubs.get(key) ?? newAppleSub();
      apple.teamSubs.set(key, sub);
      // The e-mail comes only for a private relay address (TN3159).
      const email = apple.users.get(transfer.sub)?.email;
      return email?.endsWith('@privaterelay.appleid.com') ? { sub, email, is_private_email: true } : { sub };
    }
    return sendAppleError(reply, 'invalid_request');
  }

  return async function applePlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'apple', { serverError: () => ({ error: 'server_error' }) }));
    // Apple's endpoints take form posts; another plugin higher up may already parse them.
    if (!app.hasContentTypeParser('application/x-www-form-urlencoded')) {
      app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
        done(null, Object.fromEntries(new URLSearchParams(String(body))));
      });
    }

    app.get('/auth/keys', async (_request, reply) =>
      sendJwks(reply, await apple.issuer.jwks(), apple.issuer.jwksMaxAgeSeconds),
    );
    app.post('/auth/token', FORM_POST, token);
    app.post('/auth/revoke', FORM_POST, revoke);
    app.post('/auth/usermigrationinfo', FORM_POST, userMigrationInfo);

    app.get('/.well-known/openid-configuration', async (request) => {
      const base = `${hostOrigin(request)}/apple`;
      return {
        issuer: APPLE_ISSUER,
        authorization_endpoint: `${base}/auth/authorize`, // listed, not emulated: sign-in happens in the app
        token_endpoint: `${base}/auth/token`,
        revocation_endpoint: `${base}/auth/revoke`,
        jwks_uri: `${base}/auth/keys`,
        response_types_supported: ['code'],
        response_modes_supported: ['query', 'fragment', 'form_post'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid', 'email', 'name'],
        token_endpoint_auth_methods_supported: ['client_secret_post'],
        claims_supported: [
          'aud',
          'email',
          'email_verified',
          'exp',
          'iat',
          'is_private_email',
          'iss',
          'nonce',
          'nonce_supported',
          'real_user_status',
          'sub',
        ],
      };
    });
  };
}

/** Form fields of a form post; anything else (JSON, no body) has none, as Apple reads only forms. */
function formOf(request: FastifyRequest): Form {
  const contentType = request.headers['content-type'] ?? '';
  if (
    !contentType.startsWith('application/x-www-form-urlencoded') ||
    typeof request.body !== 'object' ||
    request.body === null
  )
    return {};
  return Object.fromEntries(
    Object.entries(request.body).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
}
