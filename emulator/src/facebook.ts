import { createHmac, randomInt, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { providerFaultHook, type FaultAnswers } from './faults.js';
import type { RequestRequirement } from './request-checks.js';
import { randomAlphanumeric, randomBytesBase64Url, randomDigits, randomHex, randomPersonName } from './random.js';
import type { EmulatorState, FacebookUser, IssuedToken } from './state.js';

// Emulates the parts of the Graph API (https://graph.facebook.com) used to verify a user access token.

export interface FacebookUserInput {
  id?: string;
  name?: string;
  email?: string;
  first_name?: string;
  last_name?: string;
}

export interface MintFacebookTokenInput {
  app_id?: string;
  user?: FacebookUserInput;
  expires_in?: number;
  scopes?: string[];
}

export interface MintedFacebookToken {
  access_token: string;
  app_id: string;
  user_id: string;
  expires_at: number;
}

export const mintFacebookTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    app_id: { type: 'string', minLength: 1 },
    user: {
      type: 'object',
      additionalProperties: false,
      properties: {
        id: { type: 'string', pattern: '^[1-9][0-9]{0,19}$' },
        name: { type: 'string', minLength: 1 },
        email: { type: 'string', format: 'email' },
        first_name: { type: 'string', minLength: 1 },
        last_name: { type: 'string', minLength: 1 },
      },
    },
    expires_in: { type: 'integer' },
    scopes: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
} as const;

const DEFAULT_SCOPES = ['public_profile', 'email'];
const DEFAULT_EXPIRES_IN_SECONDS = 3600;
/** Graph lets an app read a user's data for 90 days after the user last used it. */
const DATA_ACCESS_WINDOW_MS = 90 * 24 * 3600 * 1000;

/** Issues a user access token for `appId`, registering that app with a random secret if it is unknown. */
export function mintFacebookToken(
  state: EmulatorState,
  appId: string,
  input: MintFacebookTokenInput,
): MintedFacebookToken {
  if (!state.clients.facebook.has(appId)) state.clients.facebook.set(appId, randomHex(32));
  const user = upsertFacebookUser(state, input.user ?? {});
  const now = Date.now();
  const expiresAtMs = now + (input.expires_in ?? DEFAULT_EXPIRES_IN_SECONDS) * 1000;
  // Real user access tokens start with "EAA" followed by a long opaque string.
  const accessToken = `EAA${randomAlphanumeric(180)}`;
  state.tokens.set(accessToken, {
    provider: 'facebook',
    clientId: appId,
    userId: user.id,
    scopes: input.scopes ?? DEFAULT_SCOPES,
    // A token minted already expired was issued no later than it expired.
    issuedAtMs: Math.min(now, expiresAtMs),
    expiresAtMs,
  });
  return { access_token: accessToken, app_id: appId, user_id: user.id, expires_at: unixSeconds(expiresAtMs) };
}

/** A known user id keeps its profile; only the fields given are changed. */
function upsertFacebookUser(state: EmulatorState, input: FacebookUserInput): FacebookUser {
  const id = input.id ?? randomDigits(randomInt(15, 18));
  const user = { ...(state.facebookUsers.get(id) ?? newFacebookUser(id, input.name)), ...input, id };
  state.facebookUsers.set(id, user);
  return user;
}

function newFacebookUser(id: string, name: string | undefined): FacebookUser {
  const random = randomPersonName();
  const [first, ...rest] = (name ?? `${random.first} ${random.last}`).split(' ');
  const firstName = first ?? random.first;
  const lastName = rest.join(' ') || random.last;
  return {
    id,
    name: `${firstName} ${lastName}`,
    first_name: firstName,
    last_name: lastName,
    email: `${firstName}.${lastName}.${id.slice(-4)}@example.com`.toLowerCase().replace(/\s+/g, ''),
  };
}

interface GraphError {
  message: string;
  type: string;
  code: number;
  error_subcode?: number;
}

const INVALID_TOKEN: GraphError = {
  message: 'Invalid OAuth access token - Cannot parse access token',
  type: 'OAuthException',
  code: 190,
};
/** An app access token whose secret is wrong. */
const INVALID_APP_TOKEN: GraphError = {
  message: 'Invalid OAuth access token signature.',
  type: 'OAuthException',
  code: 190,
};
/** debug_token inspects only tokens of the app that asks. */
const FOREIGN_INPUT_TOKEN: GraphError = {
  message: '(#100) The App_id in the input_token did not match the Viewing App',
  type: 'OAuthException',
  code: 100,
};
const REVOKED_MESSAGE =
  'Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.';
const NO_USER_TOKEN: GraphError = {
  message: 'An active access token must be used to query information about the current user.',
  type: 'OAuthException',
  code: 2500,
};
const INVALID_APPSECRET_PROOF: GraphError = {
  message: 'Invalid appsecret_proof provided in the API argument',
  type: 'GraphMethodException',
  code: 100,
};

/** Why a token of ours no longer works: expired (subcode 463) or revoked by the user (460). */
function deadTokenError(token: IssuedToken): GraphError {
  if (token.revokedAtMs !== undefined)
    return { message: REVOKED_MESSAGE, type: 'OAuthException', code: 190, error_subcode: 460 };
  return { message: expiredTokenMessage(token), type: 'OAuthException', code: 190, error_subcode: 463 };
}

function expiredTokenMessage(token: IssuedToken): string {
  return `Error validating access token: Session has expired on ${graphDate(token.expiresAtMs ?? 0)}. The current time is ${graphDate(Date.now())}.`;
}

/** Graph writes dates in Facebook's local time: "Monday, 24-Oct-16 21:00:00 PDT". */
function graphDate(ms: number): string {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/Los_Angeles',
    weekday: 'long',
    day: '2-digit',
    month: 'short',
    year: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'short',
  }).formatToParts(ms);
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? '';
  return `${part('weekday')}, ${part('day')}-${part('month')}-${part('year')} ${part('hour')}:${part('minute')}:${part('second')} ${part('timeZoneName')}`;
}

function sendGraphError(reply: FastifyReply, error: GraphError): FastifyReply {
  return reply.code(400).send({ error: { ...error, fbtrace_id: randomBytesBase64Url(17) } });
}

/** Graph's throttling errors by code (rate-limiting guide): its message, and whether Graph marks it transient. */
const RATE_LIMITS: Record<number, { message: string; transient?: boolean }> = {
  4: { message: '(#4) Application request limit reached', transient: true },
  17: { message: '(#17) User request limit reached' },
  32: { message: '(#32) Page request limit reached' },
  613: { message: '(#613) Calls to this api have exceeded the rate limit.' },
};
const BUSINESS_RATE_LIMIT =
  'There have been too many calls to this Page account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.';

/** The answers to the emulator's faults, as Graph gives them; usage headers say how much of the limit is used. */
export const graphFaultAnswers: FaultAnswers = {
  serverError: facebookServerError,
  rateLimited(fault) {
    const code = fault.code ?? 4;
    const known = RATE_LIMITS[code];
    const usage = { call_count: 100, total_cputime: 25, total_time: 25 };
    const headers: Record<string, string> =
      code >= 80000
        ? {
            'x-business-use-case-usage': JSON.stringify({
              '0': [{ type: 'pages', ...usage, estimated_time_to_regain_access: 1 }],
            }),
          }
        : { 'x-app-usage': JSON.stringify(usage) };
    return {
      status: 400,
      headers,
      body: {
        error: {
          message: known?.message ?? `(#${code}) ${BUSINESS_RATE_LIMIT}`,
          type: 'OAuthException',
          ...(known?.transient ? { is_transient: true } : {}),
          code,
          fbtrace_id: randomBytesBase64Url(17),
        },
      },
    };
  },
};

/** Graph says in WWW-Authenticate what kind of error it answered: "OAuth "Facebook Platform" "<kind>" "<message>"". */
function wwwAuthenticate(status: number, body: unknown): string | undefined {
  const error = (body as { error?: { code?: number; message?: string } } | undefined)?.error;
  if (status < 400 || !error?.message) return undefined;
  const kind = status >= 500 ? 'unknown_error' : error.code === 190 ? 'invalid_token' : 'invalid_request';
  return `OAuth "Facebook Platform" "${kind}" "${error.message}"`;
}

function facebookServerError() {
  return {
    error: {
      message: 'An unexpected error has occurred. Please retry your request later.',
      type: 'OAuthException',
      is_transient: true,
      code: 2,
      fbtrace_id: randomBytesBase64Url(17),
    },
  };
}

type Query = Record<string, string | string[] | undefined>;

function queryParam(request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Query)[name];
  return Array.isArray(value) ? value[0] : value;
}

function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/** appsecret_proof is hex HMAC-SHA256 of the access token keyed with the app secret. */
function appSecretProofMatches(proof: string, accessToken: string, appSecret: string): boolean {
  const expected = Buffer.from(createHmac('sha256', appSecret).update(accessToken).digest('hex'));
  const given = Buffer.from(proof.toLowerCase());
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * With the app's "Require App Secret" setting on (fault appsecret_proof: 'require'), Graph refuses a user-token
 * call without appsecret_proof (sources: test/fixtures/provider-requests/facebook.json).
 */
const APPSECRET_PROOF_REQUIRED: RequestRequirement = {
  id: 'appsecret_proof',
  met: (request, state) =>
    state.faults.facebook.appsecret_proof !== 'require' || Boolean(queryParam(request, 'appsecret_proof')),
  refusal: () => ({
    status: 400,
    body: {
      error: {
        message: 'API calls from the server require an appsecret_proof argument',
        type: 'GraphMethodException',
        code: 100,
        fbtrace_id: randomBytesBase64Url(17),
      },
    },
  }),
};

export function facebookRoutes(state: EmulatorState) {
  /** The app id of an app access token ("{app_id}|{app_secret}"), if it is one. */
  function appOfAppAccessToken(accessToken: string): string | undefined {
    const separator = accessToken.indexOf('|');
    if (separator < 0) return undefined;
    const appId = accessToken.slice(0, separator);
    return state.clients.facebook.get(appId) === accessToken.slice(separator + 1) ? appId : undefined;
  }

  /** A proof is optional (unless an app requires it), but a wrong one is always refused. */
  function appSecretProofRejected(request: FastifyRequest, accessToken: string, appId: string): boolean {
    const proof = queryParam(request, 'appsecret_proof');
    if (proof === undefined || state.faults.facebook.appsecret_proof === 'ignore') return false;
    return !appSecretProofMatches(proof, accessToken, state.clients.facebook.get(appId) ?? '');
  }

  function versionIsValid(request: FastifyRequest, reply: FastifyReply, endpoint: string): boolean {
    const { version } = request.params as { version?: string };
    if (version === undefined || /^v\d+\.\d+$/.test(version)) return true;
    sendGraphError(reply, {
      message: `Unknown path components: /${version}/${endpoint}`,
      type: 'OAuthException',
      code: 2500,
    });
    return false;
  }

  async function me(request: FastifyRequest, reply: FastifyReply) {
    if (!versionIsValid(request, reply, 'me')) return reply;
    const accessToken = queryParam(request, 'access_token');
    // An app access token has no "current user" either.
    if (!accessToken || appOfAppAccessToken(accessToken)) return sendGraphError(reply, NO_USER_TOKEN);
    const token = state.tokens.get(accessToken);
    if (!token || token.provider !== 'facebook') return sendGraphError(reply, INVALID_TOKEN);
    if (!state.isLive(token)) return sendGraphError(reply, deadTokenError(token));
    if (appSecretProofRejected(request, accessToken, token.clientId))
      return sendGraphError(reply, INVALID_APPSECRET_PROOF);

    const user = state.facebookUsers.get(token.userId);
    if (!user) return sendGraphError(reply, INVALID_TOKEN);
    const fields = (queryParam(request, 'fields') ?? 'id,name')
      .split(',')
      .map((field) => field.trim())
      .filter(Boolean);
    const profile: Record<string, unknown> = {};
    for (const field of fields) {
      switch (field) {
        case 'id':
        case 'name':
        case 'first_name':
        case 'last_name':
          profile[field] = user[field];
          break;
        case 'email':
          // Graph leaves email out when the user did not grant the email permission.
          if (token.scopes.includes('email')) profile.email = user.email;
          break;
        case 'picture':
          profile.picture = {
            data: {
              height: 50,
              is_silhouette: false,
              url: `https://platform-lookaside.fbsbx.com/platform/profilepic/?asid=${user.id}&height=50&width=50`,
              width: 50,
            },
          };
          break;
        default:
          return sendGraphError(reply, {
            message: `(#100) Tried accessing nonexisting field (${field}) on node type (User)`,
            type: 'OAuthException',
            code: 100,
          });
      }
    }
    // Graph always answers the node id, after the requested fields when it was not asked for.
    profile.id = user.id;
    return profile;
  }

  async function debugToken(request: FastifyRequest, reply: FastifyReply) {
    if (!versionIsValid(request, reply, 'debug_token')) return reply;
    const accessToken = queryParam(request, 'access_token');
    if (!accessToken) {
      return sendGraphError(reply, {
        message: 'An access token is required to request this resource.',
        type: 'OAuthException',
        code: 104,
      });
    }
    const callerAppId = appOfAppAccessToken(accessToken);
    if (!callerAppId) return sendGraphError(reply, accessToken.includes('|') ? INVALID_APP_TOKEN : INVALID_TOKEN);
    if (appSecretProofRejected(request, accessToken, callerAppId))
      return sendGraphError(reply, INVALID_APPSECRET_PROOF);
    const inputToken = queryParam(request, 'input_token');
    if (!inputToken) {
      return sendGraphError(reply, {
        message: '(#100) The parameter input_token is required',
        type: 'OAuthException',
        code: 100,
      });
    }

    const token = state.tokens.get(inputToken);
    if (!token || token.provider !== 'facebook') {
      return { data: { error: { code: 190, message: INVALID_TOKEN.message }, is_valid: false, scopes: [] } };
    }
    // Graph inspects only tokens of the app that asks: another app's token is refused, not described.
    if (token.clientId !== callerAppId) return sendGraphError(reply, FOREIGN_INPUT_TOKEN);
    const dead = state.isLive(token) ? undefined : deadTokenError(token);
    return {
      data: {
        app_id: token.clientId,
        type: 'USER',
        application: `Emulated app ${token.clientId}`,
        data_access_expires_at: unixSeconds(token.issuedAtMs + DATA_ACCESS_WINDOW_MS),
        ...(dead ? { error: { code: dead.code, message: dead.message, subcode: dead.error_subcode } } : {}),
        // A revoked token's expiry is reported as 0.
        expires_at: token.revokedAtMs !== undefined ? 0 : unixSeconds(token.expiresAtMs ?? 0),
        is_valid: !dead,
        // Graph reports issued_at for long-lived tokens (the native SDKs' 60-day ones), not for short-lived ones.
        ...(isLongLived(token) ? { issued_at: unixSeconds(token.issuedAtMs) } : {}),
        scopes: token.scopes,
        user_id: token.userId,
      },
    };
  }

  return async function facebookPlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'facebook', graphFaultAnswers));
    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header('x-fb-trace-id', randomBytesBase64Url(8));
      if (!reply.hasHeader('x-app-usage') && !reply.hasHeader('x-business-use-case-usage')) {
        reply.header('x-app-usage', JSON.stringify({ call_count: 0, total_cputime: 0, total_time: 0 }));
      }
      const challenge = typeof payload === 'string' ? wwwAuthenticate(reply.statusCode, safeJson(payload)) : undefined;
      if (challenge) reply.header('www-authenticate', challenge);
      return payload;
    });
    const userTokenCall = { config: { requires: [APPSECRET_PROOF_REQUIRED] } };
    app.get('/me', userTokenCall, me);
    app.get('/:version/me', userTokenCall, me);
    app.get('/debug_token', debugToken);
    app.get('/:version/debug_token', debugToken);
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isLongLived(token: IssuedToken): boolean {
  return token.expiresAtMs !== null && token.expiresAtMs - token.issuedAtMs > 24 * 3600 * 1000;
}
