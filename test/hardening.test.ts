import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { startStack, type Stack } from './helpers.js';

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
        const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
        resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
      });
      socket.write(bytes);
    });

  it('carry the security headers of every routed answer and a request id, in the body too', async () => {
    const routed = await fetch(`${stack.api}/healthz`);
    // helmet's, every one of them, on a routed answer (and on an error answer).
    const refused = await fetch(`${stack.api}/api/me/`);
    for (const name of ['content-security-policy', 'cross-origin-opener-policy', 'cross-origin-resource-policy', 'origin-agent-cluster', 'referrer-policy', 'strict-transport-security', 'x-content-type-options', 'x-dns-prefetch-control', 'x-download-options', 'x-frame-options', 'x-permitted-cross-domain-policies', 'x-xss-protection']) {
      expect(routed.headers.get(name), name).toBeTruthy();
      expect(refused.headers.get(name), name).toBe(routed.headers.get(name));
    }
    expect(routed.headers.get('content-security-policy')).toContain("script-src 'self' 'unsafe-inline'");
    for (const request of [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 'POST /api/users/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}']) {
      const answer = await viaSocket(request);
      expect([431, 400]).toContain(answer.status);
      for (const name of ['strict-transport-security', 'x-content-type-options', 'x-frame-options', 'referrer-policy', 'cross-origin-resource-policy', 'cross-origin-opener-policy']) {
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
