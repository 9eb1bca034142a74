import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, expectError, guest, startStack, type Stack } from './helpers.js';
import { clientNetwork } from '../src/http/rate-limits.js';
import { loadConfig } from '../src/config/config.js';

describe('rate limits (in memory)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_SIGN_IN_PER_MINUTE: '5',
      RATE_LIMIT_LINKS_PER_MINUTE: '3',
    });
  });
  afterAll(() => stack.close());

  it('sign-in routes answer 429 rate_limited with Retry-After past the per-IP budget', async () => {
    const answers = [];
    for (let i = 0; i < 6; i++)
      answers.push(
        await call(stack.api, 'POST', '/api/token/', { body: { username: 'nobody', password: 'wrong password' } }),
      );
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
      return call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
    };
    for (let i = 0; i < 3; i++) expect((await link(busy)).status).toBe(200);
    expectError(await link(busy), 429, 'rate_limited');
    expect((await link(calm)).status).toBe(200);
  });
});

describe.runIf(process.env.TEST_REDIS_URL)('rate limits shared through Redis', () => {
  let first: Stack;
  let second: Stack;
  const prefix = `social-link-test:${randomBytes(6).toString('hex')}:`;
  beforeAll(async () => {
    const env = {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_SIGN_IN_PER_MINUTE: '4',
      REDIS_URL: process.env.TEST_REDIS_URL!,
      RATE_LIMIT_REDIS_PREFIX: prefix,
    };
    first = await startStack('sqlite', env);
    second = await startStack('sqlite', env);
  });
  afterAll(async () => {
    await first.close();
    await second.close();
  });

  it("names its keys by route, and the budgets checked in a handler by name (never 'undefined')", async () => {
    const { Redis } = await import('ioredis');
    const redis = new Redis(process.env.TEST_REDIS_URL!);
    const user = await guest(first.api);
    const fb = await first.emulator.mintFacebookToken();
    await call(first.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
    });
    await call(first.api, 'POST', '/api/token/', { body: { username: 'nobody', password: 'wrong password' } });
    const keys = await redis.keys(`${prefix}*`);
    await redis.quit();
    expect(keys.some((key) => key.endsWith(`limit-user:${user.id}`))).toBe(true);
    expect(keys.some((key) => key.includes('limit-password:127.0.0.1'))).toBe(true);
    expect(keys.some((key) => key.includes('POST/api/users/-'))).toBe(true);
    expect(keys.filter((key) => key.includes('undefined'))).toEqual([]);
  });

  it('a budget spent on one instance is spent on the other', async () => {
    for (let i = 0; i < 4; i++)
      expect((await call(first.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x' } })).status).toBe(400);
    expectError(
      await call(second.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x' } }),
      429,
      'rate_limited',
    );
  });
});

describe('rate limits when Redis is unreachable', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_SIGN_IN_PER_MINUTE: '3',
      REDIS_URL: 'redis://127.0.0.1:1',
    });
  });
  afterAll(() => stack.close());

  it('/readyz says so before any request has failed over (it read the connection, not the last request)', async () => {
    expect((await call(stack.api, 'GET', '/readyz')).body).toMatchObject({
      status: 'ok',
      rate_limits: 'memory (Redis unreachable)',
    });
  });

  it('lets requests through instead of failing sign-ins', async () => {
    expect((await call(stack.api, 'POST', '/api/users/')).status).toBe(201);
  });

  it("still brakes: the counts go to this instance's memory, which the log and /readyz say", async () => {
    const answers = [];
    for (let i = 0; i < 4; i++)
      answers.push((await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x' } })).status);
    expect(answers).toEqual([400, 400, 400, 429]);
    expect((await call(stack.api, 'GET', '/readyz')).body).toMatchObject({
      status: 'ok',
      rate_limits: 'memory (Redis unreachable)',
    });
    expect(stack.logs.some((line) => line.includes('Redis is unreachable'))).toBe(true);
  });
});

describe('rate limits when Redis is unreachable, with SOCIAL_LINK_INSTANCES and RATE_LIMIT_FAIL_CLOSED', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_SIGN_IN_PER_MINUTE: '10',
      RATE_LIMIT_PASSWORD_PER_MINUTE: '10',
      REDIS_URL: 'redis://127.0.0.1:1',
      SOCIAL_LINK_INSTANCES: '3',
      RATE_LIMIT_FAIL_CLOSED: 'password',
      TRUST_PROXY: 'true',
    });
  });
  afterAll(() => stack.close());

  it('each of 3 instances keeps a third of a budget: together they let no more through than the budget says', async () => {
    const answers = [];
    for (let i = 0; i < 5; i++)
      answers.push(
        (
          await call(stack.api, 'POST', '/api/auth/facebook/', {
            body: { access_token: 'x' },
            headers: { 'x-forwarded-for': '198.51.100.40' },
          })
        ).status,
      );
    // 10 a minute across 3 instances: 3 here (3 × 3 = 9 ≤ 10).
    expect(answers).toEqual([400, 400, 400, 429, 429]);
  });

  it('a budget named in RATE_LIMIT_FAIL_CLOSED is refused with 503 rate_limit_unavailable and Retry-After, before any password is tried', async () => {
    const attempt = await call(stack.api, 'POST', '/api/token/', {
      body: { username: 'nobody', password: 'wrong password' },
      headers: { 'x-forwarded-for': '198.51.100.41' },
    });
    expectError(attempt, 503, 'rate_limit_unavailable');
    expect(attempt.headers.get('retry-after')).toBe('5');
    // Other budgets still count in memory.
    expect(
      (await call(stack.api, 'POST', '/api/users/', { headers: { 'x-forwarded-for': '198.51.100.41' } })).status,
    ).toBe(201);
  });

  it('refuses an unknown budget name at start-up', () => {
    expect(() => loadConfig({ RATE_LIMIT_FAIL_CLOSED: 'passwords' })).toThrow(
      /RATE_LIMIT_FAIL_CLOSED: unknown budget passwords/,
    );
  });
});

describe('password attempts', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_SIGN_IN_PER_MINUTE: '100',
      RATE_LIMIT_PASSWORD_PER_MINUTE: '2',
      TRUST_PROXY: 'true',
      SOCIAL_LINK_COMPAT_PREFIX: '/myapp',
    });
  });
  afterAll(() => stack.close());

  it("share their budget with HTTP Basic on the original design's routes", async () => {
    const basic = (from: string) =>
      fetch(`${stack.api}/myapp/api/associate/facebook/`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Basic ${Buffer.from('nobody:wrong').toString('base64')}`,
          'x-forwarded-for': from,
        },
        body: '{"access_token":"x"}',
      });
    expect([
      (await basic('198.51.100.9')).status,
      (await basic('198.51.100.9')).status,
      (await basic('198.51.100.9')).status,
    ]).toEqual([401, 401, 429]);
    expect((await attempt('198.51.100.9')).status).toBe(429);
  });

  const attempt = (from: string) =>
    call(stack.api, 'POST', '/api/token/', {
      body: { username: 'nobody', password: 'wrong password' },
      headers: { 'x-forwarded-for': from },
    });

  it('have a lower budget than other sign-ins (each costs a scrypt), password sign-ups included', async () => {
    expect([
      (await attempt('198.51.100.7')).status,
      (await attempt('198.51.100.7')).status,
      (await attempt('198.51.100.7')).status,
    ]).toEqual([401, 401, 429]);
    const signUp = await call(stack.api, 'POST', '/api/users/', {
      body: { username: 'newcomer', password: 'long enough password' },
      headers: { 'x-forwarded-for': '198.51.100.7' },
    });
    expectError(signUp, 429, 'rate_limited');
    expect(
      (await call(stack.api, 'POST', '/api/users/', { headers: { 'x-forwarded-for': '198.51.100.7' } })).status,
    ).toBe(201); // a guest costs no scrypt
  });

  it('count an IPv6 client by its /64: every address of one subscriber network shares the budget', async () => {
    expect((await attempt('2001:db8:1:2::a')).status).toBe(401);
    expect((await attempt('2001:db8:1:2:ffff::b')).status).toBe(401);
    expectError(await attempt('2001:db8:1:2::c'), 429, 'rate_limited');
    expect((await attempt('2001:db8:1:3::a')).status).toBe(401);
  });
});

describe('the per-IP key', () => {
  it("is an IPv6 client's /64, an IPv4 client's address, also as a dual-stack listener sees it (::ffff:a.b.c.d)", () => {
    expect(clientNetwork('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(clientNetwork('2001:db8:1:2::1')).toBe(clientNetwork('2001:db8:1:2:ffff::9'));
    expect(clientNetwork('203.0.113.7')).toBe('203.0.113.7');
    expect(clientNetwork('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientNetwork('::ffff:203.0.113.8')).not.toBe(clientNetwork('::ffff:203.0.113.7'));
  });
});
