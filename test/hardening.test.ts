import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// Hardening: each guarantee of README's Security section that an attack review asked for.

describe('the embedded database file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hardening-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is the owner's only: its new directory 0700, the database and its WAL 0600", async () => {
    const path = join(dir, 'data', 'social-link.sqlite');
    const db = openDatabase(`sqlite:${path}`);
    await migrateToLatest(db);
    const mode = (file: string) => statSync(file).mode & 0o777;
    expect(mode(join(dir, 'data'))).toBe(0o700);
    expect(mode(path)).toBe(0o600);
    expect(mode(`${path}-wal`)).toBe(0o600);
    await db.destroy();
  });
});

describe('answers written outside Fastify (malformed HTTP)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite');
  });
  afterAll(() => stack.close());

  /** The raw answer to raw bytes: status line, headers, body. */
  const viaSocket = (bytes: string) =>
    new Promise<{ status: number; headers: Map<string, string>; body: string }>((resolve, reject) => {
      const socket = connect(Number(new URL(stack.api).port), '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk)).on('error', reject);
      socket.on('close', () => {
        const [head = '', body = ''] = Buffer.concat(chunks).toString('latin1').split('\r\n\r\n');
        const [statusLine = '', ...lines] = head.split('\r\n');
        const headers = new Map(
          lines.map((line) => [
            line.slice(0, line.indexOf(':')).toLowerCase(),
            line.slice(line.indexOf(':') + 1).trim(),
          ]),
        );
        resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
      });
      socket.write(bytes);
    });

  it('carry the security headers of every routed answer and a request id, in the body too', async () => {
    const routed = await fetch(`${stack.api}/healthz`);
    // helmet's, every one of them, on a routed answer (and on an error answer).
    const refused = await fetch(`${stack.api}/api/me/`);
    for (const name of [
      'content-security-policy',
      'cross-origin-opener-policy',
      'cross-origin-resource-policy',
      'origin-agent-cluster',
      'referrer-policy',
      'strict-transport-security',
      'x-content-type-options',
      'x-dns-prefetch-control',
      'x-download-options',
      'x-frame-options',
      'x-permitted-cross-domain-policies',
      'x-xss-protection',
    ]) {
      expect(routed.headers.get(name), name).toBeTruthy();
      expect(refused.headers.get(name), name).toBe(routed.headers.get(name));
    }
    expect(routed.headers.get('content-security-policy')).toContain("script-src 'self' 'unsafe-inline'");
    for (const request of [
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      'POST /api/users/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}',
    ]) {
      const answer = await viaSocket(request);
      expect([431, 400]).toContain(answer.status);
      for (const name of [
        'strict-transport-security',
        'x-content-type-options',
        'x-frame-options',
        'referrer-policy',
        'cross-origin-resource-policy',
        'cross-origin-opener-policy',
      ]) {
        expect(answer.headers.get(name), name).toBe(routed.headers.get(name));
      }
      expect(answer.headers.get('content-security-policy')).toContain("default-src 'none'");
      const body = JSON.parse(answer.body) as { code: string; request_id: string };
      expect(body.code).toBe('invalid_request');
      expect(answer.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(body.request_id).toBe(answer.headers.get('x-request-id'));
    }
  });
});

// Security round 3 (issue 24): input PostgreSQL cannot hold, sent by anyone, is a 4xx, never a 500.
describe.each(databaseKinds())('unauthenticated input PostgreSQL cannot hold, on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_LINK_COMPAT_PREFIX: '/myapp' });
  });
  afterAll(() => stack.close());

  const basic = (username: string, password: string) =>
    `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
  const rows = async () => {
    const count = async (table: 'users' | 'social_associations' | 'sessions') =>
      Number(
        (
          await stack.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    return {
      users: await count('users'),
      links: await count('social_associations'),
      sessions: await count('sessions'),
    };
  };

  it('a NUL in the username of POST /api/token/ is refused as any unknown username: 401 invalid_credentials', async () => {
    const user = await call(stack.api, 'POST', '/api/users/', {
      body: { username: 'nul_victim', password: 'password-1' },
    });
    expect(user.status).toBe(201);
    for (const username of ['\u0000', 'nul_victim\u0000', 'nul\u0000victim']) {
      const answer = await call(stack.api, 'POST', '/api/token/', { body: { username, password: 'password-1' } });
      expectError(answer, 401, 'invalid_credentials');
      expect(answer.body.request_id).toBe(answer.headers.get('x-request-id'));
    }
    // A NUL in the password is a wrong password, nothing else (never stored: only its scrypt hash is). Not at its end:
    // HMAC pads keys with zero bytes, so scrypt cannot tell 'password-1' from 'password-1\u0000'.
    expectError(
      await call(stack.api, 'POST', '/api/token/', { body: { username: 'nul_victim', password: 'pass\u0000word-1' } }),
      401,
      'invalid_credentials',
    );
    expect(
      (await call(stack.api, 'POST', '/api/token/', { body: { username: 'nul_victim', password: 'password-1' } }))
        .status,
    ).toBe(200);
  });

  it("a NUL in the compatibility routes' HTTP Basic username is 401 invalid_credentials, in the error shape", async () => {
    for (const username of ['\u0000', 'nul_victim\u0000']) {
      const response = await fetch(`${stack.api}/myapp/api/associate/facebook/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic(username, 'password-1') },
        body: '{"access_token":"x"}',
      });
      expect(response.status).toBe(401);
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toMatchObject({
        code: 'invalid_credentials',
        message: expect.any(String),
        request_id: response.headers.get('x-request-id'),
      });
      expect(body.errors).toBe(body.message);
    }
  });

  it("Sign in with Apple: a NUL or a lone surrogate in the user's name is stripped (display only), never a 500", async () => {
    const before = await rows();
    const cases: Array<[unknown, { first_name?: string; last_name?: string }]> = [
      [{ name: { firstName: 'Gr\u0000ace', lastName: '\u0000' } }, { first_name: 'Grace' }],
      [
        { name: { firstName: '\ud800Ada', lastName: 'Love\udfffl\u0000ace' } },
        { first_name: 'Ada', last_name: 'Lovelace' },
      ],
      // The text form a web post carries: JSON escapes give the same characters.
      [
        JSON.stringify({ name: { firstName: 'Alan\ud83d', lastName: '\u0000Turing\u0007' } }),
        { first_name: 'Alan', last_name: 'Turing' },
      ],
      // A pair cut by the 150-character bound would leave a lone surrogate: the bound counts code points.
      [{ name: { firstName: `${'a'.repeat(149)}\u{1F600}b` } }, { first_name: `${'a'.repeat(149)}\u{1F600}` }],
    ];
    for (const [user, kept] of cases) {
      const token = await stack.emulator.mintIdToken('apple');
      const me = await guest(stack.api);
      const linked = await call(stack.api, 'POST', '/api/associate/apple/', {
        token: me.access_token,
        body: { id_token: token.id_token, user },
      });
      expect(linked.status, JSON.stringify(linked.body)).toBe(200);
      const [link] = (await call(stack.api, 'GET', '/api/associations/', { token: me.access_token })).body;
      expect(link.extra_data.first_name).toBe(kept.first_name);
      expect(link.extra_data.last_name).toBe(kept.last_name);
      // And at sign-in (auth), where the name reaches the kept facts again.
      const again = await call(stack.api, 'POST', '/api/auth/apple/', { body: { id_token: token.id_token, user } });
      expect(again.status, JSON.stringify(again.body)).toBe(200);
    }
    const after = await rows();
    expect(after.links).toBe(before.links + cases.length);
  });

  it('a malformed percent-encoding in the URL is a 400 with the security headers and X-Request-Id of every answer', async () => {
    const routed = await fetch(`${stack.api}/healthz`);
    for (const target of [
      '/api/%zz',
      '/api/associations/facebook/%E0%A4%A/',
      `/api/associations/facebook/${'9'.repeat(1100)}/`,
    ]) {
      const answer = await fetch(`${stack.api}${target}`, {
        method: target.includes('associations') ? 'DELETE' : 'GET',
        headers: { 'x-request-id': 'pct-test-1' },
      });
      expect(answer.status, target).toBe(400);
      for (const name of [
        'content-security-policy',
        'strict-transport-security',
        'x-content-type-options',
        'x-frame-options',
        'referrer-policy',
        'cross-origin-resource-policy',
        'cross-origin-opener-policy',
      ]) {
        expect(answer.headers.get(name), `${target}: ${name}`).toBe(routed.headers.get(name));
      }
      expect(answer.headers.get('x-request-id')).toBe('pct-test-1');
      const body = (await answer.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ code: 'invalid_request', request_id: 'pct-test-1' });
      expect(body.errors).toBe(body.message);
    }
  });
});
