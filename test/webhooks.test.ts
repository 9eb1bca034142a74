import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, runCli, startStack, type Stack } from './helpers.js';

// Webhooks from the transactional outbox (store/outbox.ts, core/webhooks.ts), received by a real HTTP server on
// loopback that verifies each signature with the Standard Webhooks library, as an app's backend would.

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

interface Received {
  id: string;
  type: string;
  data: Record<string, unknown>;
}

describe.each(databaseKinds())('webhooks on %s', (kind) => {
  let receiver: Server;
  let url: string;
  let stack: Stack;
  const received: Received[] = [];
  const refused: string[] = [];
  /** Answers 503 to this many requests first (the receiver is down). */
  let down = 0;

  beforeAll(async () => {
    const verifier = new Webhook(SECRET);
    receiver = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        if (down > 0) {
          down--;
          refused.push(String(request.headers['webhook-id']));
          return void response.writeHead(503).end();
        }
        // Throws on a wrong or stale signature: the test then sees no event.
        const event = verifier.verify(body, request.headers as Record<string, string>) as {
          type: string;
          data: Record<string, unknown>;
        };
        received.push({ id: String(request.headers['webhook-id']), type: event.type, data: event.data });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`;
    stack = await startStack(kind, {
      SOCIAL_LINK_WEBHOOK_URL: url,
      SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
      SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS: '50',
    });
  });
  afterAll(async () => {
    await stack.close();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  });
  beforeEach(() => {
    received.length = 0;
    refused.length = 0;
    down = 0;
  });

  const eventually = async (check: () => void, timeoutMs = 8000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        return check();
      } catch (error) {
        if (Date.now() > until) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };

  it("a user's life arrives in order, signed: user.created, link.created, sign_in, user.deleted", async () => {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        })
      ).status,
    ).toBe(200);
    const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', {
      body: { access_token: facebook.access_token },
    });
    expect((await call(stack.api, 'DELETE', '/api/me/', { token: signedIn.body.access_token })).status).toBe(204);
    await eventually(() =>
      expect(received.filter((event) => event.data.user_id === user.id).map((event) => event.type)).toEqual([
        'user.created',
        'link.created',
        'sign_in',
        'user.deleted',
      ]),
    );
    const link = received.find((event) => event.type === 'link.created')!;
    expect(link.data).toMatchObject({ user_id: user.id, provider: 'facebook', uid: facebook.user_id });
    expect(new Set(received.map((event) => event.id)).size).toBe(received.length);
  });

  it('an event is written if and only if its change commits: a refused link tells its owner (link.refused), creates nothing', async () => {
    const owner = await guest(stack.api);
    // A user with a password (a guest would be offered a merge instead: see test/guest-merge.test.ts).
    const other = (
      await call(stack.api, 'POST', '/api/users/', {
        body: { username: `other_${Date.now()}`, password: 'a long enough password' },
      })
    ).body;
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: owner.access_token,
      body: { access_token: facebook.access_token },
    });
    expectError(
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: other.access_token,
        body: { access_token: facebook.access_token },
      }),
      409,
      'already_associated',
    );
    await eventually(() =>
      expect(received.filter((event) => event.data.user_id === owner.id).map((event) => event.type)).toEqual([
        'user.created',
        'link.created',
        'link.refused',
      ]),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.filter((event) => event.data.user_id === other.id).map((event) => event.type)).toEqual([
      'user.created',
    ]);
    const rows = await stack.db.selectFrom('outbox').select('type').where('user_id', '=', other.id).execute();
    expect(rows.map((row) => row.type)).toEqual(['user.created']);
  });

  it('a guest merged into its old user: user.merged {from, into} is delivered', async () => {
    const old = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: old.access_token,
      body: { access_token: facebook.access_token },
    });
    const newPhone = await guest(stack.api);
    const refused = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: newPhone.access_token,
      body: { access_token: facebook.access_token },
    });
    expect(
      (
        await call(stack.api, 'POST', '/api/users/merge/', {
          token: newPhone.access_token,
          body: { merge_token: refused.body.merge_token },
        })
      ).status,
    ).toBe(200);
    await eventually(() =>
      expect(received.find((event) => event.type === 'user.merged')?.data).toMatchObject({
        from: newPhone.id,
        into: old.id,
        provider: 'facebook',
        uid: facebook.user_id,
      }),
    );
  });

  it('a receiver down for a while gets every event afterwards, with the same ids, in order; the CLI shows and replays them', async () => {
    down = 4;
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: facebook.access_token },
    });
    await eventually(() =>
      expect(received.filter((event) => event.data.user_id === user.id).map((event) => event.type)).toEqual([
        'user.created',
        'link.created',
      ]),
    );
    expect(refused.length).toBe(4);
    // The refused attempts (of these events, or of others still on their way) came again with their ids.
    await eventually(() => {
      for (const id of refused) expect(received.map((event) => event.id)).toContain(id);
    });

    const listed = await runCli(['webhooks', 'list', '--json', '--status', 'delivered'], {
      DATABASE_URL: stack.databaseUrl,
    });
    const lines = listed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { event_id: string; attempts: number });
    expect(lines.some((line) => line.attempts > 0)).toBe(true);
    const eventId = received.find((event) => event.type === 'link.created' && event.data.user_id === user.id)!.id;
    const replayed = await runCli(['webhooks', 'replay', eventId], { DATABASE_URL: stack.databaseUrl });
    expect(replayed.stdout).toContain('1 deliveries queued again');
    await eventually(() => expect(received.filter((event) => event.id === eventId)).toHaveLength(2));
  });
});

describe('webhook settings', () => {
  it('refuse a secret that is not whsec_ + 24 bytes or more, and a count of secrets that does not match', async () => {
    const { loadConfig } = await import('../src/config/config.js');
    expect(() =>
      loadConfig({ SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:1/h', SOCIAL_LINK_WEBHOOK_SECRET: 'secret' }),
    ).toThrow(/whsec_/);
    expect(() =>
      loadConfig({
        SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:1/a,http://127.0.0.1:1/b',
        SOCIAL_LINK_WEBHOOK_SECRET: `${SECRET},${SECRET},${SECRET}`,
      }),
    ).toThrow(/one per/);
    expect(() =>
      loadConfig({
        NODE_ENV: 'production',
        SOCIAL_LINK_SIGNING_KEYS: '{"keys":[]}',
        METRICS_TOKEN: 'x',
        SOCIAL_LINK_WEBHOOK_URL: 'http://hooks.example.com/h',
        SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
      }),
    ).toThrow(/https/);
    expect(
      loadConfig({
        SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:1/a,http://127.0.0.1:1/b',
        SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
      }).webhooks,
    ).toHaveLength(2);
  });
});
