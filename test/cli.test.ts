import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase } from './helpers.js';

const tsx = ['--import', 'tsx'];
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [...tsx, ...args], { env: { ...process.env, LOG_LEVEL: 'silent', ...env }, encoding: 'utf8', timeout: 30_000 });

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('the CLI', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  it('migrate applies the migrations once, then says the database is up to date', async () => {
    const database = await freshDatabase('sqlite');
    cleanups.push(database.drop);
    const first = run(['src/cli.ts', 'migrate'], { DATABASE_URL: database.url });
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('applied: 0001_initial');
    const second = run(['src/cli.ts', 'migrate'], { DATABASE_URL: database.url });
    expect(second.stdout).toContain('up to date');
  });

  it('names the bad variable and exits 1 on a configuration error', () => {
    const answer = run(['src/cli.ts', 'migrate'], { DATABASE_URL: 'mysql://nope' });
    expect(answer.status).toBe(1);
    expect(answer.stderr).toContain('configuration error: DATABASE_URL');
  });

  it('keys generate prints a private ES256 key set that serve accepts', () => {
    const answer = run(['src/cli.ts', 'keys', 'generate']);
    const set = JSON.parse(answer.stdout) as { keys: Array<Record<string, string>> };
    expect(set.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: expect.any(String), d: expect.any(String) });
  });

  it('serve starts on a fresh database, answers, and stops cleanly on SIGTERM', async () => {
    const database = await freshDatabase('sqlite');
    cleanups.push(database.drop);
    const port = await freePort();
    const keys = run(['src/cli.ts', 'keys', 'generate']).stdout;
    const child = spawn(process.execPath, [...tsx, 'src/cli.ts', 'serve'], {
      env: { ...process.env, NODE_ENV: 'production', DATABASE_URL: database.url, PORT: String(port), SOCIAL_LINK_SIGNING_KEYS: keys, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let answer: Response | undefined;
    for (let i = 0; i < 100 && !answer; i++) {
      answer = await fetch(`http://127.0.0.1:${port}/api/users/`, { method: 'POST' }).catch(() => undefined);
      if (!answer) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(answer?.status).toBe(201);
    const body = (await answer!.json()) as { access_token: string };
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // Secrets never reach the log.
    expect(output).not.toContain(body.access_token);
    expect(output).not.toContain(JSON.parse(keys).keys[0].d);
  });

  it('dev mode refuses to run with NODE_ENV=production', () => {
    const answer = run(['src/dev.ts'], { NODE_ENV: 'production' });
    expect(answer.status).toBe(1);
    expect(answer.stderr).toContain('refuses to run with NODE_ENV=production');
  });

  it('the emulator refuses to listen on a non-loopback address', async () => {
    const { startEmulator } = await import('../src/emulator/index.js');
    await expect(startEmulator({ host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });
});
