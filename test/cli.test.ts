import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILT_CLI, BUILT_DEV, call, freshDatabase, guest, startStack, type Stack } from './helpers.js';

const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, args, {
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });

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
    const first = run([BUILT_CLI, 'migrate'], { DATABASE_URL: database.url });
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('applied: 0001_initial');
    const second = run([BUILT_CLI, 'migrate'], { DATABASE_URL: database.url });
    expect(second.stdout).toContain('up to date');
  });

  it('names the bad variable and exits 1 on a configuration error', () => {
    const answer = run([BUILT_CLI, 'migrate'], { DATABASE_URL: 'mysql://nope' });
    expect(answer.status).toBe(1);
    expect(answer.stderr).toContain('configuration error: DATABASE_URL');
  });

  it('says in one line, without a stack trace, that the database cannot be reached or opened', async () => {
    const port = await freePort(); // nothing listens there
    for (const command of ['migrate', 'serve']) {
      const answer = run([BUILT_CLI, command], { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/test` });
      expect(answer.status).toBe(1);
      expect(answer.stderr.trim()).toMatch(
        /^configuration error: DATABASE_URL: cannot reach the database \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)/,
      );
      expect(answer.stderr).not.toMatch(/\n\s+at /);
    }
    const dir = mkdtempSync(join(tmpdir(), 'social-link-db-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const directory = run([BUILT_CLI, 'migrate'], { DATABASE_URL: `sqlite:${dir}` });
    expect(directory.stderr.trim()).toMatch(
      /^configuration error: DATABASE_URL: cannot open the SQLite database .*EISDIR/,
    );
  });

  it('openapi prints the whole API document (through a pipe) with the configured public URL, or writes it to --out', () => {
    const printed = run([BUILT_CLI, 'openapi'], { SOCIAL_LINK_PUBLIC_URL: 'https://auth.example.com' });
    expect(printed.status).toBe(0);
    const document = JSON.parse(printed.stdout) as { openapi: string; servers: Array<{ url: string }>; paths: object };
    expect(document.openapi).toBe('3.1.0');
    expect(document.servers[0]!.url).toBe('https://auth.example.com');
    expect(printed.stdout.length).toBeGreaterThan(65_536); // past one pipe buffer: nothing cut short
  });

  it('keys generate prints a private ES256 key set that serve accepts', () => {
    const answer = run([BUILT_CLI, 'keys', 'generate']);
    const set = JSON.parse(answer.stdout) as { keys: Array<Record<string, string>> };
    expect(set.keys[0]).toMatchObject({
      kty: 'EC',
      crv: 'P-256',
      alg: 'ES256',
      kid: expect.any(String),
      d: expect.any(String),
    });
  });

  it('a command on a database not migrated yet says, in one line, to run migrate (no stack trace)', async () => {
    const database = await freshDatabase('sqlite');
    cleanups.push(database.drop);
    for (const args of [
      ['users', 'list'],
      ['import', 'psa', '--dry-run', 'sqlite:/nonexistent/psa.sqlite'],
    ]) {
      const answer = run([BUILT_CLI, ...args], { DATABASE_URL: database.url });
      expect(answer.status, answer.stderr).toBe(1);
      expect(answer.stderr.trim()).toBe(
        'configuration error: the database of DATABASE_URL has no tables yet: run `social-link migrate` first (serve applies them too)',
      );
    }
    expect(run([BUILT_CLI, 'migrate'], { DATABASE_URL: database.url }).status).toBe(0);
    expect(run([BUILT_CLI, 'users', 'list'], { DATABASE_URL: database.url }).status).toBe(0);
  });

  it('serve starts on a fresh database, answers, and stops cleanly on SIGTERM', async () => {
    const database = await freshDatabase('sqlite');
    cleanups.push(database.drop);
    const port = await freePort();
    const keys = run([BUILT_CLI, 'keys', 'generate']).stdout;
    const child = spawn(process.execPath, [BUILT_CLI, 'serve'], {
      env: {
        ...process.env,
        NODE_ENV: 'production',
        DATABASE_URL: database.url,
        PORT: String(port),
        SOCIAL_LINK_SIGNING_KEYS: keys,
        METRICS_TOKEN: 'scrape-me',
        LOG_LEVEL: 'info',
        SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0',
      },
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

  it("serve loads what serving needs: no importer's driver, no console module unless SOCIAL_LINK_ADMIN=true", async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'social-link-modules-'));
    cleanups.push(async () => rmSync(cwd, { recursive: true, force: true }));
    // Preloaded: once the server listens, it prints the packages loaded (CommonJS: require.cache) and exits.
    const preload = join(cwd, 'loaded.cjs');
    writeFileSync(
      preload,
      `const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  this.once('listening', () => {
    const names = Object.keys(require.cache).map((path) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(path)?.[1]);
    process.stdout.write(JSON.stringify([...new Set(names.filter(Boolean))]), () => process.exit(0));
  });
  return listen.apply(this, args);
};
`,
    );
    const loaded = (admin: string) => {
      const answer = spawnSync(process.execPath, ['--require', preload, BUILT_CLI, 'serve'], {
        cwd,
        env: {
          ...process.env,
          NODE_ENV: 'development',
          DATABASE_URL: `sqlite:${join(cwd, 'db.sqlite')}`,
          PORT: '0',
          LOG_LEVEL: 'silent',
          SOCIAL_LINK_ADMIN: admin,
        },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(answer.status, answer.stderr).toBe(0);
      return JSON.parse(answer.stdout) as string[];
    };
    const serving = loaded('false');
    expect(serving).toEqual(expect.arrayContaining(['fastify', 'better-sqlite3']));
    // The importers' driver (pg, on SQLite), the console's (CommonJS packages: an ES module is not in require.cache).
    for (const unneeded of ['pg', 'qrcode', '@fastify/cookie']) expect(serving).not.toContain(unneeded);
    expect(loaded('true')).toEqual(expect.arrayContaining(['qrcode', '@fastify/cookie']));
  });

  it('serve outside production keeps the keys it generates in ./data: sessions outlive a restart, and workers share them', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'social-link-serve-'));
    cleanups.push(async () => rmSync(cwd, { recursive: true, force: true }));
    const port = await freePort();
    const serve = async (...args: string[]) => {
      // Run from another directory: ./data is that directory's.
      const child = spawn(process.execPath, [BUILT_CLI, 'serve', ...args], {
        cwd,
        env: {
          ...process.env,
          NODE_ENV: 'development',
          DATABASE_URL: `sqlite:${join(cwd, 'db.sqlite')}`,
          PORT: String(port),
          LOG_LEVEL: 'silent',
          SOCIAL_LINK_SIGNING_KEYS: '',
          SOCIAL_LINK_ENCRYPTION_KEYS: '',
          SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0',
        },
        stdio: 'ignore',
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      for (let i = 0; i < 200; i++) {
        if ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return { stop: () => (child.kill('SIGTERM'), exited) };
    };
    const first = await serve();
    const user = await guest(`http://127.0.0.1:${port}`);
    await first.stop();
    expect((statSync(join(cwd, 'data')).mode & 0o777).toString(8)).toBe('700');
    expect((statSync(join(cwd, 'data', 'dev-signing-keys.json')).mode & 0o777).toString(8)).toBe('600');
    expect((statSync(join(cwd, 'data', 'dev-encryption-key')).mode & 0o777).toString(8)).toBe('600');

    const workers = await serve('--workers', '2');
    // Each request may land on either worker: every one accepts the session signed before the restart.
    for (let i = 0; i < 6; i++)
      expect(
        (
          await call(`http://127.0.0.1:${port}`, 'GET', '/api/me/', {
            token: user.access_token,
            headers: { connection: 'close' },
          })
        ).status,
      ).toBe(200);
    expect(await workers.stop()).toBe(0);
  });

  it('dev mode refuses to run with NODE_ENV=production', () => {
    const answer = run([BUILT_DEV], { NODE_ENV: 'production' });
    expect(answer.status).toBe(1);
    expect(answer.stderr).toContain('refuses to run with NODE_ENV=production');
  });

  it('the emulator refuses to listen on a non-loopback address', async () => {
    const { startEmulator } = await import('@social-link/emulator');
    await expect(startEmulator({ host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });
});

describe('operator commands', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite');
  });
  afterAll(() => stack.close());

  it('users, associations and audit read what the API wrote; associations unlink removes a link', async () => {
    const created = await call(stack.api, 'POST', '/api/users/', {
      body: { username: 'cli_ada', password: 'a long password' },
    });
    const fb = await stack.emulator.mintFacebookToken();
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: created.body.access_token,
      body: { access_token: fb.access_token },
    });
    const env = { DATABASE_URL: stack.databaseUrl };

    const users = run([BUILT_CLI, 'users', 'list', '--json'], env);
    expect(users.status).toBe(0);
    expect(
      users.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).username),
    ).toContain('cli_ada');
    const shown = run([BUILT_CLI, 'users', 'show', 'cli_ada'], env);
    expect(shown.stdout).toContain(`facebook:${fb.user_id}`);
    expect(shown.stdout).not.toContain('scrypt'); // never the password hash

    const links = run([BUILT_CLI, 'associations', 'list', '--user', String(created.body.id), '--json'], env);
    expect(JSON.parse(links.stdout.trim())).toMatchObject({ provider: 'facebook', uid: fb.user_id });

    const unlinked = run([BUILT_CLI, 'associations', 'unlink', 'facebook', fb.user_id], env);
    expect(unlinked.stdout).toContain(`unlinked facebook:${fb.user_id}`);
    expect((await call(stack.api, 'GET', '/api/associations/', { token: created.body.access_token })).body).toEqual([]);

    const audit = run([BUILT_CLI, 'audit', '--user', String(created.body.id), '--json'], env);
    expect(
      audit.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).event),
    ).toEqual(['unlinked', 'associated', 'user_created']);
    expect(run([BUILT_CLI, 'users', 'show', 'nobody_like_this'], env).status).toBe(1);
    expect(run([BUILT_CLI, 'users', 'list', '--limit', 'lots'], env).status).toBe(1);
  });

  it('every command has --help, and an unknown option is refused', () => {
    for (const command of ['serve', 'migrate', 'emulator', 'keys', 'users', 'associations', 'audit']) {
      const help = run([BUILT_CLI, command, '--help']);
      expect(help.status).toBe(0);
      expect(help.stdout).toContain(`usage: social-link ${command}`);
    }
    const wrong = run([BUILT_CLI, 'migrate', '--force']);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain('usage: social-link migrate');
  });
});

describe('signing key rotation', () => {
  it('keys rotate keeps the old key for verification, so sessions survive the rotation', async () => {
    const before = run([BUILT_CLI, 'keys', 'generate']).stdout;
    const first = await startStack('sqlite', { SOCIAL_LINK_SIGNING_KEYS: before });
    const user = await guest(first.api);
    await first.close();

    const rotated = run([BUILT_CLI, 'keys', 'rotate'], { SOCIAL_LINK_SIGNING_KEYS: before });
    expect(rotated.status).toBe(0);
    const set = JSON.parse(rotated.stdout) as { keys: Array<{ kid: string }> };
    expect(set.keys).toHaveLength(2);
    expect(set.keys[1]!.kid).toBe(JSON.parse(before).keys[0].kid);

    const second = await startStack('sqlite', { SOCIAL_LINK_SIGNING_KEYS: rotated.stdout });
    try {
      // A token signed before the rotation still verifies (its session lives in the first stack's
      // database, so /api/me answers 401 for the session, not for the signature): check with jose.
      const { createLocalJWKSet, jwtVerify, decodeProtectedHeader } = await import('jose');
      const jwks = createLocalJWKSet((await call(second.api, 'GET', '/.well-known/jwks.json')).body);
      await expect(jwtVerify(user.access_token, jwks)).resolves.toBeTruthy();
      const fresh = await guest(second.api);
      expect(decodeProtectedHeader(fresh.access_token).kid).toBe(set.keys[0]!.kid);
      const again = JSON.parse(
        run([BUILT_CLI, 'keys', 'rotate', '--keep', '2'], { SOCIAL_LINK_SIGNING_KEYS: rotated.stdout }).stdout,
      ) as { keys: Array<{ kid: string }> };
      expect(again.keys.map((key) => key.kid)).not.toContain(JSON.parse(before).keys[0].kid); // the oldest retires
    } finally {
      await second.close();
    }
  });
});
