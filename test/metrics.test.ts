import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILT_CLI, call, databaseKinds, expectError, guest, runCli, startStack, type Stack } from './helpers.js';

// Every metric of src/http/metrics.ts, read from /metrics after the action that moves it: the social requests'
// outcomes, the provider calls and callbacks, the webhook deliveries and the outbox's backlog, and, with
// `serve --workers 2`, the figures of the whole process group whichever worker answers the scrape.

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const COMPAT = '/myapp';
const DAY_SECONDS = 86_400;
/** Far beyond what a test takes even on a busy machine: the polls' deadlines decide, never a timing. */
const TEST_BUDGET_MS = 120_000;

type Labels = Record<string, string>;

/** The samples of one metric in Prometheus text format. */
function samples(text: string, metric: string): Array<{ labels: Labels; value: number }> {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
    .map((line) => {
      const match = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)$/.exec(line)!;
      const labels = Object.fromEntries([...(match[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      return { labels, value: Number(match[2]) };
    });
}

/** The value of the sample with exactly these labels (0 when there is none yet, as Prometheus reads an absent counter). */
function valueOf(text: string, metric: string, labels: Labels = {}): number {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  return (
    samples(text, metric).find((sample) => JSON.stringify(Object.entries(sample.labels).sort()) === wanted)?.value ?? 0
  );
}

async function scrape(base: string): Promise<string> {
  const answer = await fetch(`${base}/metrics`, { headers: { connection: 'close' } });
  expect(answer.status).toBe(200);
  return answer.text();
}

/** Retries `check` until it passes (a delivery, a counter updated once the answer is sent): generous, never a timing assertion. */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe.each(databaseKinds())('metrics on %s', { timeout: TEST_BUDGET_MS }, (kind) => {
  let stack: Stack;
  let receiver: Server;
  /** While true, the webhook receiver answers 503 (it is down). */
  let receiverDown = false;

  beforeAll(async () => {
    receiver = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(receiverDown ? 503 : 204).end());
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`;
    stack = await startStack(kind, {
      SOCIAL_LINK_WEBHOOK_URL: url,
      SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
      SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS: '50',
      SOCIAL_LINK_COMPAT_PREFIX: COMPAT,
    });
  });
  afterAll(async () => {
    await stack.close();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  });

  const social = (labels: Labels) => async () =>
    valueOf(await scrape(stack.api), 'social_link_social_requests_total', labels);

  it('social_link_social_requests_total counts each associate and auth request once, by action, provider and result', async () => {
    const linked = { action: 'associate', provider: 'facebook', result: 'ok' };
    const unlinked = { action: 'auth', provider: 'facebook', result: 'user_not_found' };
    const refused = { action: 'auth', provider: 'facebook', result: 'invalid_token' };
    const malformed = { action: 'auth', provider: 'facebook', result: 'invalid_request' };
    const signedIn = { action: 'auth', provider: 'facebook', result: 'ok' };
    const before = await scrape(stack.api);

    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken();
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        })
      ).status,
    ).toBe(200);
    expect(
      (await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: facebook.access_token } })).status,
    ).toBe(200);
    // A Facebook account nobody linked: 404 user_not_found.
    const stranger = await stack.emulator.mintFacebookToken();
    expectError(
      await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: stranger.access_token } }),
      404,
      'user_not_found',
    );
    expectError(
      await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'not-a-token-facebook-issued' } }),
      400,
      'invalid_token',
    );
    // Refused by the body's schema, before the handler: counted all the same, with the code answered.
    expectError(await call(stack.api, 'POST', '/api/auth/facebook/', { body: {} }), 400, 'invalid_request');

    await eventually(async () => {
      const after = await scrape(stack.api);
      for (const [labels, count] of [
        [linked, 1],
        [signedIn, 1],
        [unlinked, 1],
        [refused, 1],
        [malformed, 1],
      ] as const) {
        expect([
          labels,
          valueOf(after, 'social_link_social_requests_total', labels) -
            valueOf(before, 'social_link_social_requests_total', labels),
        ]).toEqual([labels, count]);
      }
    });
    // Its provider calls, timed by provider and outcome.
    const text = await scrape(stack.api);
    expect(
      valueOf(text, 'social_link_provider_request_duration_seconds_count', { provider: 'facebook', outcome: 'ok' }),
    ).toBeGreaterThanOrEqual(3);
  });

  it('a provider nobody configured is counted as unknown: a made-up name in the path makes no label value', async () => {
    const unknown = { action: 'auth', provider: 'unknown', result: 'unknown_provider' };
    const before = await social(unknown)();
    const names = [`made-up-${randomBytes(4).toString('hex')}`, `other-${randomBytes(4).toString('hex')}`];
    for (const name of names)
      expectError(
        await call(stack.api, 'POST', `/api/auth/${name}/`, { body: { access_token: 'x' } }),
        404,
        'unknown_provider',
      );
    await eventually(async () => expect((await social(unknown)()) - before).toBe(2));
    const text = await scrape(stack.api);
    for (const name of names) expect(text).not.toContain(name);
  });

  it('the compatibility routes count under our provider names (python-social-auth backends mapped), unknown backends as unknown', async () => {
    const google = { action: 'auth', provider: 'google', result: 'user_not_found' };
    const facebookLinked = { action: 'associate', provider: 'facebook', result: 'ok' };
    const unknown = { action: 'associate', provider: 'unknown', result: 'unknown_provider' };
    const before = await scrape(stack.api);

    const token = await stack.emulator.mintIdToken('google');
    expectError(
      await call(stack.api, 'POST', `${COMPAT}/api/auth/google-oauth2/`, { body: { id_token: token.id_token } }),
      404,
      'user_not_found',
    );
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken();
    expect(
      (
        await call(stack.api, 'POST', `${COMPAT}/api/associate/facebook/`, {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        })
      ).status,
    ).toBe(200);
    expectError(
      await call(stack.api, 'POST', `${COMPAT}/api/associate/no-such-backend/`, {
        token: user.access_token,
        body: { access_token: 'x' },
      }),
      404,
      'unknown_provider',
    );

    await eventually(async () => {
      const after = await scrape(stack.api);
      for (const labels of [google, facebookLinked, unknown]) {
        expect([
          labels,
          valueOf(after, 'social_link_social_requests_total', labels) -
            valueOf(before, 'social_link_social_requests_total', labels),
        ]).toEqual([labels, 1]);
      }
      expect(after).not.toContain('no-such-backend');
    });
  });

  it('social_link_provider_callbacks_total counts provider callbacks by outcome: a stale one refused, a forged one invalid', async () => {
    const refused = { provider: 'facebook', outcome: 'refused' };
    const invalid = { provider: 'facebook', outcome: 'invalid' };
    const before = await scrape(stack.api);
    const deauthorize = (secret: string, issuedAt: number) => {
      const body = Buffer.from(
        JSON.stringify({ algorithm: 'HMAC-SHA256', issued_at: issuedAt, user_id: '1234' }),
      ).toString('base64url');
      const signature = createHmac('sha256', secret).update(body).digest('base64url');
      return fetch(`${stack.api}/api/providers/facebook/deauthorize`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', connection: 'close' },
        body: new URLSearchParams({ signed_request: `${signature}.${body}` }).toString(),
      });
    };
    // Signed with the app's secret a week ago: too old (400 invalid_token).
    expect(
      (await deauthorize(stack.apps.facebook.appSecret, Math.floor(Date.now() / 1000) - 7 * DAY_SECONDS)).status,
    ).toBe(400);
    // Signed with a secret that is not the app's (400 invalid_request).
    expect((await deauthorize('not-the-app-secret', Math.floor(Date.now() / 1000))).status).toBe(400);
    await eventually(async () => {
      const after = await scrape(stack.api);
      for (const labels of [refused, invalid]) {
        expect([
          labels,
          valueOf(after, 'social_link_provider_callbacks_total', labels) -
            valueOf(before, 'social_link_provider_callbacks_total', labels),
        ]).toEqual([labels, 1]);
      }
    });
  });

  it('webhook deliveries are counted by event and outcome (failed, delivered, gave_up), timed, and the outbox gauges show the backlog and its age', async () => {
    const deliveries = (event: string, outcome: string) => (text: string) =>
      valueOf(text, 'social_link_webhook_deliveries_total', { event, outcome });
    const timed = (outcome: string) => (text: string) =>
      valueOf(text, 'social_link_webhook_delivery_duration_seconds_count', { outcome });
    const pending = (text: string) => valueOf(text, 'social_link_webhook_outbox_pending');
    const oldestAge = (text: string) => valueOf(text, 'social_link_webhook_outbox_oldest_age_seconds');
    // Whatever the tests before sent is delivered: an empty outbox.
    const start = await eventually(async () => {
      const text = await scrape(stack.api);
      expect([pending(text), oldestAge(text)]).toEqual([0, 0]);
      return text;
    });

    // The receiver is down: user.created is tried, fails, waits in the outbox.
    receiverDown = true;
    const first = await guest(stack.api);
    await eventually(async () => {
      const text = await scrape(stack.api);
      expect(
        deliveries('user.created', 'failed')(text) - deliveries('user.created', 'failed')(start),
      ).toBeGreaterThanOrEqual(1);
      expect(timed('failed')(text) - timed('failed')(start)).toBeGreaterThanOrEqual(1);
      expect(pending(text)).toBe(1);
      expect(oldestAge(text)).toBeGreaterThan(0);
    });
    // Written two days ago (still within the 3 days of retries): the gauge says how old it is.
    await stack.db
      .updateTable('outbox')
      .set({ created_at: new Date(Date.now() - 2 * DAY_SECONDS * 1000).toISOString() })
      .where('user_id', '=', first.id)
      .execute();
    await eventually(async () => expect(oldestAge(await scrape(stack.api))).toBeGreaterThanOrEqual(2 * DAY_SECONDS));

    // The receiver is back: delivered, and the outbox is empty again.
    const beforeDelivery = await scrape(stack.api);
    receiverDown = false;
    await eventually(async () => {
      const text = await scrape(stack.api);
      expect(
        deliveries('user.created', 'delivered')(text) - deliveries('user.created', 'delivered')(beforeDelivery),
      ).toBe(1);
      expect(timed('delivered')(text) - timed('delivered')(beforeDelivery)).toBe(1);
      expect([pending(text), oldestAge(text)]).toEqual([0, 0]);
    });

    // Down again, for an event four days old: past the 3 days of retries, its next failure gives it up.
    receiverDown = true;
    const second = await guest(stack.api);
    await stack.db
      .updateTable('outbox')
      .set({ created_at: new Date(Date.now() - 4 * DAY_SECONDS * 1000).toISOString() })
      .where('user_id', '=', second.id)
      .execute();
    await eventually(async () => {
      const text = await scrape(stack.api);
      expect(deliveries('user.created', 'gave_up')(text) - deliveries('user.created', 'gave_up')(start)).toBe(1);
      expect(timed('gave_up')(text) - timed('gave_up')(start)).toBe(1);
      expect([pending(text), oldestAge(text)]).toEqual([0, 0]);
    });
    receiverDown = false;
  });

  it('every request is timed by route and status; the process metrics are there', async () => {
    const before = valueOf(await scrape(stack.api), 'social_link_http_request_duration_seconds_count', {
      method: 'GET',
      route: '/healthz',
      status_code: '200',
    });
    for (let i = 0; i < 3; i++) expect((await call(stack.api, 'GET', '/healthz')).status).toBe(200);
    await eventually(async () => {
      const text = await scrape(stack.api);
      expect(
        valueOf(text, 'social_link_http_request_duration_seconds_count', {
          method: 'GET',
          route: '/healthz',
          status_code: '200',
        }) - before,
      ).toBe(3);
      expect(valueOf(text, 'social_link_process_resident_memory_bytes')).toBeGreaterThan(0);
    });
  });
});

describe.each(databaseKinds())('metrics while the database is away, on %s', { timeout: TEST_BUDGET_MS }, (kind) => {
  let stack: Stack;
  let receiver: Server;

  beforeAll(async () => {
    // A receiver that is down: the event waits in the outbox.
    receiver = createServer(
      (request, response) => void request.resume().on('end', () => response.writeHead(503).end()),
    );
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`;
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

  it('/metrics still answers, the outbox gauges with their last values', async () => {
    await guest(stack.api);
    await eventually(async () =>
      expect(valueOf(await scrape(stack.api), 'social_link_webhook_outbox_pending')).toBe(1),
    );
    // The server's database connection closes under it: every query fails from now on.
    await stack.db.destroy();
    const text = await scrape(stack.api);
    expect(valueOf(text, 'social_link_webhook_outbox_pending')).toBe(1);
    expect(valueOf(text, 'social_link_webhook_outbox_oldest_age_seconds')).toBeGreaterThan(0);
    expect(
      valueOf(text, 'social_link_http_request_duration_seconds_count', {
        method: 'POST',
        route: '/api/users/',
        status_code: '201',
      }),
    ).toBe(1);
  });
});

describe('serve --workers 2: one scrape answers the whole process group', { timeout: TEST_BUDGET_MS }, () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let base: string;
  /** What the processes logged (JSON lines, each with its pid). */
  let output = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'social-link-metrics-workers-'));
    // Webhooks to a loopback port nobody listens on: every event stays in the outbox.
    const env = {
      NODE_ENV: 'development',
      DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`,
      SOCIAL_LINK_SIGNING_KEYS: '',
      SOCIAL_LINK_ENCRYPTION_KEYS: '',
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
    };
    const migrated = await runCli(['migrate'], env);
    expect(migrated.status, migrated.stderr).toBe(0);
    // PORT=0: the workers share the one port the first of them was given; their log lines say which. Both must
    // listen before the requests are sent, for the primary to deal them out to both.
    const child = spawn(process.execPath, [BUILT_CLI, 'serve', '--workers', '2'], {
      cwd: dir,
      env: {
        ...process.env,
        ...env,
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0',
        RATE_LIMIT_ENABLED: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server = child;
    base = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const listening = [...output.matchAll(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/g)];
        if (listening.length === 2) resolve(listening[0]![1]!);
      });
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('exit', (code) => reject(new Error(`serve --workers 2 exited (${code}): ${output}`)));
    });
  }, TEST_BUDGET_MS);
  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server!.on('exit', resolve));
      server.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('the requests counted in any scrape are those sent to both workers; the outbox gauges are not summed', async () => {
    const sent = 10;
    // A connection each: the primary deals them out to the workers in turn.
    for (let i = 0; i < sent; i++)
      expect((await call(base, 'POST', '/api/users/', { headers: { connection: 'close' } })).status).toBe(201);
    const created = (text: string) =>
      samples(text, 'social_link_http_request_duration_seconds_count')
        .filter((sample) => sample.labels.route === '/api/users/')
        .reduce((sum, sample) => sum + sample.value, 0);
    // Both workers served some of them (else one worker's figures alone would pass): their pids in the request logs.
    const servedBy = new Set(
      output
        .split('\n')
        .filter((line) => line.includes('"/api/users/"'))
        .map((line) => /"pid":(\d+)/.exec(line)?.[1]),
    );
    servedBy.delete(undefined);
    expect(servedBy.size).toBe(2);
    await eventually(async () => expect(created(await scrape(base))).toBe(sent));
    for (let i = 0; i < 4; i++) {
      const text = await scrape(base);
      expect(created(text)).toBe(sent);
      // Added up by the primary: a process's start time means nothing for a group (prom-client omits it).
      expect(samples(text, 'social_link_process_start_time_seconds')).toEqual([]);
      // Each worker reads the one database's outbox: the group answers its figure once (the highest), not the sum.
      expect(samples(text, 'social_link_webhook_outbox_pending')).toEqual([{ labels: {}, value: sent }]);
    }
  });
});
