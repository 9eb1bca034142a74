import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { compactVerify, decodeJwt, SignJWT } from 'jose';
import { isFormPost, type RequestRequirement } from './request-checks.js';
import { providerFaultHook, type FaultAnswers } from './faults.js';
import { randomAlphanumeric, randomBytesBase64Url, randomDigits, randomHex, randomPersonName } from './random.js';
import type { EmulatorState } from './state.js';

// Emulates the LINE Login v2.1 API (https://api.line.me) used to verify what the LINE SDK hands an app:
// an access token (GET /oauth2/v2.1/verify, GET /v2/profile) and an ID token (POST /oauth2/v2.1/verify).

export interface LineUserInput {
  userId?: string;
  displayName?: string;
  pictureUrl?: string;
  statusMessage?: string;
  email?: string;
}

export interface MintLineTokenInput {
  channel_id?: string;
  user?: LineUserInput;
  expires_in?: number;
  nonce?: string;
}

export interface MintedLineToken {
  access_token: string;
  id_token: string;
  user_id: string;
  channel_id: string;
  /** When the access token expires, in Unix seconds. */
  expires_at: number;
}

export const mintLineTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    channel_id: { type: 'string', minLength: 1 },
    user: {
      type: 'object',
      additionalProperties: false,
      properties: {
        userId: { type: 'string', pattern: '^U[0-9a-f]{32}$' },
        displayName: { type: 'string', minLength: 1 },
        pictureUrl: { type: 'string', format: 'uri' },
        statusMessage: { type: 'string' },
        email: { type: 'string', format: 'email' },
      },
    },
    expires_in: { type: 'integer' },
    nonce: { type: 'string', minLength: 1 },
  },
} as const;

interface LineUser {
  userId: string;
  displayName: string;
  pictureUrl: string;
  statusMessage: string;
  email: string;
}

const ISSUER = 'https://access.line.me';
/** Access tokens live 30 days; ID tokens one hour. */
const ACCESS_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600;
const ID_TOKEN_LIFETIME_SECONDS = 3600;
/** Granted scopes; LINE never lists email in the verify answer even when it was granted. */
const SCOPES = ['profile', 'openid', 'email'];

/** LINE's own state per emulator: channels (channel id -> channel secret) and users. */
class LineStore {
  channels: Map<string, string>;
  readonly users = new Map<string, LineUser>();

  constructor(private readonly configuredChannels: Record<string, string>) {
    this.channels = new Map(Object.entries(configuredChannels));
  }

  reset(): void {
    this.channels = new Map(Object.entries(this.configuredChannels));
    this.users.clear();
  }
}

const stores = new WeakMap<EmulatorState, LineStore>();

function lineStore(state: EmulatorState): LineStore {
  const store = stores.get(state);
  if (!store) throw new Error('LINE is not set up on this emulator: register lineRoutes first');
  return store;
}

/** Channel ids known right now, configured or registered on the fly. */
export function lineChannelIds(state: EmulatorState): string[] {
  return [...lineStore(state).channels.keys()];
}

export function defaultLineChannelId(state: EmulatorState): string | undefined {
  return lineChannelIds(state)[0];
}

/**
 * Issues an access token and a matching ID token for `channelId`, registering that channel with a
 * random secret if it is unknown (so tests can hold a token of another channel).
 */
export async function mintLineToken(
  state: EmulatorState,
  channelId: string,
  input: MintLineTokenInput,
): Promise<MintedLineToken> {
  const store = lineStore(state);
  // Real channel secrets are 32 hex digits.
  if (!store.channels.has(channelId)) store.channels.set(channelId, randomHex(32));
  const user = upsertLineUser(store, input.user ?? {});
  const now = Date.now();
  const expiresAtMs = now + (input.expires_in ?? ACCESS_TOKEN_LIFETIME_SECONDS) * 1000;
  // v2.1 access tokens are JWT-shaped; to clients they are opaque.
  const accessToken = `eyJhbGciOiJIUzI1NiJ9.${randomBytesBase64Url(120)}.${randomBytesBase64Url(32)}`;
  state.tokens.set(accessToken, {
    provider: 'line',
    clientId: channelId,
    userId: user.userId,
    scopes: SCOPES,
    issuedAtMs: Math.min(now, expiresAtMs),
    expiresAtMs,
  });
  // An access token minted already expired comes with an expired ID token.
  const idTokenExpMs = Math.min(expiresAtMs, now + ID_TOKEN_LIFETIME_SECONDS * 1000);
  const idToken = await signIdToken(store.channels.get(channelId) ?? '', {
    iss: ISSUER,
    sub: user.userId,
    aud: channelId,
    exp: unixSeconds(idTokenExpMs),
    iat: unixSeconds(Math.min(now, idTokenExpMs)),
    ...(input.nonce === undefined ? {} : { nonce: input.nonce }),
    // LINE's value for a login through the LINE SDK.
    amr: ['lineautologin'],
    name: user.displayName,
    picture: user.pictureUrl,
    email: user.email,
  });
  return {
    access_token: accessToken,
    id_token: idToken,
    user_id: user.userId,
    channel_id: channelId,
    expires_at: unixSeconds(expiresAtMs),
  };
}

/** Web-login ID tokens are HS256 JWTs signed with the channel secret. */
function signIdToken(channelSecret: string, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ typ: 'JWT', alg: 'HS256' })
    .sign(new TextEncoder().encode(channelSecret));
}

/** A known user id keeps its profile; only the fields given are changed. */
function upsertLineUser(store: LineStore, input: LineUserInput): LineUser {
  const userId = input.userId ?? `U${randomHex(32)}`;
  const user = { ...(store.users.get(userId) ?? newLineUser(userId)), ...input, userId };
  store.users.set(userId, user);
  return user;
}

function newLineUser(userId: string): LineUser {
  const { first, last } = randomPersonName();
  return {
    userId,
    displayName: `${first} ${last}`,
    pictureUrl: `https://profile.line-scdn.net/0h${randomAlphanumeric(60)}`,
    statusMessage: 'Hello, LINE!',
    email: `${first}.${last}.${randomDigits(4)}@example.com`.toLowerCase(),
  };
}

function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function sendOAuthError(reply: FastifyReply, description: string): FastifyReply {
  return reply.code(400).send({ error: 'invalid_request', error_description: description });
}

function bearerToken(request: FastifyRequest): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return match?.[1];
}

type Form = Record<string, string | undefined>;

/** LINE's answers to the emulator's faults, in the {"message"} form of its common errors. */
const lineFaultAnswers: FaultAnswers = {
  serverError: () => ({ message: 'Internal Server Error' }),
  rateLimited: () => ({ status: 429, body: { message: 'The API rate limit has been exceeded. Try again later.' } }),
  appAccessDenied: () => ({ status: 403, body: { message: 'Access to this API is not available for your account' } }),
};

/**
 * POST /oauth2/v2.1/verify takes a form (Content-Type application/x-www-form-urlencoded, required by LINE's
 * reference); another encoding is refused as a bad request (sources: test/fixtures/provider-requests/line.json).
 */
const FORM_REQUIRED: RequestRequirement = {
  id: 'form_encoded',
  met: isFormPost,
  refusal: () => ({ status: 400, body: { error: 'invalid_request', error_description: 'Invalid IdToken.' } }),
};

export function lineRoutes(state: EmulatorState, channels: Record<string, string>) {
  const store = new LineStore(channels);
  stores.set(state, store);
  state.onReset.push(() => store.reset());

  /** The live LINE token behind this value, or why not. */
  function lookUp(value: string | undefined) {
    const token = value === undefined ? undefined : state.tokens.get(value);
    if (!token || token.provider !== 'line' || token.revokedAtMs !== undefined) return { problem: 'invalid' as const };
    if (state.isExpired(token)) return { problem: 'expired' as const };
    return { token };
  }

  async function verifyAccessToken(request: FastifyRequest, reply: FastifyReply) {
    const { access_token: accessToken } = request.query as { access_token?: string };
    const { token, problem } = lookUp(accessToken);
    if (problem === 'expired') return sendOAuthError(reply, 'access token expired');
    if (!token) return sendOAuthError(reply, 'invalid access token');
    return {
      scope: token.scopes.filter((scope) => scope !== 'email').join(' '),
      client_id: token.clientId,
      expires_in: Math.floor(((token.expiresAtMs ?? 0) - Date.now()) / 1000),
    };
  }

  async function profile(request: FastifyRequest, reply: FastifyReply) {
    const { token } = lookUp(bearerToken(request));
    const user = token && store.users.get(token.userId);
    if (!user) return reply.code(401).send({ message: 'invalid token' });
    return {
      userId: user.userId,
      displayName: user.displayName,
      // Both are left out when the user has none.
      ...(user.pictureUrl ? { pictureUrl: user.pictureUrl } : {}),
      ...(user.statusMessage ? { statusMessage: user.statusMessage } : {}),
    };
  }

  /**
   * Checks an ID token as LINE does: LINE knows every channel's secret, so the signature is checked
   * with the secret of the channel the token names (aud), and only then compared with client_id.
   */
  async function verifyIdToken(request: FastifyRequest, reply: FastifyReply) {
    const form = (request.body ?? {}) as Form;
    const idToken = form.id_token ?? '';
    let audience: unknown;
    try {
      audience = decodeJwt(idToken).aud;
    } catch {
      return sendOAuthError(reply, 'Invalid IdToken.');
    }
    const secret = typeof audience === 'string' ? store.channels.get(audience) : undefined;
    if (secret === undefined) return sendOAuthError(reply, 'Invalid IdToken.');
    let claims: Record<string, unknown>;
    try {
      const { payload } = await compactVerify(idToken, new TextEncoder().encode(secret), { algorithms: ['HS256'] });
      claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    } catch {
      return sendOAuthError(reply, 'Invalid IdToken.');
    }
    if (claims.iss !== ISSUER) return sendOAuthError(reply, 'Invalid IdToken Issuer.');
    if (typeof claims.exp !== 'number' || claims.exp <= Date.now() / 1000)
      return sendOAuthError(reply, 'IdToken expired.');
    if (claims.aud !== form.client_id) return sendOAuthError(reply, 'Invalid IdToken Audience.');
    if (form.nonce !== undefined && claims.nonce !== form.nonce) return sendOAuthError(reply, 'Invalid IdToken Nonce.');
    if (form.user_id !== undefined && claims.sub !== form.user_id) {
      return sendOAuthError(reply, 'Invalid IdToken Subject Identifier.');
    }
    return claims;
  }

  return async function linePlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'line', lineFaultAnswers));
    // Every LINE answer carries a request id.
    app.addHook('onSend', async (_request, reply) => {
      reply.header('x-line-request-id', randomUUID());
    });
    // Fastify parses JSON only; LINE's verify endpoint takes a form. A repeated field keeps its first value.
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      const form: Form = {};
      for (const [name, value] of new URLSearchParams(body as string)) form[name] ??= value;
      done(null, form);
    });
    app.get('/oauth2/v2.1/verify', verifyAccessToken);
    app.post('/oauth2/v2.1/verify', { config: { requires: [FORM_REQUIRED] } }, verifyIdToken);
    app.get('/v2/profile', profile);
  };
}
