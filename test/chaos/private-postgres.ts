/**
 * A PostgreSQL cluster of the test's own (test/chaos/scale-out.test.ts): `initdb` into a temporary directory,
 * `pg_ctl` on a free port of 127.0.0.1 with its own unix-socket directory, trust authentication for the OS-less
 * role `postgres`. So the test may stop and restart it under load without touching the machine's shared server
 * (5432), which other suites and other people use.
 *
 * PostgreSQL refuses to run as root: when the test runs as root, initdb, pg_ctl and postgres run as the
 * `postgres` OS user (`runuser -u postgres --`), which then owns the temporary directory.
 *
 * close() stops the cluster (`pg_ctl stop -m immediate`) and removes its directory; it is also done, synchronously,
 * when the test process exits, so that a failed or interrupted run leaves no server behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './harness.js';

export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:PORT/social_link */
  url: string;
  port: number;
  /** The temporary directory: data/, socket/, postgres.log. */
  dir: string;
  /** `pg_ctl stop -m <mode> -w`: returns once the server is gone. */
  stop(mode?: 'smart' | 'fast' | 'immediate'): Promise<void>;
  /** `pg_ctl start -w`: returns once the server accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl restart -m <mode> -w`. */
  restart(mode?: 'smart' | 'fast' | 'immediate'): Promise<void>;
  /** Does a new connection get an answer to `select 1` now? */
  answers(): Promise<boolean>;
  /** The tail of the server's log. */
  log(): string;
  /** Stops the server (immediate) and removes the directory. Idempotent. */
  close(): Promise<void>;
}

/** The directory of initdb and pg_ctl: PG_BIN, or the newest /usr/lib/postgresql/<version>/bin (Debian), or PATH. */
export function postgresBinDir(): string | undefined {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((name) => existsSync(join(root, name, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(root, versions[0], 'bin');
  }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  return found ? found.replace(/\/initdb$/, '') : undefined;
}

const asRoot = process.getuid?.() === 0;

/** Runs a PostgreSQL program (as `postgres` when we are root); rejects with its output if it fails. */
function run(bin: string, program: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const command = asRoot ? 'runuser' : join(bin, program);
  const argv = asRoot ? ['-u', 'postgres', '--', join(bin, program), ...args] : args;
  return new Promise((resolve, reject) => {
    // pg_ctl start leaves postgres running with our pipes unless its output goes to a file (-l): it does.
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`${program} ${args.join(' ')} failed (${signal ?? code}):\n${output}`));
    });
  });
}

/** Starts a new cluster on a free port and creates the database `social_link`. */
export async function startPrivatePostgres(
  options: { settings?: Record<string, string> } = {},
): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('initdb not found: install PostgreSQL (Debian: postgresql) or set PG_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'social-link-pg-'));
  const data = join(dir, 'data');
  const socket = join(dir, 'socket');
  const logFile = join(dir, 'postgres.log');
  mkdirSync(socket);
  if (asRoot) {
    const ids = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gids = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (ids.status !== 0) throw new Error('running as root, but there is no `postgres` OS user to run PostgreSQL as');
    const [uid, gid] = [Number(ids.stdout), Number(gids.stdout)];
    for (const path of [dir, socket]) chownSync(path, uid, gid);
  }
  chmodSync(dir, 0o700);
  const port = await freePort();
  // Stopped at exit whatever happens (vitest ending the worker, a thrown hook): a synchronous, immediate stop.
  let closed = false;
  const stopNow = () => {
    if (closed) return;
    closed = true;
    if (existsSync(join(data, 'postmaster.pid'))) {
      const command = asRoot ? 'runuser' : join(bin, 'pg_ctl');
      const args = ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30'];
      spawnSync(command, asRoot ? ['-u', 'postgres', '--', join(bin, 'pg_ctl'), ...args] : args, {
        stdio: 'ignore',
        timeout: 40_000,
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopNow);

  try {
    await run(bin, 'initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
    // listen_addresses: loopback only; -k: a socket directory of its own (never /var/run/postgresql).
    // fsync off: a throwaway cluster on a busy CI machine (a fast shutdown still checkpoints; only an OS crash loses data).
    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: socket,
      max_connections: '200',
      fsync: 'off',
      full_page_writes: 'off',
      ...options.settings,
    };
    // pg_ctl hands -o to postgres through a shell: the values are simple words (no spaces, a mkdtemp path).
    const postgresOptions = Object.entries(settings)
      .map(([name, value]) => `-c ${name}=${value}`)
      .join(' ');
    const pgCtl = (args: string[]) => run(bin, 'pg_ctl', ['-D', data, ...args]);
    const start = () => pgCtl(['start', '-w', '-t', '60', '-l', logFile, '-o', postgresOptions]).then(() => undefined);
    await start();
    const url = `postgres://postgres@127.0.0.1:${port}/social_link`;
    const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
    await admin.connect();
    await admin.query('CREATE DATABASE social_link');
    await admin.end();

    return {
      url,
      port,
      dir,
      stop: (mode = 'fast') => pgCtl(['stop', '-m', mode, '-w', '-t', '60']).then(() => undefined),
      start,
      // restart reuses the options of the last start (postmaster.opts): same port, same socket directory.
      restart: (mode = 'fast') => pgCtl(['restart', '-m', mode, '-w', '-t', '60', '-l', logFile]).then(() => undefined),
      async answers() {
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
        client.on('error', () => {});
        try {
          await client.connect();
          await client.query('select 1');
          return true;
        } catch {
          return false;
        } finally {
          await client.end().catch(() => {});
        }
      },
      log: () => {
        try {
          return readFileSync(logFile, 'utf8').slice(-10_000);
        } catch {
          return '';
        }
      },
      async close() {
        process.off('exit', stopNow);
        stopNow();
      },
    };
  } catch (error) {
    process.off('exit', stopNow);
    stopNow();
    throw error;
  }
}
