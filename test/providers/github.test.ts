import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from '../helpers.js';

// GitHub through HTTP against the emulator: tokens of our OAuth app only, the primary verified e-mail, one call to sign
// a linked account in. Elsewhere: the recorded answers replayed (fixtures.test.ts), what GitHub requires of a request
// (requests.test.ts), a rate limit (refusals.test.ts).

describe.each(databaseKinds())('github on %s', (kind) => {
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

  describe('GitHub', () => {
    it('links and signs in; refuses a token of another OAuth app and an unknown token', async () => {
      const token = await stack.emulator.mintGithubToken({ user: { login: 'octocat' } });
      const { uid } = await linkThenSignIn('github', { access_token: token.access_token });
      expect(uid).toBe(String(token.user_id));
      const foreign = await stack.emulator.mintGithubToken({
        client_id: 'someone-elses-oauth-app',
        user: { id: token.user_id },
      });
      await refused('github', { access_token: foreign.access_token }, /another app/);
      await refused('github', { access_token: 'gho_not_a_real_token_000000000000000000' });
    });
  });
});

// The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
// test/fixtures/providers/), through HTTP: server, emulator and database for real.

describe.each(databaseKinds())('real-provider behaviour on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, {
      // The real breaker: a flood of refused tokens must not open it.
      SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '5',
    });
  });
  afterAll(() => stack.close());
  afterEach(() => stack.emulator.clearFaults());

  const auth = (provider: string, body: Record<string, unknown>) =>
    call(stack.api, 'POST', `/api/auth/${provider}/`, { body });
  const associate = async (provider: string, body: Record<string, unknown>) => {
    const user = await guest(stack.api);
    const answer = await call(stack.api, 'POST', `/api/associate/${provider}/`, { token: user.access_token, body });
    return { user, answer };
  };
  const extraData = async (accessToken: string, provider: string) => {
    const links = (await call(stack.api, 'GET', '/api/associations/', { token: accessToken })).body as Array<{
      provider: string;
      extra_data: Record<string, unknown>;
    }>;
    return links.find((link) => link.provider === provider)?.extra_data;
  };

  describe('GitHub', () => {
    it('keeps the primary verified e-mail, which /user does not show; without the scope, none', async () => {
      const token = await stack.emulator.mintGithubToken({ user: { primary_email: 'private@users.example.com' } });
      const { user } = await associate('github', { access_token: token.access_token });
      expect(await extraData(user.access_token, 'github')).toMatchObject({ email: 'private@users.example.com' });
      const noScope = await stack.emulator.mintGithubToken({
        scopes: ['read:user'],
        user: { primary_email: 'hidden@users.example.com' },
      });
      const other = await associate('github', { access_token: noScope.access_token });
      expect(await extraData(other.user.access_token, 'github')).toMatchObject({ email: null });
    });
  });

  describe('GitHub, one call', () => {
    it('signs a linked account in with the token check alone; a new link reads /user and /user/emails too', async () => {
      const calls = async () => (await stack.emulator.stats()).requests.github ?? 0;
      const token = await stack.emulator.mintGithubToken();
      let before = await calls();
      const { user } = await associate('github', { access_token: token.access_token });
      expect(await calls()).toBe(before + 3);
      before = await calls();
      expect((await auth('github', { access_token: token.access_token })).body.id).toBe(user.id);
      expect(await calls()).toBe(before + 1);
    });
  });
});
