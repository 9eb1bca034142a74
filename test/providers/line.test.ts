import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from '../helpers.js';

// LINE through HTTP against the emulator: access tokens and ID tokens, each for our channel only. Elsewhere: the
// recorded answers replayed (fixtures.test.ts), what LINE requires of a request (requests.test.ts), an app LINE refuses
// (its plan and permissions) and a rate limit (refusals.test.ts).

describe.each(databaseKinds())('line on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  /** Links the account behind `body` to a new guest, then signs in with `again` (a new phone's token). */
  async function linkThenSignIn(provider: string, body: Record<string, string>, again: Record<string, string> = body) {
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', `/api/associate/${provider}/`, { token: user.access_token, body });
    expect(linked.status, JSON.stringify(linked.body)).toBe(200);
    expect(linked.body.association.created).toBe(true);
    const signedIn = await call(stack.api, 'POST', `/api/auth/${provider}/`, { body: again });
    expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
    expect(signedIn.body.id).toBe(user.id);
    return { user, uid: linked.body.association.uid as string };
  }

  const refused = async (provider: string, body: Record<string, string>, detail?: RegExp) => {
    const answer = await call(stack.api, 'POST', `/api/auth/${provider}/`, { body });
    expectError(answer, 400, 'invalid_token');
    if (detail) expect(answer.body.detail).toMatch(detail);
  };

  describe('LINE', () => {
    it('access tokens: links and signs in; refuses another channel and an expired token', async () => {
      const token = await stack.emulator.mintLineToken({ user: { displayName: 'Taro' } });
      const { uid } = await linkThenSignIn('line', { access_token: token.access_token });
      expect(uid).toBe(token.user_id);
      const foreign = await stack.emulator.mintLineToken({ channel_id: '9999999999' });
      await refused('line', { access_token: foreign.access_token }, /another channel/);
      await stack.emulator.expireToken(token.access_token);
      await refused('line', { access_token: token.access_token });
    });

    it('ID tokens: verified by LINE for our channel, with the nonce', async () => {
      const token = await stack.emulator.mintLineToken({ nonce: 'line-nonce' });
      const user = await guest(stack.api);
      const linked = await call(stack.api, 'POST', '/api/associate/line/', {
        token: user.access_token,
        body: { id_token: token.id_token, nonce: 'line-nonce' },
      });
      expect(linked.body.association.uid).toBe(token.user_id);
      await refused('line', { id_token: token.id_token, nonce: 'wrong' });
      const foreign = await stack.emulator.mintLineToken({ channel_id: '8888888888' });
      await refused('line', { id_token: foreign.id_token });
    });
  });
});
