import type { FastifyInstance } from 'fastify';
import { controlConventions, sendInvalidRequest } from './control-conventions.js';
import {
  defaultGithubClientId,
  mintGithubToken,
  mintGithubTokenBodySchema,
  type MintGithubTokenInput,
} from './github.js';
import { defaultLineChannelId, mintLineToken, mintLineTokenBodySchema, type MintLineTokenInput } from './line.js';
import type { EmulatorState } from './state.js';
import {
  mintTwitterAppOnlyToken,
  mintTwitterOAuth2Token,
  mintTwitterOAuth2TokenBodySchema,
  type MintTwitterOAuth2TokenInput,
} from './twitter-oauth2.js';

// Control endpoints (under /_emulator) minting tokens for LINE, GitHub and X OAuth 2. Same rules as
// control.ts: JSON-schema checked, and any mistake of the caller answered 400 {code, message}.

export function controlRestRoutes(state: EmulatorState) {
  return async function controlRestPlugin(app: FastifyInstance): Promise<void> {
    controlConventions(app);

    app.post<{ Body: MintLineTokenInput }>(
      '/line/tokens',
      { schema: { body: mintLineTokenBodySchema } },
      async (request, reply) => {
        const channelId = request.body.channel_id ?? defaultLineChannelId(state);
        if (channelId === undefined) return sendInvalidRequest(reply, 'no LINE channel is configured: pass channel_id');
        return reply.code(201).send(await mintLineToken(state, channelId, request.body));
      },
    );

    app.post<{ Body: MintGithubTokenInput }>(
      '/github/tokens',
      { schema: { body: mintGithubTokenBodySchema } },
      async (request, reply) => {
        const clientId = request.body.client_id ?? defaultGithubClientId(state);
        if (clientId === undefined)
          return sendInvalidRequest(reply, 'no GitHub OAuth app is configured: pass client_id');
        return reply.code(201).send(mintGithubToken(state, clientId, request.body));
      },
    );

    app.post<{ Body: MintTwitterOAuth2TokenInput }>(
      '/twitter/oauth2_tokens',
      { schema: { body: mintTwitterOAuth2TokenBodySchema } },
      async (request, reply) => reply.code(201).send(mintTwitterOAuth2Token(state, request.body)),
    );

    app.post('/twitter/app_tokens', async (_request, reply) => reply.code(201).send(mintTwitterAppOnlyToken(state)));
  };
}
