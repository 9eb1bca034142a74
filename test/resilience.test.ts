import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { call, expectError, guest, startStack, type Stack } from './helpers.js';

describe('provider calls under faults', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      SOCIAL_AUTH_PROVIDER_TIMEOUT_MS: '1000', // a hanging provider is given up on then
      SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '2',
      SOCIAL_AUTH_CIRCUIT_BREAKER_COOLDOWN_MS: '4000',
    });
  });
  afterAll(() => stack.close());
  beforeEach(() => stack.emulator.clearFaults());

  const facebookCalls = async () => (await stack.emulator.stats()).requests.facebook ?? 0;

  it('the circuit breaker answers 503 at once during an outage, then lets a trial call through', async () => {
    const fb = await stack.emulator.mintFacebookToken();
    const signIn = () => call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    await stack.emulator.setFault('facebook', { mode: 'error_500' });
    // Two sign-ins in a row failing because Facebook is down open the circuit.
    expectError(await signIn(), 502, 'provider_unavailable');
    expectError(await signIn(), 502, 'provider_unavailable');

    const callsBefore = await facebookCalls();
    const answers = await Promise.all(Array.from({ length: 20 }, signIn));
    for (const answer of answers) expectError(answer, 503, 'provider_unavailable');
    expect(await facebookCalls()).toBe(callsBefore); // answered at once: Facebook was not called

    // Facebook recovers; after the cool-down a trial call closes the circuit.
    await stack.emulator.clearFaults();
    await new Promise((resolve) => setTimeout(resolve, 4200));
    expectError(await signIn(), 404, 'user_not_found'); // a real answer again: the token is simply not linked
    expectError(await signIn(), 404, 'user_not_found');
  });

  it('one provider being down does not open the circuit of another', async () => {
    await stack.emulator.setFault('facebook', { mode: 'error_500' });
    const tw = await stack.emulator.mintTwitterToken();
    for (let i = 0; i < 3; i++) await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'x' } });
    expectError(
      await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      }),
      404,
      'user_not_found',
    );
  });

  it('retries a GET once when its connection was reset before any answer', async () => {
    const user = await guest(stack.api);
    const tw = await stack.emulator.mintTwitterToken();
    await stack.emulator.setFault('twitter', { mode: 'reset', count: 1 });
    const answer = await call(stack.api, 'POST', '/api/associate/twitter/', {
      token: user.access_token,
      body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
    });
    expect(answer.status).toBe(200);
  });

  it('retries only once: a second reset answers 502', async () => {
    const tw = await stack.emulator.mintTwitterToken();
    await stack.emulator.setFault('twitter', { mode: 'reset', count: 2 });
    expectError(
      await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      }),
      502,
      'provider_unavailable',
    );
  });

  it('never retries a POST (it may have been processed)', async () => {
    const line = await stack.emulator.mintLineToken();
    await stack.emulator.setFault('line', { mode: 'reset', count: 1 });
    expectError(
      await call(stack.api, 'POST', '/api/auth/line/', { body: { id_token: line.id_token } }),
      502,
      'provider_unavailable',
    );
  });

  it('never retries a timeout (the provider may be overloaded)', async () => {
    const tw = await stack.emulator.mintTwitterToken();
    const before = (await stack.emulator.stats()).requests.twitter ?? 0;
    await stack.emulator.setFault('twitter', { mode: 'hang', count: 1 });
    expectError(
      await call(stack.api, 'POST', '/api/auth/twitter/', {
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      }),
      502,
      'provider_unavailable',
    );
    expect(((await stack.emulator.stats()).requests.twitter ?? 0) - before).toBe(1);
  });
});

describe('a client that goes away', () => {
  let stack: Stack;
  beforeAll(async () => {
    // At warn level nothing reads the client's address before the provider answers (as in production).
    stack = await startStack('sqlite', {}, { logLevel: 'warn' });
  });
  afterAll(() => stack.close());

  it('a client that hangs up while the provider answers still gets its sign-in recorded, and no error', async () => {
    const fb = await stack.emulator.mintFacebookToken();
    const user = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          body: { access_token: fb.access_token },
          token: user.access_token,
        })
      ).status,
    ).toBe(200);
    await stack.emulator.setFault('facebook', { latency_ms: 300 });
    const body = JSON.stringify({ access_token: fb.access_token });
    const { hostname: host, port } = new URL(stack.api);
    const socket = connect(Number(port), host);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      `POST /api/auth/facebook/ HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
    await sleep(100);
    socket.destroy(); // gone before Facebook answers
    await sleep(600);
    expect(stack.logs.filter((line) => line.includes('unhandled error'))).toEqual([]);
    const audit = await call(stack.api, 'GET', '/api/audit/', { token: user.access_token });
    expect(audit.body[0]).toMatchObject({ event: 'social_sign_in', provider: 'facebook', ip: '127.0.0.1' });
  });
});
