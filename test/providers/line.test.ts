import { describe, expect, it } from 'vitest';
import { databaseKinds } from '../helpers.js';
import { linkThenSignIn, linkToGuest, refusedSignIn, sharedStack } from './flows.js';

// LINE through HTTP against the emulator: access tokens and ID tokens, each for our channel only. Elsewhere: the
// recorded answers replayed (fixtures.test.ts), what LINE requires of a request (requests.test.ts), an app LINE refuses
// (its plan and permissions) and a rate limit (refusals.test.ts).

describe.each(databaseKinds())('line on %s', (kind) => {
  const stack = sharedStack(kind);

  describe('LINE', () => {
    it('access tokens: links and signs in; refuses another channel and an expired token', async () => {
      const token = await stack.emulator.mintLineToken({ user: { displayName: 'Taro' } });
      const { uid } = await linkThenSignIn(stack, 'line', { access_token: token.access_token });
      expect(uid).toBe(token.user_id);
      const foreign = await stack.emulator.mintLineToken({ channel_id: '9999999999' });
      await refusedSignIn(stack, 'line', { access_token: foreign.access_token }, /another channel/);
      await stack.emulator.expireToken(token.access_token);
      await refusedSignIn(stack, 'line', { access_token: token.access_token });
    });

    it('ID tokens: verified by LINE for our channel, with the nonce', async () => {
      const token = await stack.emulator.mintLineToken({ nonce: 'line-nonce' });
      const { answer: linked } = await linkToGuest(stack, 'line', { id_token: token.id_token, nonce: 'line-nonce' });
      expect(linked.body.association.uid).toBe(token.user_id);
      await refusedSignIn(stack, 'line', { id_token: token.id_token, nonce: 'wrong' });
      const foreign = await stack.emulator.mintLineToken({ channel_id: '8888888888' });
      await refusedSignIn(stack, 'line', { id_token: foreign.id_token });
    });
  });
});
