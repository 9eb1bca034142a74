/**
 * Helpers for the chaos suite (`npm run test:chaos`): social-link servers run as real child processes
 * (the built CLI, `node dist/cli.js serve`: `npm run build` first), so they can be killed with SIGKILL or stopped with SIGTERM,
 * against a throwaway PostgreSQL database, with the provider emulator running in the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import { generateSigningKeySet } from '../../src/auth/keys.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import {
  emulatedApps,
  emulatorOptionsFor,
  generateAppleKey,
  serverEnvFor,
  type EmulatedApps,
} from '../../src/config/dev.js';
import { EmulatorClient, startEmulator, type RunningEmulator } from '@social-link/emulator';
import { freshDatabase } from '../helpers.js';

export type Env = Record<string, string>;

/** The chaos tests need PostgreSQL (real concurrency, real processes sharing one database). */
export const postgresAvailable = Boolean(process.env.TEST_DATABASE_URL);

/** Says loudly why a chaos file does nothing, so a green run without PostgreSQL is not mistaken for a pass. */
export function warnIfSkipped(file: string): void {
  if (!postgresAvailable) {
    console.warn(
      `${file}: SKIPPED, these tests need PostgreSQL: TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run test:chaos`,
    );
  }
}

// The built CLI, as operators run it: it starts in a fraction of tsx's time, which matters on a busy machine.
const CLI = [fileURLToPath(new URL('../../dist/cli.js', import.meta.url))];
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------
// Child processes: every one is tracked, so afterAll (and, as a last resort, this process's exit)
// kills whatever is still running: no orphan servers, even when a test fails half-way.

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** SIGKILLs every child process still running and waits for them to be gone. */
export async function killAllChildren(): Promise<void> {
  const running = [...children];
  await Promise.all(
    running.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

function track(child: ChildProcess): {
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
} {
  children.add(child);
  let output = '';
  // Keep the tail only: a misbehaving server must not fill the test's memory.
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { exited, output: () => output };
}

/** Runs the built CLI `<args>` to completion (bounded by timeoutMs). */
export async function runCli(
  args: string[],
  env: Env,
  timeoutMs = 60_000,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [...CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { exited, output } = track(child);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const { code } = await exited;
  clearTimeout(timer);
  return { code, output: output() };
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface ServerProcess {
  /** e.g. http://127.0.0.1:43210 */
  url: string;
  port: number;
  pid: number;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** The tail of what the process wrote to stdout and stderr (LOG_LEVEL=warn: problems only). */
  output(): string;
}

/**
 * Starts the built CLI's `serve` with `env` on a free port (or `port`), and resolves once GET /healthz answers.
 * Rejects with the process's output if it exits first or is not up within readyTimeoutMs (then it is killed).
 */
export async function spawnServer(
  env: Env,
  options: { port?: number; readyTimeoutMs?: number } = {},
): Promise<ServerProcess> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [...CLI, 'serve'], {
    env: { ...process.env, ...env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { exited, output } = track(child);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((result) => (exit = result));

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  while (!exit) {
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server on port ${port} not up in time; output:\n${output()}`);
    }
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
    if (health?.status === 200) break;
    await sleep(100);
  }
  if (exit)
    throw new Error(`server on port ${port} exited (${JSON.stringify(exit)}) before answering; output:\n${output()}`);
  return { url, port, pid: child.pid!, exited, kill: (signal) => void child.kill(signal), output };
}

/** Does a TCP connection to 127.0.0.1:port succeed now? (A raw socket: no HTTP keep-alive pool can hide the answer.) */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(2_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// HTTP to the API

export interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/**
 * One request to the API, bounded in time; throws when the connection fails (the server died).
 * `dispatcher`: a connection pool of the caller's own (undici Agent), to control its keep-alive connections.
 */
export async function api(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; timeoutMs?: number; dispatcher?: Dispatcher } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await undiciFetch(`${base}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    dispatcher: options.dispatcher,
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: the test sees the raw text
  }
  return { status: response.status, body };
}

export interface Tokens {
  id: number;
  access_token: string;
  refresh_token: string;
}

export async function newGuest(base: string): Promise<Tokens> {
  const answer = await api(base, 'POST', '/api/users/');
  if (answer.status !== 201) throw new Error(`guest creation answered ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body as Tokens;
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once; stops starting new ones once `stop()` is true. */
export async function runBounded(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count && !stop()) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

// ---------------------------------------------------------------------------------------------------
// The world a chaos test runs in

export interface ChaosWorld {
  apps: EmulatedApps;
  emulator: EmulatorClient;
  /** The environment every server process gets: providers pointed at the emulator, shared keys. */
  serverEnv: Env;
  /** A new, empty PostgreSQL database (dropped by close()). */
  newDatabase(): Promise<string>;
  /** Direct access to a database, for checks (destroyed by close()). */
  open(url: string): Kysely<Database>;
  /** Kills every child process, then closes the databases and the emulator. */
  close(): Promise<void>;
}

/**
 * The emulator in this process, one signing key set and one encryption key shared by every server
 * process (so each accepts the others' tokens), LOG_LEVEL=warn, rate limits off (all traffic comes from 127.0.0.1).
 */
export async function startWorld(): Promise<ChaosWorld> {
  const apps = emulatedApps({}, generateAppleKey());
  const emulator: RunningEmulator = await startEmulator(emulatorOptionsFor(apps));
  const serverEnv: Env = {
    ...(serverEnvFor(emulator.url, apps) as Env),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_ENABLED: 'false',
    // No balancer to drain for, unless a test says otherwise (scale-out.test.ts).
    SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0',
    SOCIAL_LINK_SIGNING_KEYS: await generateSigningKeySet(),
    SOCIAL_LINK_ENCRYPTION_KEYS: randomBytes(32).toString('base64'),
  };
  const drops: Array<() => Promise<void>> = [];
  const handles: Array<Kysely<Database>> = [];
  return {
    apps,
    emulator: new EmulatorClient(emulator.url),
    serverEnv,
    async newDatabase() {
      const database = await freshDatabase('postgres');
      drops.push(database.drop);
      return database.url;
    },
    open(url) {
      const db = openDatabase(url);
      handles.push(db);
      return db;
    },
    async close() {
      await killAllChildren();
      for (const db of handles) await db.destroy().catch(() => {});
      for (const drop of drops)
        await drop().catch((error: unknown) => console.warn('could not drop a test database:', error));
      await emulator.close();
    },
  };
}
