import { describe, expect, it } from 'vitest';
import { databaseKinds } from '../helpers.js';
import {
  extraDataOf,
  linkThenSignIn,
  linkToGuest,
  providerRequests,
  realBreakerStack,
  refusedSignIn,
  signInWith,
} from './flows.js';

// GitHub through HTTP against the emulator: tokens of our OAuth app only, the primary verified e-mail, one call to sign
// a linked account in. Elsewhere: the recorded answers replayed (fixtures.test.ts), what GitHub requires of a request
// (requests.test.ts), a rate limit (refusals.test.ts).

describe.each(databaseKinds())('github on %s', (kind) => {
  const stack = realBreakerStack(kind);

  describe('GitHub', () => {
    it('links and signs in; refuses a token of another OAuth app and an unknown token', async () => {
      const token = await stack.emulator.mintGithubToken({ user: { login: 'octocat' } });
      const { uid } = await linkThenSignIn(stack, 'github', { access_token: token.access_token });
      expect(uid).toBe(String(token.user_id));
      const foreign = await stack.emulator.mintGithubToken({
        client_id: 'someone-elses-oauth-app',
        user: { id: token.user_id },
      });
      await refusedSignIn(stack, 'github', { access_token: foreign.access_token }, /another app/);
      await refusedSignIn(stack, 'github', { access_token: 'gho_not_a_real_token_000000000000000000' });
    });

    // The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
    // test/fixtures/providers/), through HTTP: server, emulator and database for real.

    it('keeps the primary verified e-mail, which /user does not show; without the scope, none', async () => {
      const token = await stack.emulator.mintGithubToken({ user: { primary_email: 'private@users.example.com' } });
      const { user } = await linkToGuest(stack, 'github', { access_token: token.access_token });
      expect(await extraDataOf(stack, user.access_token, 'github')).toMatchObject({
        email: 'private@users.example.com',
      });
      const noScope = await stack.emulator.mintGithubToken({
        scopes: ['read:user'],
        user: { primary_email: 'hidden@users.example.com' },
      });
      const other = await linkToGuest(stack, 'github', { access_token: noScope.access_token });
      expect(await extraDataOf(stack, other.user.access_token, 'github')).toMatchObject({ email: null });
    });
  });

  describe('GitHub, one call', () => {
    it('signs a linked account in with the token check alone; a new link reads /user and /user/emails too', async () => {
      const calls = () => providerRequests(stack, 'github');
      const token = await stack.emulator.mintGithubToken();
      let before = await calls();
      const { user } = await linkToGuest(stack, 'github', { access_token: token.access_token });
      expect(await calls()).toBe(before + 3);
      before = await calls();
      expect((await signInWith(stack, 'github', { access_token: token.access_token })).body.id).toBe(user.id);
      expect(await calls()).toBe(before + 1);
    });
  });
});
