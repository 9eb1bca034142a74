import { createHash, randomInt } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { providerFaultHook, type FaultAnswers, type ProviderAnswer } from './faults.js';
import { hasHeader, type RequestRequirement } from './request-checks.js';
import { randomAlphanumeric, randomHex, randomPersonName } from './random.js';
import type { EmulatorState, IssuedToken } from './state.js';

// Emulates the GitHub REST API (https://api.github.com) used to verify an OAuth app's user token:
// GET /user (who) and POST /applications/{client_id}/token ("Check a token": issued to our app?).

export interface GithubUserInput {
  id?: number;
  login?: string;
  name?: string;
  /** The public e-mail /user shows (none by default). */
  email?: string;
  /** The primary, verified e-mail /user/emails lists (default: <login>@users.example.com). */
  primary_email?: string;
}

export interface MintGithubTokenInput {
  client_id?: string;
  user?: GithubUserInput;
  /** OAuth scopes granted; default read:user and user:email. Without user:email (or user), GET /user/emails answers 404. */
  scopes?: string[];
}

export interface MintedGithubToken {
  access_token: string;
  client_id: string;
  user_id: number;
}

export const mintGithubTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    client_id: { type: 'string', minLength: 1 },
    user: {
      type: 'object',
      additionalProperties: false,
      properties: {
        id: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
        // GitHub's rule: up to 39 alphanumerics or single hyphens, not at either end.
        login: { type: 'string', pattern: '^[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}$' },
        name: { type: 'string', minLength: 1 },
        email: { type: 'string', format: 'email' },
        primary_email: { type: 'string', format: 'email' },
      },
    },
    scopes: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
} as const;

interface GithubUser {
  id: number;
  login: string;
  name: string;
  /** The public email; null when the user shows none. */
  email: string | null;
  /** The primary, verified one (GET /user/emails). */
  primary_email: string;
  createdAtMs: number;
}

/** What "Check a token" reports about a token beyond the shared IssuedToken fields. */
interface Authorization {
  id: number;
  createdAtMs: number;
}

const API = 'https://api.github.com';
const DEFAULT_SCOPES = ['read:user', 'user:email'];

/** GitHub's own state per emulator: OAuth apps (client id -> client secret), users and authorizations. */
class GithubStore {
  apps: Map<string, string>;
  readonly users = new Map<number, GithubUser>();
  readonly authorizations = new Map<string, Authorization>();

  constructor(private readonly configuredApps: Record<string, string>) {
    this.apps = new Map(Object.entries(configuredApps));
  }

  reset(): void {
    this.apps = new Map(Object.entries(this.configuredApps));
    this.users.clear();
    this.authorizations.clear();
  }
}

const stores = new WeakMap<EmulatorState, GithubStore>();

function githubStore(state: EmulatorState): GithubStore {
  const store = stores.get(state);
  if (!store) throw new Error('GitHub is not set up on this emulator: register githubRoutes first');
  return store;
}

/** OAuth app client ids known right now, configured or registered on the fly. */
export function githubClientIds(state: EmulatorState): string[] {
  return [...githubStore(state).apps.keys()];
}

export function defaultGithubClientId(state: EmulatorState): string | undefined {
  return githubClientIds(state)[0];
}

/** Issues a user token for the OAuth app `clientId`, registering that app with a random secret if it is unknown. */
export function mintGithubToken(
  state: EmulatorState,
  clientId: string,
  input: MintGithubTokenInput,
): MintedGithubToken {
  const store = githubStore(state);
  // Real client secrets are 40 hex digits.
  if (!store.apps.has(clientId)) store.apps.set(clientId, randomHex(40));
  const user = upsertGithubUser(store, input.user ?? {});
  const now = Date.now();
  // OAuth app user tokens: "gho_" and 36 alphanumerics. They do not expire.
  const accessToken = `gho_${randomAlphanumeric(36)}`;
  state.tokens.set(accessToken, {
    provider: 'github',
    clientId,
    userId: String(user.id),
    scopes: input.scopes ?? DEFAULT_SCOPES,
    issuedAtMs: now,
    expiresAtMs: null,
  });
  store.authorizations.set(accessToken, { id: randomInt(1, 2 ** 31), createdAtMs: now });
  return { access_token: accessToken, client_id: clientId, user_id: user.id };
}

/** A known user id keeps its profile; only the fields given are changed. */
function upsertGithubUser(store: GithubStore, input: GithubUserInput): GithubUser {
  const id = input.id ?? randomInt(1_000_000, 200_000_000);
  const user = { ...(store.users.get(id) ?? newGithubUser(id)), ...input, id };
  store.users.set(id, user);
  return user;
}

function newGithubUser(id: number): GithubUser {
  const { first, last } = randomPersonName();
  const login = `${first}${last}${id % 1000}`.toLowerCase();
  return {
    id,
    login,
    name: `${first} ${last}`,
    email: null,
    primary_email: `${login}@users.example.com`,
    createdAtMs: Date.now(),
  };
}

/** GitHub writes times without milliseconds: "2011-01-25T18:44:36Z". */
function githubTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The "simple user" object GitHub nests in other answers. */
function simpleUser(user: GithubUser) {
  const url = `${API}/users/${user.login}`;
  return {
    login: user.login,
    id: user.id,
    // The legacy global node id: base64 of "04:User<id>".
    node_id: Buffer.from(`04:User${user.id}`).toString('base64'),
    avatar_url: `https://avatars.githubusercontent.com/u/${user.id}?v=4`,
    gravatar_id: '',
    url,
    html_url: `https://github.com/${user.login}`,
    followers_url: `${url}/followers`,
    following_url: `${url}/following{/other_user}`,
    gists_url: `${url}/gists{/gist_id}`,
    starred_url: `${url}/starred{/owner}{/repo}`,
    subscriptions_url: `${url}/subscriptions`,
    organizations_url: `${url}/orgs`,
    repos_url: `${url}/repos`,
    events_url: `${url}/events{/privacy}`,
    received_events_url: `${url}/received_events`,
    type: 'User',
    user_view_type: 'public',
    site_admin: false,
  };
}

/** GET /user: the simple user plus the public profile. */
function fullUser(user: GithubUser) {
  return {
    ...simpleUser(user),
    name: user.name,
    company: null,
    blog: '',
    location: null,
    email: user.email,
    hireable: null,
    bio: null,
    twitter_username: null,
    notification_email: user.email,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: githubTime(user.createdAtMs),
    updated_at: githubTime(user.createdAtMs),
  };
}

function sendGithubError(
  reply: FastifyReply,
  status: number,
  message: string,
  documentationUrl = 'https://docs.github.com/rest',
) {
  // GitHub sends the status again in the body, as a string.
  return reply.code(status).send({ message, documentation_url: documentationUrl, status: String(status) });
}

const CHECK_TOKEN_DOCS = 'https://docs.github.com/rest/apps/oauth-applications#check-a-token';

/** "Bearer T" and the older "token T" both work. */
function authorizationToken(request: FastifyRequest): string | undefined {
  return /^(?:Bearer|token)\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
}

function basicCredentials(request: FastifyRequest): { username: string; password: string } | undefined {
  const encoded = /^Basic\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
  if (encoded === undefined) return undefined;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const separator = decoded.indexOf(':');
  if (separator < 0) return undefined;
  return { username: decoded.slice(0, separator), password: decoded.slice(separator + 1) };
}

/** GitHub's answers to the emulator's faults: a primary rate limit (403, nothing remaining) or a secondary one (429, Retry-After). */
const githubFaultAnswers: FaultAnswers = {
  serverError: () => ({ message: 'Server Error', status: '500' }),
  rateLimited(fault): ProviderAnswer {
    if (fault.secondary) {
      return {
        status: 429,
        headers: { 'retry-after': '60' },
        body: {
          message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
          documentation_url:
            'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits',
          status: '429',
        },
      };
    }
    const reset = String(Math.floor(Date.now() / 1000) + 3600);
    return {
      status: 403,
      headers: {
        'x-ratelimit-limit': '5000',
        'x-ratelimit-remaining': '0',
        'x-ratelimit-used': '5000',
        'x-ratelimit-reset': reset,
        'x-ratelimit-resource': 'core',
      },
      body: {
        message: 'API rate limit exceeded for user ID 1.',
        documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
        status: '403',
      },
    };
  },
};

/**
 * Every REST API request must name its client in User-Agent: GitHub refuses one without it with a 403 and a
 * plain-text page, before authentication (sources: test/fixtures/provider-requests/github.json).
 */
const USER_AGENT_REQUIRED: RequestRequirement = {
  id: 'user_agent',
  met: hasHeader('user-agent'),
  refusal: () => ({
    status: 403,
    headers: { 'content-type': 'text/html' },
    body: 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header (http://developer.github.com/v3/#user-agent-required). Check https://developer.github.com for other possible causes.\n',
  }),
};
const REST_API = { config: { requires: [USER_AGENT_REQUIRED] } };

export function githubRoutes(state: EmulatorState, apps: Record<string, string>) {
  const store = new GithubStore(apps);
  stores.set(state, store);
  state.onReset.push(() => store.reset());

  function liveToken(value: string | undefined): IssuedToken | undefined {
    const token = value === undefined ? undefined : state.tokens.get(value);
    return token && token.provider === 'github' && state.isLive(token) ? token : undefined;
  }

  /** The user of the request's token, or an error answer (GitHub lists a classic token's scopes in X-OAuth-Scopes). */
  function tokenUser(request: FastifyRequest, reply: FastifyReply, docs: string) {
    const value = authorizationToken(request);
    if (value === undefined) return { answer: sendGithubError(reply, 401, 'Requires authentication', docs) };
    const token = liveToken(value);
    const user = token && store.users.get(Number(token.userId));
    if (!token || !user) return { answer: sendGithubError(reply, 401, 'Bad credentials') };
    reply.header('x-oauth-scopes', token.scopes.join(', '));
    return { token, user };
  }

  async function authenticatedUser(request: FastifyRequest, reply: FastifyReply) {
    const found = tokenUser(request, reply, 'https://docs.github.com/rest/users/users#get-the-authenticated-user');
    return found.user ? fullUser(found.user) : found.answer;
  }

  /** GET /user/emails: needs the user:email (or user) scope, else GitHub answers 404. */
  async function userEmails(request: FastifyRequest, reply: FastifyReply) {
    const docs = 'https://docs.github.com/rest/users/emails#list-email-addresses-for-the-authenticated-user';
    const found = tokenUser(request, reply, docs);
    if (!found.user) return found.answer;
    if (!found.token.scopes.includes('user:email') && !found.token.scopes.includes('user'))
      return sendGithubError(reply, 404, 'Not Found', docs);
    const { primary_email: primary, email } = found.user;
    return [{ email: primary, primary: true, verified: true, visibility: email === primary ? 'public' : 'private' }];
  }

  async function checkToken(request: FastifyRequest, reply: FastifyReply) {
    const { client_id: clientId } = request.params as { client_id: string };
    const credentials = basicCredentials(request);
    if (!credentials) return sendGithubError(reply, 401, 'Requires authentication', CHECK_TOKEN_DOCS);
    if (store.apps.get(credentials.username) !== credentials.password)
      return sendGithubError(reply, 401, 'Bad credentials');
    // An app may only check tokens in its own name.
    if (credentials.username !== clientId) return sendGithubError(reply, 404, 'Not Found', CHECK_TOKEN_DOCS);

    const body = request.body as { access_token?: unknown } | undefined;
    if (typeof body?.access_token !== 'string') {
      return sendGithubError(reply, 422, 'Invalid request.\n\n"access_token" wasn\'t supplied.', CHECK_TOKEN_DOCS);
    }
    const accessToken = body.access_token;
    // Unknown, expired and other apps' tokens all look the same: not found.
    const token = liveToken(accessToken);
    const authorization = store.authorizations.get(accessToken);
    const user = token && store.users.get(Number(token.userId));
    if (!token || token.clientId !== clientId || !authorization || !user)
      return sendGithubError(reply, 404, 'Not Found', CHECK_TOKEN_DOCS);
    return {
      id: authorization.id,
      url: `${API}/authorizations/${authorization.id}`,
      app: { name: `Emulated app ${clientId}`, url: 'https://example.com', client_id: clientId },
      token: accessToken,
      hashed_token: createHash('sha256').update(accessToken).digest('hex'),
      token_last_eight: accessToken.slice(-8),
      note: null,
      note_url: null,
      fingerprint: null,
      scopes: token.scopes,
      created_at: githubTime(authorization.createdAtMs),
      updated_at: githubTime(authorization.createdAtMs),
      expires_at: token.expiresAtMs === null ? null : githubTime(token.expiresAtMs),
      user: simpleUser(user),
    };
  }

  return async function githubPlugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', providerFaultHook(state, 'github', githubFaultAnswers));
    // A body GitHub cannot read is answered in GitHub's words, not Fastify's.
    app.setErrorHandler((error: FastifyError, _request, reply) => {
      if (error.statusCode !== undefined && error.statusCode < 500)
        return sendGithubError(reply, 400, 'Problems parsing JSON');
      return reply.send(error);
    });
    app.get('/user', REST_API, authenticatedUser);
    app.get('/user/emails', REST_API, userEmails);
    app.post('/applications/:client_id/token', REST_API, checkToken);
  };
}
