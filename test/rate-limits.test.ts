import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, expectError, guest, startStack, type Stack } from './helpers.js';

describe('rate limits (in memory)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_SIGN_IN_PER_MINUTE: '5', RATE_LIMIT_LINKS_PER_MINUTE: '3' });
  });
  afterAll(() => stack.close());

  it('sign-in routes answer 429 rate_limited with Retry-After past the per-IP budget', async () => {
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await call(stack.api, 'POST', '/api/token/', { body: { username: 'nobody', password: 'wrong password' } }));
    expect(answers.slice(0, 5).map((answer) => answer.status)).toEqual([401, 401, 401, 401, 401]);
    const limited = answers[5]!;
    expectError(limited, 429, 'rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.body.retry_after).toBeGreaterThan(0);
  });

  it('linking answers 429 past the per-user budget, while other users go on', async () => {
    // Tokens for two users, made before the per-IP budget of user creation runs out.
    const busy = await guest(stack.api);
    const calm = await guest(stack.api);
    const link = async (user: { access_token: string }) => {
      const fb = await stack.emulator.mintFacebookToken();
      return call(stack.api, 'POST', '/api/associate/facebook/', { token: user.access_token, body: { access_token: fb.access_token } });
    };
    for (let i = 0; i < 3; i++) expect((await link(busy)).status).toBe(200);
    expectError(await link(busy), 429, 'rate_limited');
    expect((await link(calm)).status).toBe(200);
  });
});

describe.runIf(process.env.TEST_REDIS_URL)('rate limits shared through Redis', () => {
  let first: Stack;
  let second: Stack;
  beforeAll(async () => {
    const env = {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_SIGN_IN_PER_MINUTE: '4',
      REDIS_URL: process.env.TEST_REDIS_URL!,
      RATE_LIMIT_REDIS_PREFIX: `social-link-test:${randomBytes(6).toString('hex')}:`,
    };
    first = await startStack('sqlite', env);
    second = await startStack('sqlite', env);
  });
  afterAll(async () => {
    await first.close();
    await second.close();
  });

  it('a budget spent on one instance is spent on the other', async () => {
    for (let i = 0; i < 4; i++) expect((await call(first.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x' } })).status).toBe(400);
    expectError(await call(second.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x' } }), 429, 'rate_limited');
  });
});

describe('rate limits when Redis is unreachable', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { RATE_LIMIT_ENABLED: 'true', REDIS_URL: 'redis://127.0.0.1:1' });
  });
  afterAll(() => stack.close());

  it('lets requests through instead of failing sign-ins', async () => {
    expect((await call(stack.api, 'POST', '/api/users/')).status).toBe(201);
  });
});
