import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, guest, startStack, type Stack } from './helpers.js';

/** The samples of one metric in Prometheus text format: labels → value. */
function samples(text: string, metric: string): Array<{ labels: Record<string, string>; value: number }> {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
    .map((line) => {
      const match = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)$/.exec(line)!;
      const labels = Object.fromEntries([...(match[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      return { labels, value: Number(match[2]) };
    });
}

describe.each(databaseKinds())('operations on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  it('/healthz and /readyz answer ok', async () => {
    expect((await call(stack.api, 'GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await call(stack.api, 'GET', '/readyz')).body).toEqual({
      status: 'ok',
      database: 'ok',
      rate_limits: 'off',
    });
  });

  it('/metrics counts requests by route and status, and provider calls by provider and outcome', async () => {
    const user = await guest(stack.api);
    const fb = await stack.emulator.mintFacebookToken();
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
    });
    await stack.emulator.setFault('facebook', { mode: 'error_500' });
    await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    await stack.emulator.clearFaults();

    const scraped = await fetch(`${stack.api}/metrics`);
    expect(scraped.headers.get('content-type')).toContain('text/plain');
    const text = await scraped.text();
    const requests = samples(text, 'social_link_http_request_duration_seconds_count');
    expect(requests).toContainEqual({
      labels: { method: 'POST', route: '/api/users/', status_code: '201' },
      value: expect.any(Number),
    });
    expect(
      requests.find((s) => s.labels.route === '/api/associate/:provider/' && s.labels.status_code === '200')?.value,
    ).toBe(1);
    expect(
      requests.find((s) => s.labels.route === '/api/auth/:provider/' && s.labels.status_code === '502')?.value,
    ).toBe(1);
    const providerCalls = samples(text, 'social_link_provider_request_duration_seconds_count');
    expect(
      providerCalls.find((s) => s.labels.provider === 'facebook' && s.labels.outcome === 'ok')?.value,
    ).toBeGreaterThanOrEqual(2);
    expect(
      providerCalls.find((s) => s.labels.provider === 'facebook' && s.labels.outcome === 'server_error')?.value,
    ).toBeGreaterThanOrEqual(1);
    expect(samples(text, 'social_link_process_resident_memory_bytes')[0]?.value).toBeGreaterThan(0);
  });

  it('every answer carries a request id, also in error bodies and in the log lines of that request', async () => {
    const answer = await call(stack.api, 'POST', '/api/auth/facebook/', { body: {} });
    const id = answer.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.body.request_id).toBe(id);
    expect(stack.logs.some((line) => JSON.parse(line).request_id === id)).toBe(true);

    const given = await call(stack.api, 'GET', '/api/me/', { headers: { 'x-request-id': 'trace-abc.123' } });
    expect(given.headers.get('x-request-id')).toBe('trace-abc.123');
    const hostile = await call(stack.api, 'GET', '/healthz', {
      headers: { 'x-request-id': 'evil\u00e9 id {"level":60}' },
    });
    expect(hostile.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('never logs tokens, secrets or passwords', async () => {
    const created = await call(stack.api, 'POST', '/api/users/', {
      body: { username: `logcheck_${kind}`, password: 'super secret password' },
    });
    const fb = await stack.emulator.mintFacebookToken();
    const tw = await stack.emulator.mintTwitterToken();
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: created.body.access_token,
      body: { access_token: fb.access_token },
    });
    await call(stack.api, 'POST', '/api/associate/twitter/', {
      token: created.body.access_token,
      body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
    });
    await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: created.body.refresh_token } });
    await stack.emulator.setFault('facebook', { mode: 'reset' });
    await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    await stack.emulator.clearFaults();
    const logs = stack.logs.join('\n');
    expect(logs).toContain('associated'); // the log is really being read
    for (const secret of [
      created.body.access_token,
      created.body.refresh_token,
      'super secret password',
      fb.access_token,
      tw.access_token,
      tw.access_token_secret,
      'test-facebook-secret',
      'test-twitter-secret',
    ]) {
      expect(logs).not.toContain(secret);
    }
  });

  it('never logs a token sent in a query string: the path and parameter names only', async () => {
    const user = await call(stack.api, 'POST', '/api/users/');
    const answer = await call(
      stack.api,
      'GET',
      `/api/me/?access_token=${user.body.access_token}&x=${user.body.refresh_token}`,
    );
    expect(answer.status).toBe(401);
    const lines = stack.logs.filter((line) => line.includes(answer.body.request_id)).join('\n');
    expect(lines).toContain('/api/me/?access_token=[redacted]&x=[redacted]');
    expect(lines).not.toContain(user.body.access_token);
    expect(lines).not.toContain(user.body.refresh_token);
    // A bare token, without a name: no name to keep.
    const bare = await call(stack.api, 'GET', `/api/me/?${user.body.refresh_token}`);
    const bareLines = stack.logs.filter((line) => line.includes(bare.body.request_id)).join('\n');
    expect(bareLines).toContain('/api/me/?[redacted]=[redacted]');
    expect(bareLines).not.toContain(user.body.refresh_token);
  });

  it('sends security headers and no CORS headers by default', async () => {
    const answer = await call(stack.api, 'GET', '/healthz', { headers: { origin: 'https://evil.example' } });
    expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
    expect(answer.headers.get('strict-transport-security')).toContain('max-age');
    expect(answer.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS when configured', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { CORS_ORIGINS: 'https://app.example' });
  });
  afterAll(() => stack.close());

  it('allows the configured origin only', async () => {
    const allowed = await call(stack.api, 'GET', '/healthz', { headers: { origin: 'https://app.example' } });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const other = await call(stack.api, 'GET', '/healthz', { headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('METRICS_PORT: metrics on a port of their own', () => {
  let stack: Stack;
  let metrics: string;
  beforeAll(async () => {
    const port = await freePort();
    stack = await startStack('sqlite', { METRICS_PORT: String(port), METRICS_TOKEN: 'scrape-me' });
    metrics = `http://127.0.0.1:${port}/metrics`;
  });
  afterAll(() => stack.close());

  it('serves /metrics there (with METRICS_TOKEN when set), and no longer on the API port', async () => {
    await call(stack.api, 'GET', '/healthz');
    const scraped = await fetch(metrics, { headers: { authorization: 'Bearer scrape-me' } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('social_link_http_request_duration_seconds_count');
    expect((await fetch(metrics)).status).toBe(401);
    expect((await fetch(metrics.replace('/metrics', '/healthz'))).status).toBe(404);
    expect((await call(stack.api, 'GET', '/metrics', { token: 'scrape-me' })).status).toBe(404);
  });
});

/** A port free right now on loopback (the OS picks it; the server binds it a moment later). */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe.each(databaseKinds())('closing on %s', (kind) => {
  it('waits for sign-ins whose clients hung up: they finish (and are recorded) before the database closes', async () => {
    const stack = await startStack(kind, {}, { ownDatabase: true });
    let closed = false;
    try {
      const user = await guest(stack.api);
      const token = await stack.emulator.mintFacebookToken({});
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/facebook/', {
            token: user.access_token,
            body: { access_token: token.access_token },
          })
        ).status,
      ).toBe(200);
      // Under startStack's provider timeout (10 s): the sign-ins must succeed, late.
      await stack.emulator.setFault('facebook', { latency_ms: 800 });
      const before = (await stack.emulator.stats()).requests.facebook ?? 0;
      const hangUp = new AbortController();
      const signIns = Array.from({ length: 30 }, () =>
        fetch(`${stack.api}/api/auth/facebook/`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ access_token: token.access_token }),
          signal: hangUp.signal,
        }).catch(() => 'aborted'),
      );
      // Hang up once every sign-in is inside, waiting on Facebook (however long a busy machine took to get there).
      while (((await stack.emulator.stats()).requests.facebook ?? 0) < before + 30)
        await new Promise((resolve) => setTimeout(resolve, 10));
      hangUp.abort();
      // Facebook holds each answer 0.8 s from its arrival: on a machine so busy that the 30 took longer to arrive, the
      // first may have been answered before the hang-up; those must have succeeded.
      const answers = await Promise.all(signIns);
      expect(answers).toContain('aborted');
      for (const answer of answers) if (typeof answer !== 'string') expect(answer.status).toBe(200);
      await stack.app.close(); // while the provider still holds the sign-in
      closed = true;
      const unhandled = stack.logs
        .map((line) => JSON.parse(line) as { level: number; msg: string })
        .filter((line) => line.level >= 50);
      expect(unhandled.map((line) => line.msg)).toEqual([]);
      const events = await stack.db.selectFrom('audit_events').select('event').where('user_id', '=', user.id).execute();
      expect(events.filter((row) => row.event === 'social_sign_in')).toHaveLength(30);
    } finally {
      if (!closed) await stack.app.close();
      await stack.close().catch(() => {});
    }
  });
});

describe.each(databaseKinds())('stopping behind a balancer on %s', (kind) => {
  it('draining (SIGTERM, during the grace): /readyz answers 503 while every request is still served, each answer closing its connection', async () => {
    const stack = await startStack(kind);
    try {
      expect((await call(stack.api, 'GET', '/readyz')).status).toBe(200);
      stack.app.lifecycle.drain();
      const ready = await call(stack.api, 'GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({ status: 'draining' });
      const created = await call(stack.api, 'POST', '/api/users/');
      expect(created.status).toBe(201);
      expect(created.headers.get('connection')).toBe('close');
      expect((await call(stack.api, 'GET', '/healthz')).status).toBe(200);
    } finally {
      await stack.close();
    }
  });

  it('closing: a request under way finishes, and one still arriving on a connection accepted just before is served too, each answer closing its connection', async () => {
    const stack = await startStack(kind);
    try {
      const user = await guest(stack.api);
      const fb = await stack.emulator.mintFacebookToken();
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      await stack.emulator.setFault('facebook', { latency_ms: 300 });
      const before = (await stack.emulator.stats()).requests.facebook ?? 0;
      const { port } = new URL(stack.api);
      const open = () => {
        const socket = connect({ host: '127.0.0.1', port: Number(port) });
        let received = '';
        socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
        const answer = new Promise<string>((resolve) => socket.on('close', () => resolve(received)));
        return { socket, answer };
      };
      // A: a sign-in under way when the server starts closing. B: a request whose headers are half sent then.
      const a = open();
      const body = JSON.stringify({ access_token: fb.access_token });
      a.socket.write(
        `POST /api/auth/facebook/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      const b = open();
      b.socket.write('POST /api/users/ HTTP/1.1\r\nHost: x\r\n');
      while (((await stack.emulator.stats()).requests.facebook ?? 0) === before)
        await new Promise((resolve) => setTimeout(resolve, 10));
      const closing = stack.app.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      b.socket.write('Content-Length: 0\r\n\r\n');
      const [signIn, late] = await Promise.all([a.answer, b.answer]);
      await closing;

      expect(signIn).toMatch(/^HTTP\/1\.1 200 /);
      expect(signIn).toMatch(/\r\nconnection: close\r\n/i);
      // (Fastify's default is a 503 of its own shape: a balancer cannot retry it, the phone would see it.)
      expect(late).toMatch(/^HTTP\/1\.1 201 /);
      expect(late).toMatch(/\r\nconnection: close\r\n/i);
      expect(JSON.parse(late.slice(late.indexOf('\r\n\r\n') + 4))).toMatchObject({ access_token: expect.any(String) });
    } finally {
      await stack.close().catch(() => {});
    }
  });

  it('counts every handler out once its answer is sent: a 404, a schema refusal, a 401, a thrown error, a 503 leave none running', async () => {
    const stack = await startStack(kind, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_SIGN_IN_PER_MINUTE: '1' });
    try {
      await call(stack.api, 'GET', '/api/nope/');
      await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 7 } });
      await call(stack.api, 'GET', '/api/me/');
      await call(stack.api, 'POST', '/api/users/');
      await call(stack.api, 'POST', '/api/users/'); // 429
      await stack.emulator.setFault('facebook', { mode: 'error_500' });
      await call(stack.api, 'POST', '/api/associate/facebook/', { token: 'x', body: { access_token: 'y' } });
      await fetch(`${stack.api}/docs/`);
      let resolved = false;
      await Promise.race([
        stack.app.lifecycle.handlersDone(5_000).then(() => (resolved = true)),
        new Promise((resolve) => setImmediate(resolve)),
      ]);
      expect(resolved).toBe(true);
    } finally {
      await stack.close();
    }
  });
});
