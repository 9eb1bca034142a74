import { invalidRequest } from '../../lib/errors.js';
import { defineProvider, type Proof } from '../define.js';
import { accountOf, userName, type Facts } from './account.js';
import { AppleApi, APPLE_ISSUER } from './api.js';
import { redeemCode } from './code.js';
import { redirectUrisOf, signingOf, type AppleConfig } from './config.js';
import { identityTokens } from './identity-token.js';
import { readNotification } from './notifications.js';

export type { AppleConfig } from './config.js';

/**
 * Sign in with Apple. The identity token is verified against Apple's keys, its nonce as identity-token.ts says.
 * When the app also sends the authorization code and the team key is configured, the code is redeemed (api.ts) and
 * the refresh token kept, so that unlinking revokes it (App Store rules for account deletion); see code.ts. The
 * user's name comes apart from the token, once (account.ts). Sources: test/fixtures/providers/apple/.
 */
export const apple = defineProvider({
  name: 'apple',
  emailTrust: 'verified',
  tokens: ['id_token', 'code'],

  settings(s): AppleConfig | undefined {
    const clientIds = s.list('KEY');
    if (clientIds.length === 0) return undefined;
    return {
      clientIds,
      jwksUrl: s.url('JWKS_URL', `${APPLE_ISSUER}/auth/keys`),
      apiUrl: s.url('API_URL', APPLE_ISSUER),
      signing: signingOf(s),
      redirectUris: redirectUrisOf(s, clientIds),
      nonceRule: s.nonceRule(),
    };
  },

  setup({ name, config: { clientIds, redirectUris, ...config }, http, idTokenVerifier }) {
    const idTokens = idTokenVerifier(identityTokens(config.jwksUrl, clientIds, config.nonceRule));
    const api = config.signing && new AppleApi(http, config.apiUrl, config.signing);
    return { idTokens, api, redemption: api && { provider: name, api, idTokens, clientIds, redirectUris } };
  },

  async prove(form, input, ctx): Promise<Proof<Facts>> {
    const { idTokens, redemption } = ctx;
    const name = userName(input.user);
    const claims = form === 'id_token' ? await idTokens.verify(input.id_token!, input.nonce) : undefined;
    if (input.code && redemption) {
      const { facts, ...kept } = await redeemCode(redemption, input.code, claims, input);
      return { facts: { claims: facts, name }, ...kept };
    }
    // The app can send its id_token instead; the server's settings are the operator's to complete.
    if (!claims)
      throw invalidRequest(
        `id_token is required for ${ctx.name}: this server cannot redeem codes (no Sign in with Apple key is configured)`,
      );
    return { facts: { claims, name }, idToken: idTokens.proof(input.id_token!, claims, input.nonce) };
  },

  account: accountOf,

  async revoke(tokens, { api }) {
    if (api && tokens.refresh_token && tokens.client_id) await api.revoke(tokens.client_id, tokens.refresh_token);
  },
  warmUp: ({ idTokens }) => idTokens.warmUp(),

  callbacks: { verifyNotification: (payload, { idTokens }) => readNotification(payload, idTokens) },
});
