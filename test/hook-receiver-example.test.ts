import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { call, guest, startStack, type Stack } from './helpers.js';

/**
 * README "Blocking hooks" shows a receiver in another language than ours: examples/hook-receiver.py (Python's
 * standard library only). It runs here for real, behind a real server: what the README promises, it does.
 */
const python = spawnSync('python3', ['--version']).status === 0;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe.skipIf(!python)("the README's Python hook receiver (examples/hook-receiver.py)", () => {
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  let receiver: ChildProcess;
  let stack: Stack;

  beforeAll(async () => {
    const port = await freePort();
    receiver = spawn('python3', ['examples/hook-receiver.py', String(port)], {
      env: { ...process.env, SOCIAL_LINK_HOOK_SECRET: secret },
      stdio: 'ignore',
    });
    // Listening once a connection is accepted.
    for (let tries = 0; ; tries++) {
      const up = await fetch(`http://127.0.0.1:${port}/`, { method: 'HEAD' }).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (tries > 200) throw new Error('the Python receiver did not start');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    stack = await startStack('sqlite', {
      SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: `http://127.0.0.1:${port}/`,
      SOCIAL_LINK_HOOK_SECRET: secret,
      // The Python server may be slow to start its answers on a busy machine.
      SOCIAL_LINK_HOOK_TIMEOUT_MS: '10000',
    });
  }, 60_000);
  afterAll(async () => {
    receiver?.kill();
    await stack?.close();
  });

  it('checks our signature, gives the linked user its claim, and refuses a banned device with its own words', async () => {
    const user = await guest(stack.api);
    const fb = await stack.emulator.mintFacebookToken({});
    const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
    });
    expect(linked.status).toBe(200);

    const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', {
      body: { access_token: (await stack.emulator.mintFacebookToken({ user: { id: fb.user_id } })).access_token },
    });
    expect(signedIn.status).toBe(200);
    expect(decodeJwt(signedIn.body.access_token)).toMatchObject({ sub: String(user.id), plan: 'pro' });

    const banned = await call(stack.api, 'POST', '/api/auth/facebook/', {
      headers: { 'user-agent': 'BannedPhone/1.0' },
      body: { access_token: (await stack.emulator.mintFacebookToken({ user: { id: fb.user_id } })).access_token },
    });
    expect(banned.status).toBe(403);
    expect(banned.body).toMatchObject({
      code: 'hook_refused',
      message: 'This device is blocked',
      reason: 'banned_device',
    });
  });
});
