import { createHmac } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { controlConventions, sendInvalidRequest } from './control-conventions.js';
import { OIDC_CONTROL_ENDPOINTS } from './control-oidc.js';
import { mintFacebookToken, mintFacebookTokenBodySchema, type MintFacebookTokenInput } from './facebook.js';
import { describeIdProviders } from './id-providers.js';
import { githubClientIds } from './github.js';
import { lineChannelIds } from './line.js';
import {
  DOCUMENTED_FAULTS,
  FAULT_MODES,
  PROVIDERS,
  type EmulatorState,
  type FaultSettings,
  type Provider,
} from './state.js';
import { findIssuedToken } from './token-lookup.js';
import { mintTwitterToken, mintTwitterTokenBodySchema, type MintTwitterTokenInput } from './twitter.js';

// The control API (/_emulator): tests and developers mint tokens, inject faults and read counters.

export interface FaultInput {
  latency_ms?: number;
  latency_jitter_ms?: number;
  mode?: FaultSettings['mode'];
  count?: number;
  appsecret_proof?: 'verify' | 'ignore' | 'require';
  code?: number;
  secondary?: boolean;
}

const faultBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    latency_ms: { type: 'integer', minimum: 0, maximum: 600_000 },
    latency_jitter_ms: { type: 'integer', minimum: 0, maximum: 600_000 },
    mode: { type: 'string', enum: FAULT_MODES },
    count: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    appsecret_proof: { type: 'string', enum: ['verify', 'ignore', 'require'] },
    code: { type: 'integer', enum: [4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014] },
    secondary: { type: 'boolean' },
  },
} as const;

const providerParamsSchema = {
  type: 'object',
  required: ['provider'],
  properties: { provider: { type: 'string', enum: PROVIDERS } },
} as const;

const expireBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['access_token'],
  properties: { access_token: { type: 'string', minLength: 1 } },
} as const;

const CONTROL_ENDPOINTS = [
  'GET /_emulator',
  'POST /_emulator/facebook/tokens',
  'POST /_emulator/facebook/callbacks',
  'POST /_emulator/twitter/tokens',
  'POST /_emulator/twitter/oauth2_tokens',
  'POST /_emulator/twitter/app_tokens',
  'POST /_emulator/line/tokens',
  'POST /_emulator/github/tokens',
  ...OIDC_CONTROL_ENDPOINTS,
  'POST /_emulator/tokens/expire',
  'POST /_emulator/tokens/revoke',
  'PUT /_emulator/faults/:provider',
  'DELETE /_emulator/faults',
  'GET /_emulator/stats',
  'POST /_emulator/reset',
];

export function controlRoutes(state: EmulatorState) {
  return async function controlPlugin(app: FastifyInstance): Promise<void> {
    controlConventions(app);

    app.get('/', async (request) => {
      const origin = `http://${request.headers.host}`;
      return {
        name: 'social-link provider emulator',
        providers: {
          facebook: { base_url: `${origin}/facebook`, app_ids: [...state.clients.facebook.keys()] },
          twitter: { base_url: `${origin}/twitter`, consumer_keys: [...state.clients.twitter.keys()] },
          line: { base_url: `${origin}/line`, channel_ids: lineChannelIds(state) },
          github: { base_url: `${origin}/github`, client_ids: githubClientIds(state) },
          ...describeIdProviders(state, origin),
        },
        control: CONTROL_ENDPOINTS,
      };
    });

    app.post<{ Body: MintFacebookTokenInput }>(
      '/facebook/tokens',
      { schema: { body: mintFacebookTokenBodySchema } },
      async (request, reply) => {
        const input = request.body;
        const appId = input.app_id ?? state.clients.facebook.keys().next().value;
        if (appId === undefined) return sendInvalidRequest(reply, 'no Facebook app is configured: pass app_id');
        return reply.code(201).send(mintFacebookToken(state, appId, input));
      },
    );

    // Facebook calls the app's callbacks (data deletion, deauthorize) with a signed_request, as Facebook signs it:
    // HMAC-SHA256 of the base64url payload with the app secret (sources: test/fixtures/callbacks/facebook/).
    app.post<{ Body: { kind: 'data_deletion' | 'deauthorize'; user_id: string; url: string; app_id?: string } }>(
      '/facebook/callbacks',
      {
        schema: {
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['kind', 'user_id', 'url'],
            properties: {
              kind: { enum: ['data_deletion', 'deauthorize'] },
              user_id: { type: 'string', minLength: 1 },
              url: { type: 'string', pattern: '^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])[:/]' },
              app_id: { type: 'string' },
            },
          },
        },
      },
      async (request, reply) => {
        const { kind, user_id: userId, url } = request.body;
        const appId = request.body.app_id ?? state.clients.facebook.keys().next().value;
        const secret = appId === undefined ? undefined : state.clients.facebook.get(appId);
        if (secret === undefined) return sendInvalidRequest(reply, 'no such Facebook app');
        const issuedAt = Math.floor(Date.now() / 1000);
        const payload = Buffer.from(
          JSON.stringify({
            algorithm: 'HMAC-SHA256',
            ...(kind === 'data_deletion' ? { expires: issuedAt + 3600 } : {}),
            issued_at: issuedAt,
            user_id: userId,
          }),
        ).toString('base64url');
        const signature = createHmac('sha256', secret).update(payload).digest('base64url');
        const answer = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ signed_request: `${signature}.${payload}` }).toString(),
        });
        const text = await answer.text();
        return { status: answer.status, body: text };
      },
    );

    app.post<{ Body: MintTwitterTokenInput }>(
      '/twitter/tokens',
      { schema: { body: mintTwitterTokenBodySchema } },
      async (request, reply) => {
        const input = request.body;
        const consumerKey = input.consumer_key ?? state.clients.twitter.keys().next().value;
        if (consumerKey === undefined)
          return sendInvalidRequest(reply, 'no Twitter consumer is configured: pass consumer_key');
        return reply.code(201).send(mintTwitterToken(state, consumerKey, input));
      },
    );

    app.post<{ Body: { access_token: string } }>(
      '/tokens/expire',
      { schema: { body: expireBodySchema } },
      async (request, reply) => {
        // Also finds tokens a provider keeps outside state.tokens (X's OAuth 2 tokens).
        const token = findIssuedToken(state, request.body.access_token);
        if (!token)
          return reply.code(404).send({ code: 'unknown_token', message: 'no token was issued with this value' });
        token.expiresAtMs = Date.now();
        return reply.code(204).send();
      },
    );

    app.post<{ Body: { access_token: string } }>(
      '/tokens/revoke',
      { schema: { body: expireBodySchema } },
      async (request, reply) => {
        const token = findIssuedToken(state, request.body.access_token);
        if (!token)
          return reply.code(404).send({ code: 'unknown_token', message: 'no token was issued with this value' });
        token.revokedAtMs = Date.now();
        return reply.code(204).send();
      },
    );

    app.put<{ Params: { provider: Provider }; Body: FaultInput }>(
      '/faults/:provider',
      { schema: { params: providerParamsSchema, body: faultBodySchema } },
      async (request, reply) => {
        const { provider } = request.params;
        const { appsecret_proof: proof, code, secondary, mode } = request.body;
        if ((proof !== undefined || code !== undefined) && provider !== 'facebook')
          return sendInvalidRequest(reply, 'appsecret_proof and code only apply to facebook');
        if (secondary !== undefined && provider !== 'github')
          return sendInvalidRequest(reply, 'secondary only applies to github');
        const documented = mode && DOCUMENTED_FAULTS[mode];
        if (documented && !documented.includes(provider)) {
          return sendInvalidRequest(
            reply,
            `${mode} is emulated for ${documented.join(', ')} only: ${provider} documents no such answer`,
          );
        }
        const fault = { ...state.faults[provider], ...request.body };
        if ((fault.latency_jitter_ms ?? 0) > fault.latency_ms)
          return sendInvalidRequest(reply, 'latency_jitter_ms must not exceed latency_ms (a wait is never negative)');
        state.faults[provider] = fault;
        return fault;
      },
    );

    app.delete('/faults', async (_request, reply) => {
      state.clearFaults();
      return reply.code(204).send();
    });

    app.get('/stats', async () => ({ requests: { ...state.requestCounts } }));

    app.post('/reset', async (_request, reply) => {
      state.reset();
      return reply.code(204).send();
    });
  };
}
