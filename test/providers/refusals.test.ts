import { describe, expect, it } from 'vitest';
import { databaseKinds, expectError, type Stack } from '../helpers.js';
import { linkToGuest, realBreakerStack, signInWith } from './flows.js';

// The real providers' behaviour that our own emulator once got wrong (each pinned by a fixture under
// test/fixtures/providers/), through HTTP: server, emulator and database for real.

describe.each(databaseKinds())('real-provider behaviour on %s', (kind) => {
  const stack = realBreakerStack(kind);

  describe("refusals that are the operator's or the provider's problem", () => {
    const warnLines = () =>
      stack.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.level === 40);

    it('answer 502/503 with a detail, and a warn line that says what to fix; the app never sees the hint', async () => {
      const cases: Array<{
        provider: string;
        fault: Parameters<Stack['emulator']['setFault']>[1];
        body: () => Promise<Record<string, string>>;
        status: number;
        hint: RegExp;
      }> = [
        {
          provider: 'facebook',
          fault: { mode: 'rate_limited', code: 17 },
          body: async () => ({ access_token: (await stack.emulator.mintFacebookToken()).access_token }),
          status: 503,
          hint: /throttles/,
        },
        {
          provider: 'twitter',
          fault: { mode: 'app_access_denied' },
          body: async () => {
            const t = await stack.emulator.mintTwitterToken();
            return { access_token: t.access_token, access_token_secret: t.access_token_secret };
          },
          status: 502,
          hint: /access level/,
        },
        {
          provider: 'line',
          fault: { mode: 'app_access_denied' },
          body: async () => ({ access_token: (await stack.emulator.mintLineToken()).access_token }),
          status: 502,
          hint: /plan and permissions/,
        },
        {
          provider: 'line',
          fault: { mode: 'rate_limited' },
          body: async () => ({ access_token: (await stack.emulator.mintLineToken()).access_token }),
          status: 503,
          hint: /throttles/,
        },
        {
          provider: 'github',
          fault: { mode: 'rate_limited' },
          body: async () => ({ access_token: (await stack.emulator.mintGithubToken()).access_token }),
          status: 503,
          hint: /throttles/,
        },
      ];
      for (const { provider, fault, body, status, hint } of cases) {
        const sent = await body();
        await stack.emulator.setFault(provider, fault);
        const answer = await signInWith(stack, provider, sent);
        await stack.emulator.clearFaults();
        expectError(answer, status, 'provider_unavailable');
        expect(answer.body.detail, provider).toMatch(/rate-limiting this server's app|refused this server's app/);
        expect(JSON.stringify(answer.body)).not.toMatch(/SOCIAL_AUTH_|developer portal|Console/);
        const line = warnLines().find(
          (entry) => entry.provider === provider && entry.request_id === answer.body.request_id,
        );
        expect(line, `${provider}: a warn line for the operator`).toBeDefined();
        expect(String(line!.msg)).toMatch(hint);
      }
      // A rate limit may be one user's (Graph 17, X 88): ten in a row leave the circuit closed for everyone else.
      const mine = await stack.emulator.mintFacebookToken();
      expect((await linkToGuest(stack, 'facebook', { access_token: mine.access_token })).answer.status).toBe(200);
      await stack.emulator.setFault('facebook', { mode: 'rate_limited', code: 17, count: 10 });
      for (let i = 0; i < 10; i++)
        expectError(
          await signInWith(stack, 'facebook', { access_token: mine.access_token }),
          503,
          'provider_unavailable',
        );
      expect((await signInWith(stack, 'facebook', { access_token: mine.access_token })).status).toBe(200);
      // GitHub said when its window resets: the app is told when to try again.
      await stack.emulator.setFault('github', { mode: 'rate_limited' });
      const throttled = await signInWith(stack, 'github', {
        access_token: (await stack.emulator.mintGithubToken()).access_token,
      });
      expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(3000);
    });
  });
});
