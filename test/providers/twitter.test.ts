import { describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest } from '../helpers.js';
import { sharedStack } from './flows.js';

// X (Twitter) through HTTP against the emulator: OAuth 2 user tokens, refused unless the operator opts in, and once
// accepted the same account as its OAuth 1.0a token. Elsewhere: the RFC 5849 signer (src/providers/oauth1.test.ts),
// the recorded answers replayed (fixtures.test.ts), what X requires of a request (requests.test.ts), an app refused its
// access level (refusals.test.ts).

describe.each(databaseKinds())('twitter on %s', (kind) => {
  const stack = sharedStack(kind);

  describe('X OAuth 2 user tokens', () => {
    it('are refused unless the operator opts in (no way to prove they were issued to us)', async () => {
      const token = await stack.emulator.mintTwitterOAuth2Token();
      const answer = await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: token.access_token },
      });
      expectError(answer, 400, 'invalid_request');
      expect(answer.body.message).toContain('SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS');
    });
  });
});

describe('X OAuth 2 user tokens when accepted', () => {
  const stack = sharedStack('sqlite', { SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS: 'true' });

  it('find the same link as the OAuth 1.0a token of the same account', async () => {
    const oauth1 = await stack.emulator.mintTwitterToken();
    const user = await guest(stack.api);
    await call(stack.api, 'POST', '/api/associate/twitter/', {
      token: user.access_token,
      body: { access_token: oauth1.access_token, access_token_secret: oauth1.access_token_secret },
    });
    const oauth2 = await stack.emulator.mintTwitterOAuth2Token({ user: { id: oauth1.user_id } });
    const signedIn = await call(stack.api, 'POST', '/api/auth/twitter/', {
      body: { access_token: oauth2.access_token },
    });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.id).toBe(user.id);
    await stack.emulator.expireToken(oauth2.access_token);
    expectError(
      await call(stack.api, 'POST', '/api/auth/twitter/', { body: { access_token: oauth2.access_token } }),
      400,
      'invalid_token',
    );
  });
});
