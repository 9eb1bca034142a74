import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseAuthorizationHeader, verifyRequestSignature } from './oauth1.js';
import { providerFaultHook, type FaultAnswers } from './faults.js';
import { randomAlphanumeric } from './random.js';
import type { EmulatorState, TwitterUser } from './state.js';
import { rateLimitHeaders } from './twitter-rate-limit.js';
import { twitterUserInputSchema, upsertTwitterUser, type TwitterUserInput } from './twitter-users.js';

// Emulates GET https://api.twitter.com/1.1/account/verify_credentials.json with OAuth 1.0a user context.

export interface MintTwitterTokenInput {
  consumer_key?: string;
  user?: TwitterUserInput;
  expires_in?: number;
}

export interface MintedTwitterToken {
  access_token: string;
  access_token_secret: string;
  consumer_key: string;
  user_id: string;
}

export const mintTwitterTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    consumer_key: { type: 'string', minLength: 1 },
    user: twitterUserInputSchema,
    expires_in: { type: 'integer' },
  },
} as const;

/** How far oauth_timestamp may be from now, and so how long a nonce must be remembered. */
const TIMESTAMP_TOLERANCE_SECONDS = 300;

/**
 * Issues an access token and secret for `consumerKey`, registering that consumer with a random
 * secret if it is unknown. Twitter's tokens never expire unless `expires_in` asks for it.
 */
export function mintTwitterToken(
  state: EmulatorState,
  consumerKey: string,
  input: MintTwitterTokenInput,
): MintedTwitterToken {
  if (!state.clients.twitter.has(consumerKey)) state.clients.twitter.set(consumerKey, randomAlphanumeric(50));
  const user = upsertTwitterUser(state, input.user ?? {});
  const now = Date.now();
  // Real access tokens are "<user id>-<40 characters>", with a 45-character secret.
  const accessToken = `${user.id}-${randomAlphanumeric(40)}`;
  const secret = randomAlphanumeric(45);
  state.tokens.set(accessToken, {
    provider: 'twitter',
    clientId: consumerKey,
    userId: user.id,
    scopes: [],
    issuedAtMs: now,
    expiresAtMs: input.expires_in === undefined ? null : now + input.expires_in * 1000,
    secret,
  });
  return { access_token: accessToken, access_token_secret: secret, consumer_key: consumerKey, user_id: user.id };
}

/** Twitter's date format: "Wed Oct 21 23:53:04 +0000 2015". */
function twitterDate(ms: number): string {
  const [weekday, day, month, year, time] = new Date(ms).toUTCString().replace(',', '').split(' ');
  return `${weekday} ${month} ${day} ${time} +0000 ${year}`;
}

function isTrue(value: unknown): boolean {
  return value === 'true' || value === 't' || value === '1';
}

function userJson(user: TwitterUser, query: Record<string, unknown>): string {
  const profileImage = 'abs.twimg.com/sticky/default_profile_images/default_profile_normal.png';
  const rest = {
    id_str: user.id,
    name: user.name,
    screen_name: user.screen_name,
    location: '',
    description: '',
    url: null,
    ...(query.include_entities === 'false' ? {} : { entities: { description: { urls: [] } } }),
    protected: false,
    followers_count: 0,
    friends_count: 0,
    listed_count: 0,
    created_at: twitterDate(user.createdAtMs),
    favourites_count: 0,
    utc_offset: null,
    time_zone: null,
    geo_enabled: false,
    verified: false,
    statuses_count: 0,
    lang: null,
    profile_image_url: `http://${profileImage}`,
    profile_image_url_https: `https://${profileImage}`,
    default_profile: true,
    default_profile_image: true,
    ...(isTrue(query.include_email) ? { email: user.email } : {}),
  };
  // `id` goes out as a bare number with every digit, as Twitter sends it, even above 2^53.
  return `{"id":${user.id},${JSON.stringify(rest).slice(1)}`;
}

function sendTwitterError(reply: FastifyReply, status: number, code: number, message: string): FastifyReply {
  return reply.code(status).send({ errors: [{ code, message }] });
}

const sendBadAuthenticationData = (reply: FastifyReply) =>
  sendTwitterError(reply, 400, 215, 'Bad Authentication data.');
const sendCouldNotAuthenticate = (reply: FastifyReply) =>
  sendTwitterError(reply, 401, 32, 'Could not authenticate you.');
const sendInvalidToken = (reply: FastifyReply) => sendTwitterError(reply, 401, 89, 'Invalid or expired token.');

const REQUIRED_OAUTH_PARAMS = [
  'oauth_consumer_key',
  'oauth_token',
  'oauth_nonce',
  'oauth_signature',
  'oauth_signature_method',
  'oauth_timestamp',
];

/** X's v1.1 answers to the emulator's faults: {"errors": [{code, message}]}. */
const v1FaultAnswers: FaultAnswers = {
  serverError: () => ({ errors: [{ code: 131, message: 'Internal error' }] }),
  rateLimited: () => ({
    status: 429,
    headers: rateLimitHeaders(0),
    body: { errors: [{ code: 88, message: 'Rate limit exceeded' }] },
  }),
  appAccessDenied: () => ({
    status: 403,
    body: {
      errors: [
        {
          message:
            'You currently have access to a subset of Twitter API v2 endpoints and limited v1.1 endpoints (e.g. media post, oauth) only. If you need access to this endpoint, you may need a different access level. You can learn more here: https://developer.twitter.com/en/portal/product',
          code: 453,
        },
      ],
    },
  }),
};

export function twitterRoutes(state: EmulatorState) {
  /** True the first time a nonce is seen within the timestamp window. */
  function nonceIsFresh(key: string): boolean {
    const now = Date.now();
    for (const [seenKey, seenAt] of state.seenNonces) {
      if (now - seenAt > TIMESTAMP_TOLERANCE_SECONDS * 1000) state.seenNonces.delete(seenKey);
    }
    if (state.seenNonces.has(key)) return false;
    state.seenNonces.set(key, now);
    return true;
  }

  async function verifyCredentials(request: FastifyRequest, reply: FastifyReply) {
    const oauth = parseAuthorizationHeader(request.headers.authorization);
    if (!oauth || REQUIRED_OAUTH_PARAMS.some((name) => !oauth[name]) || !/^\d+$/.test(oauth.oauth_timestamp ?? '')) {
      return sendBadAuthenticationData(reply);
    }
    const consumerKey = oauth.oauth_consumer_key ?? '';
    const consumerSecret = state.clients.twitter.get(consumerKey);
    // An unknown consumer key: X finds no token of that app (reports show 89).
    if (consumerSecret === undefined) return sendInvalidToken(reply);

    const token = state.tokens.get(oauth.oauth_token ?? '');
    if (!token || token.provider !== 'twitter' || token.clientId !== consumerKey || !state.isLive(token)) {
      return sendInvalidToken(reply);
    }
    // The client signed the URL it called: rebuild it from the Host header and the raw path and query.
    const signedUrl = `http://${request.headers.host}${request.url}`;
    if (!verifyRequestSignature(request.method, signedUrl, oauth, consumerSecret, token.secret ?? '')) {
      return sendCouldNotAuthenticate(reply);
    }
    if (Math.abs(Date.now() / 1000 - Number(oauth.oauth_timestamp)) > TIMESTAMP_TOLERANCE_SECONDS) {
      return sendTwitterError(reply, 401, 135, 'Timestamp out of bounds.');
    }
    // Remembered only once the signature is good, so forged requests cannot burn a client's nonces.
    if (!nonceIsFresh(`${consumerKey} ${oauth.oauth_token} ${oauth.oauth_nonce}`))
      return sendCouldNotAuthenticate(reply);

    const user = state.twitterUsers.get(token.userId);
    if (!user) return sendInvalidToken(reply);
    return reply.type('application/json; charset=utf-8').send(userJson(user, request.query as Record<string, unknown>));
  }

  return async function twitterPlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'twitter', v1FaultAnswers));
    app.get('/1.1/account/verify_credentials.json', verifyCredentials);
  };
}
