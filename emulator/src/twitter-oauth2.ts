import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { providerFaultHook, type FaultAnswers } from './faults.js';
import { randomAlphanumeric } from './random.js';
import type { EmulatorState, IssuedToken, TwitterUser } from './state.js';
import { addTokenLookup } from './token-lookup.js';
import { rateLimitHeaders } from './twitter-rate-limit.js';
import { twitterUserInputSchema, upsertTwitterUser, type TwitterUserInput } from './twitter-users.js';

// Emulates GET https://api.twitter.com/2/users/me with an OAuth 2 user access token (Bearer). Users
// are the same as the OAuth 1.0a routes' (state.twitterUsers), so both kinds of token name one id.

export interface MintTwitterOAuth2TokenInput {
  client_id?: string;
  user?: TwitterUserInput;
  /** Default 7200: X's OAuth 2 user tokens live two hours. */
  expires_in?: number;
}

export interface MintedTwitterOAuth2Token {
  access_token: string;
  client_id: string;
  user_id: string;
  /** Unix seconds. */
  expires_at: number;
}

export const mintTwitterOAuth2TokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    client_id: { type: 'string', minLength: 1 },
    user: twitterUserInputSchema,
    expires_in: { type: 'integer' },
  },
} as const;

const DEFAULT_EXPIRES_IN_SECONDS = 7200;
const DEFAULT_SCOPES = ['tweet.read', 'users.read', 'offline.access'];
/** X's OAuth 2 client ids are base64url of "<id>:1:ci". */
export const DEFAULT_TWITTER_OAUTH2_CLIENT_ID = Buffer.from('emulator-client:1:ci').toString('base64url');

/**
 * OAuth 2 tokens are kept apart from state.tokens: there they would be taken for OAuth 1.0a tokens
 * (same provider) by verify_credentials. The expire endpoint finds them through addTokenLookup.
 */
const stores = new WeakMap<EmulatorState, Map<string, IssuedToken>>();

function oauth2Tokens(state: EmulatorState): Map<string, IssuedToken> {
  const tokens = stores.get(state);
  if (!tokens) throw new Error('X OAuth 2 is not set up on this emulator: register twitterOAuth2Routes first');
  return tokens;
}

export function mintTwitterOAuth2Token(
  state: EmulatorState,
  input: MintTwitterOAuth2TokenInput,
): MintedTwitterOAuth2Token {
  const clientId = input.client_id ?? DEFAULT_TWITTER_OAUTH2_CLIENT_ID;
  const user = upsertTwitterUser(state, input.user ?? {});
  const now = Date.now();
  const expiresAtMs = now + (input.expires_in ?? DEFAULT_EXPIRES_IN_SECONDS) * 1000;
  // Real tokens are base64 of "<random>:<issued at ms>:1:0:at:1".
  const accessToken = Buffer.from(`${randomAlphanumeric(43)}:${now}:1:0:at:1`).toString('base64url');
  oauth2Tokens(state).set(accessToken, {
    provider: 'twitter',
    clientId,
    userId: user.id,
    scopes: DEFAULT_SCOPES,
    issuedAtMs: Math.min(now, expiresAtMs),
    expiresAtMs,
  });
  return {
    access_token: accessToken,
    client_id: clientId,
    user_id: user.id,
    expires_at: Math.floor(expiresAtMs / 1000),
  };
}

/** Every value X accepts in user.fields; those without a value here are left out, as X leaves out empty ones. */
const USER_FIELDS = [
  'affiliation',
  'confirmed_email',
  'connection_status',
  'created_at',
  'description',
  'entities',
  'id',
  'is_identity_verified',
  'location',
  'most_recent_tweet_id',
  'name',
  'parody',
  'pinned_tweet_id',
  'profile_banner_url',
  'profile_image_url',
  'protected',
  'public_metrics',
  'receives_your_dm',
  'subscription',
  'subscription_type',
  'url',
  'username',
  'verified',
  'verified_followers_count',
  'verified_type',
  'withheld',
];

function fieldValues(user: TwitterUser): Record<string, unknown> {
  return {
    id: user.id,
    name: user.name,
    username: user.screen_name,
    // X writes whole seconds with ".000Z".
    created_at: new Date(Math.floor(user.createdAtMs / 1000) * 1000).toISOString(),
    description: '',
    url: '',
    profile_image_url: 'https://abs.twimg.com/sticky/default_profile_images/default_profile_normal.png',
    protected: false,
    verified: false,
    verified_type: 'none',
    is_identity_verified: false,
    parody: false,
    confirmed_email: user.email,
    public_metrics: {
      followers_count: 0,
      following_count: 0,
      tweet_count: 0,
      listed_count: 0,
      like_count: 0,
      media_count: 0,
    },
  };
}

function sendProblem(reply: FastifyReply, status: number, problem: Record<string, unknown>): FastifyReply {
  return reply.code(status).type('application/problem+json').send(JSON.stringify(problem));
}

/** /2/users/me needs a user: an app-only bearer token (client credentials) is refused. */
const UNSUPPORTED_AUTHENTICATION = {
  title: 'Unsupported Authentication',
  detail:
    'Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].',
  type: 'https://api.twitter.com/2/problems/unsupported-authentication',
  status: 403,
};

const appOnly = new WeakMap<EmulatorState, Set<string>>();
const appOnlyTokens = (state: EmulatorState) => {
  let tokens = appOnly.get(state);
  if (!tokens) appOnly.set(state, (tokens = new Set()));
  return tokens;
};

/** An app-only bearer token (OAuth 2 client credentials): it names no user. */
export function mintTwitterAppOnlyToken(state: EmulatorState): { access_token: string } {
  // Real ones start with a run of "A"s.
  const accessToken = `AAAAAAAAAAAAAAAAAAAAA${randomAlphanumeric(90)}`;
  appOnlyTokens(state).add(accessToken);
  return { access_token: accessToken };
}

const sendUnauthorized = (reply: FastifyReply) =>
  sendProblem(reply, 401, { title: 'Unauthorized', type: 'about:blank', status: 401, detail: 'Unauthorized' });

/** X's API v2 answers to the emulator's faults: RFC 7807 problems. */
const v2FaultAnswers: FaultAnswers = {
  serverError: () => ({
    title: 'Internal Server Error',
    type: 'about:blank',
    status: 500,
    detail: 'Internal Server Error',
  }),
  rateLimited: () => ({
    status: 429,
    headers: { 'content-type': 'application/problem+json', ...rateLimitHeaders(0) },
    body: { title: 'Too Many Requests', type: 'about:blank', status: 429, detail: 'Too Many Requests' },
  }),
  appAccessDenied: () => ({
    status: 403,
    headers: { 'content-type': 'application/problem+json' },
    body: {
      client_id: '0',
      detail:
        'When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project. You can create a project via the developer portal.',
      registration_url: 'https://developer.twitter.com/en/docs/projects/overview',
      title: 'Client Forbidden',
      required_enrollment: 'Appropriate Level of API Access',
      reason: 'client-not-enrolled',
      type: 'https://api.twitter.com/2/problems/client-forbidden',
    },
  }),
};

export function twitterOAuth2Routes(state: EmulatorState) {
  const tokens = new Map<string, IssuedToken>();
  stores.set(state, tokens);
  state.onReset.push(() => {
    tokens.clear();
    appOnlyTokens(state).clear();
  });
  addTokenLookup(state, (value) => tokens.get(value));

  async function usersMe(request: FastifyRequest, reply: FastifyReply) {
    const value = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
    if (value !== undefined && appOnlyTokens(state).has(value))
      return sendProblem(reply, 403, UNSUPPORTED_AUTHENTICATION);
    const token = value === undefined ? undefined : tokens.get(value);
    const user = token && state.isLive(token) ? state.twitterUsers.get(token.userId) : undefined;
    if (!user) return sendUnauthorized(reply);

    const requested = String((request.query as Record<string, unknown>)['user.fields'] ?? '')
      .split(',')
      .map((field) => field.trim())
      .filter(Boolean);
    const unknown = requested.filter((field) => !USER_FIELDS.includes(field));
    if (unknown.length > 0) {
      return sendProblem(reply, 400, {
        errors: [
          {
            parameters: { 'user.fields': [unknown.join(',')] },
            message: `The \`user.fields\` query parameter value [${unknown[0]}] is not one of [${USER_FIELDS.join(',')}]`,
          },
        ],
        title: 'Invalid Request',
        detail: 'One or more parameters to your request was invalid.',
        type: 'https://api.twitter.com/2/problems/invalid-request',
      });
    }
    const values = fieldValues(user);
    const data: Record<string, unknown> = { id: user.id, name: user.name, username: user.screen_name };
    for (const field of requested) if (values[field] !== undefined) data[field] = values[field];
    return { data };
  }

  return async function twitterOAuth2Plugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'twitter', v2FaultAnswers));
    app.get('/2/users/me', usersMe);
  };
}
