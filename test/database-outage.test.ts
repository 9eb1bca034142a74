import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, expectError, freshDatabase, guest, startStack, type Answer, type Stack } from './helpers.js';

/**
 * PostgreSQL going away under a running server: a restart ending our backends (57P01), a connection cut under a
 * transaction, a server that refuses connections. No process may exit (a pg client's unhandled 'error' event would
 * end this very test process), no request may answer 500: 503 database_unavailable with Retry-After, logged once.
 * The database is reached through a TCP relay of the test's own, so that the machine's shared server never stops.
 */

/** A TCP relay to PostgreSQL that the test can cut (refuse new connections, drop open ones) and restore. */
class Relay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  private frozen = false;
  private readonly pairs = new Set<[Socket, Socket]>();

  async open(): Promise<void> {
    this.frozen = false;
    this.server = createServer((client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => {});
      if (this.frozen) return; // accepted, never forwarded
      const upstream = connect(this.target);
      this.sockets.add(upstream);
      upstream.on('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => {});
      client.pipe(upstream).pipe(client);
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      client.on('close', () => this.pairs.delete(pair));
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** A network cut that resets nothing: open connections stop carrying bytes, new ones are accepted and never answered. */
  freeze(): void {
    this.frozen = true;
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** New connections are refused (ECONNREFUSED), open ones are reset. */
  async cut(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server!.close(() => resolve()));
    for (const socket of this.sockets) socket.resetAndDestroy();
    await closed;
  }
}

const postgresUrl = process.env.TEST_DATABASE_URL;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const logLines = (stack: Stack) =>
  stack.logs.map((line) => JSON.parse(line) as { level: number; msg: string; err?: unknown });

describe.skipIf(!postgresUrl)('PostgreSQL going away under a running server', () => {
  let stack: Stack;
  let relay: Relay;
  let database: { url: string; drop(): Promise<void> };
  let admin: pg.Client;
  let databaseName: string;

  beforeAll(async () => {
    database = await freshDatabase('postgres');
    const direct = new URL(database.url);
    databaseName = direct.pathname.slice(1);
    relay = new Relay({ host: direct.hostname, port: Number(direct.port || 5432) });
    await relay.open();
    const relayed = new URL(database.url);
    relayed.port = String(relay.port);
    // ownDatabase: the server opens its pool itself, as `serve` does (with its listeners).
    stack = await startStack(
      'postgres',
      { DATABASE_URL: relayed.toString(), SOCIAL_LINK_ADMIN: 'true' },
      { ownDatabase: true },
    );
    admin = new pg.Client({ connectionString: postgresUrl });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await stack?.close();
    await database?.drop();
  });

  /** `count` users with a Facebook link; `go()` signs them all in at once. */
  async function linkedUsers(count: number): Promise<{ go: () => Promise<Answer[]> }> {
    const tokens = await Promise.all(
      Array.from({ length: count }, async () => {
        const user = await guest(stack.api);
        const fb = await stack.emulator.mintFacebookToken();
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: fb.access_token },
        });
        return fb.access_token;
      }),
    );
    return {
      go: () =>
        Promise.all(
          tokens.map((token) => call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: token } })),
        ),
    };
  }

  const expectOnly200Or503 = (answers: Answer[]) => {
    for (const answer of answers) {
      if (answer.status === 200) continue;
      expectError(answer, 503, 'database_unavailable');
      expect(answer.headers.get('retry-after')).toBe('5');
      expect(answer.body.retry_after).toBe(5);
    }
  };

  it('backends ended by the server (a restart: 57P01) under sign-ins: no crash, only 200 or 503, then back', async () => {
    const { go } = await linkedUsers(16);
    const answering = go();
    // End every backend of this database while the sign-ins hold them (in transactions or between statements).
    for (let i = 0; i < 10; i++) {
      await admin.query(
        'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
        [databaseName],
      );
      await sleep(5);
    }
    const answers = await answering;
    expectOnly200Or503(answers);
    // The next requests get fresh connections (one may still meet a pooled connection whose end is on its way: a 503).
    let after: Answer | undefined;
    for (let i = 0; i < 20 && after?.status !== 201; i++) {
      after = await call(stack.api, 'POST', '/api/users/');
      if (after.status !== 201) expectError(after, 503, 'database_unavailable');
    }
    expect(after?.status).toBe(201);
    expect(logLines(stack).filter((line) => line.msg === 'unhandled error')).toEqual([]);
    // Logged once when it started, once when it ended: not a line per request.
    expect(logLines(stack).filter((line) => line.msg.startsWith('database unavailable'))).toHaveLength(1);
    expect(logLines(stack).filter((line) => line.msg === 'database available again')).toHaveLength(1);
  });

  it('a database that drops every connection and refuses new ones: 503 database_unavailable with Retry-After, /readyz 503, one warning, back when it returns', async () => {
    const user = await guest(stack.api);
    const fb = await stack.emulator.mintFacebookToken();
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: fb.access_token },
        })
      ).status,
    ).toBe(200);
    const before = stack.logs.length;

    const { go } = await linkedUsers(8);
    const answering = go();
    await relay.cut();
    expectOnly200Or503(await answering);

    for (let i = 0; i < 5; i++) {
      const signIn = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
      expectError(signIn, 503, 'database_unavailable');
      expect(signIn.headers.get('retry-after')).toBe('5');
      expect(signIn.body.request_id).toBe(signIn.headers.get('x-request-id'));
      expectError(await call(stack.api, 'POST', '/api/users/'), 503, 'database_unavailable');
    }
    // The admin API and the staff console too: 503, never a 500 or an "unhandled error".
    expectError(
      await call(stack.api, 'GET', '/admin/api/users', { token: 'slk_any-key' }),
      503,
      'database_unavailable',
    );
    const login = await fetch(`${stack.api}/admin/login`);
    const csrf = /name="_csrf" value="([^"]*)"/.exec(await login.text())?.[1] ?? '';
    const cookie = login.headers
      .getSetCookie()
      .map((line) => line.split(';')[0])
      .join('; ');
    const page = await fetch(`${stack.api}/admin/login`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: csrf, username: 'staff', password: 'a password of staff' }).toString(),
      redirect: 'manual',
    });
    expect(page.status).toBe(503);
    expect(page.headers.get('retry-after')).toBe('5');
    expect(await page.text()).toContain('database is unavailable');
    const ready = await call(stack.api, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'unavailable', database: 'unavailable' });
    expect((await call(stack.api, 'GET', '/healthz')).status).toBe(200); // alive: a restart would not help

    const during = stack.logs.slice(before).map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(during.filter((line) => line.msg === 'unhandled error')).toEqual([]);
    expect(during.filter((line) => line.level >= 50)).toEqual([]);
    // Not a line per request: one when an outage starts, at most one a minute (the outage of the test above was less than a minute ago).
    expect(during.filter((line) => line.msg.startsWith('database unavailable')).length).toBeLessThanOrEqual(1);
    expect(
      during.filter(
        (line) =>
          line.level === 40 &&
          line.msg !== 'database unavailable: answering 503 database_unavailable until it answers again',
      ),
    ).toEqual([]);

    await relay.open(); // the same port: the server's URL is unchanged
    let back: Answer | undefined;
    for (let i = 0; i < 100 && back?.status !== 200; i++) {
      back = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
      if (back.status !== 200) await sleep(100);
    }
    expect(back?.status).toBe(200);
    expect((await call(stack.api, 'GET', '/readyz')).status).toBe(200);
    expect(
      logLines(stack)
        .slice(before)
        .filter((line) => line.msg === 'database available again').length,
    ).toBeLessThanOrEqual(1);
  });

  it('a network cut that resets nothing: a query without an answer fails after DATABASE_QUERY_TIMEOUT_MS, 503 database_unavailable, and the server stops', async () => {
    const frozenDatabase = await freshDatabase('postgres');
    const direct = new URL(frozenDatabase.url);
    const frozen = new Relay({ host: direct.hostname, port: Number(direct.port || 5432) });
    await frozen.open();
    const relayed = new URL(frozenDatabase.url);
    relayed.port = String(frozen.port);
    const own = await startStack(
      'postgres',
      { DATABASE_URL: relayed.toString(), DATABASE_QUERY_TIMEOUT_MS: '500' },
      { ownDatabase: true },
    );
    try {
      const user = await guest(own.api);
      const fb = await own.emulator.mintFacebookToken();
      expect(
        (
          await call(own.api, 'POST', '/api/associate/facebook/', {
            token: user.access_token,
            body: { access_token: fb.access_token },
          })
        ).status,
      ).toBe(200);
      frozen.freeze();
      // The pool's idle connections carry the query and wait for an answer that never comes: 500 ms.
      const signIn = await call(own.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
      expectError(signIn, 503, 'database_unavailable');
      expect(signIn.headers.get('retry-after')).toBe('5');
    } finally {
      // Closing waits for no query left without an answer (each has failed by now).
      await own.close();
      await frozen.cut();
      await frozenDatabase.drop();
    }
  });
});
