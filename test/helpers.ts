import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { inject } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { migrateToLatest, openDatabase, type Database } from '../src/store/database.js';
import {
  emulatedApps,
  emulatorOptionsFor,
  generateAppleKey,
  serverEnvFor,
  type EmulatedApps,
} from '../src/config/dev.js';
import { EmulatorClient, startEmulator, type RunningEmulator } from '@social-link/emulator';
import { startServer } from '../src/server/server.js';
import { logSafety } from '../src/server/app.js';
import type { PipelineStep } from '../src/core/pipeline-step.js';
import type { OperatorErrors } from '../src/lib/errors.js';
import type { Env } from '../src/lib/settings.js';
import { ApiContract, type ApiDocument } from './contract/api.js';

/** The API contract of each running test server, by its base URL (see contract/api.ts). */
const contracts = new Map<string, ApiContract>();
/** The contracts by the document's text: servers of the same settings serve the same document, compiled once. */
const contractsByDocument = new Map<string, ApiContract>();

export const FACEBOOK_APP = { id: 'test-facebook-app', secret: 'test-facebook-secret' };
export const TWITTER_APP = { key: 'test-twitter-key', secret: 'test-twitter-secret' };

/** One Sign in with Apple key for the whole test process (key generation is slow-ish). */
const APPLE_KEY = generateAppleKey();

export type DatabaseKind = 'sqlite' | 'postgres';

/** SQLite always; PostgreSQL too when TEST_DATABASE_URL is set (as .ci/run does). */
export function databaseKinds(): DatabaseKind[] {
  return process.env.TEST_DATABASE_URL ? ['sqlite', 'postgres'] : ['sqlite'];
}

/**
 * A fresh database of the kind: a temporary SQLite file, or a new PostgreSQL database; empty, or with `migrated`
 * every migration applied already (a copy of the run's migrated database: test/global-setup.ts).
 */
export async function freshDatabase(
  kind: DatabaseKind,
  options: { migrated?: boolean } = {},
): Promise<{ url: string; drop(): Promise<void> }> {
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'social-link-test-'));
    const file = join(dir, 'test.sqlite');
    const template = options.migrated ? inject('migratedSqlite') : undefined;
    if (template) copyFileSync(template, file);
    else if (options.migrated) await migrated(`sqlite:${file}`);
    return { url: `sqlite:${file}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('TEST_DATABASE_URL is not set');
  const name = `social_link_test_${randomBytes(6).toString('hex')}`;
  const template = options.migrated ? inject('migratedPostgres') : undefined;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(template ? `CREATE DATABASE ${name} TEMPLATE ${template}` : `CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  if (options.migrated && !template) await migrated(url.toString());
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** Without the run's template (a config without test/global-setup.ts): migrated here. */
async function migrated(url: string): Promise<void> {
  const db = openDatabase(url);
  await migrateToLatest(db).finally(() => db.destroy());
}

export interface Stack {
  /** Base URL of the social-link API, e.g. http://127.0.0.1:43210 */
  api: string;
  app: FastifyInstance;
  db: Kysely<Database>;
  databaseUrl: string;
  emulator: EmulatorClient;
  emulatorUrl: string;
  /** The apps the emulator and the server share (client ids, channel ids…). */
  apps: EmulatedApps;
  /** Every log line the server wrote (debug level and up), as JSON text. */
  logs: string[];
  close(): Promise<void>;
}

/**
 * The real thing, on ephemeral ports: the provider emulator, and the social-link server talking to it
 * over HTTP, on a fresh database of the given kind.
 */
export async function startStack(
  kind: DatabaseKind,
  /** Settings over the defaults; a function of the emulator's URL for settings that name it. */
  env: Env | ((emulatorUrl: string) => Env) = {},
  /** ownDatabase: the server opens (and at close destroys) its database itself, as `serve` does. */
  options: {
    pipeline?: readonly PipelineStep[];
    operatorErrors?: OperatorErrors;
    logLevel?: string;
    ownDatabase?: boolean;
  } = {},
): Promise<Stack> {
  const apps = emulatedApps(
    {
      SOCIAL_AUTH_FACEBOOK_KEY: FACEBOOK_APP.id,
      SOCIAL_AUTH_FACEBOOK_SECRET: FACEBOOK_APP.secret,
      SOCIAL_AUTH_TWITTER_KEY: TWITTER_APP.key,
      SOCIAL_AUTH_TWITTER_SECRET: TWITTER_APP.secret,
    },
    APPLE_KEY,
  );
  // Hundreds of stacks per run: their emulators share RSA key pairs (new kids each; README "How long").
  const emulator: RunningEmulator = await startEmulator({ ...emulatorOptionsFor(apps), reuseKeyPairs: true });
  // Migrated already: the server's own migrateToLatest finds nothing pending (test/global-setup.ts).
  const database = await freshDatabase(kind, { migrated: true });
  const config = loadConfig({
    ...serverEnvFor(emulator.url, apps),
    DATABASE_URL: database.url,
    PORT: '0',
    LOG_LEVEL: 'silent',
    // Generous: the emulator answers from the test's own process, which a busy machine (CI) slows; the tests of a
    // provider that is too slow or hangs set 1000 for their stack.
    SOCIAL_AUTH_PROVIDER_TIMEOUT_MS: '10000',
    // Suites send hundreds of requests from one address; test/rate-limits.test.ts turns limits on.
    RATE_LIMIT_ENABLED: 'false',
    // Fault tests fail providers on purpose, many times in a row; test/resilience.test.ts tests the breaker.
    SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '1000',
    ...(typeof env === 'function' ? env(emulator.url) : env),
  });
  const db = openDatabase(config.databaseUrl);
  const logs: string[] = [];
  const logger = {
    level: options.logLevel ?? 'debug',
    ...logSafety,
    stream: { write: (line: string) => void logs.push(line) },
  };
  const app = await startServer({
    config,
    db: options.ownDatabase ? undefined : db,
    logger,
    pipeline: options.pipeline,
    operatorErrors: options.operatorErrors,
  });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('server is not listening');
  const api = `http://127.0.0.1:${address.port}`;
  // Every answer a test receives from this server through call() is held to its own document.
  const document = await (await fetch(`${api}/openapi.json`)).text();
  let contract = contractsByDocument.get(document);
  if (!contract) contractsByDocument.set(document, (contract = new ApiContract(JSON.parse(document) as ApiDocument)));
  contracts.set(api, contract);
  return {
    api,
    app,
    db,
    databaseUrl: database.url,
    emulator: new EmulatorClient(emulator.url),
    emulatorUrl: emulator.url,
    apps,
    logs,
    async close() {
      contracts.delete(api);
      await app.close();
      await db.destroy();
      await emulator.close();
      await database.drop();
    },
  };
}

export interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

/** One real HTTP request to the API. */
export async function call(
  base: string,
  method: string,
  path: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string>; raw?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined = options.raw;
  if (options.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = JSON.stringify(options.body);
  }
  const response = await fetch(`${base}${path}`, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: the test sees the raw text
  }
  const violation = contracts.get(base)?.violation(method, path, response.status, parsed);
  if (violation) throw new Error(`the answer breaks the API contract (/openapi.json): ${violation}`);
  return { status: response.status, body: parsed, headers: response.headers };
}

/** A new guest user and its tokens. */
export async function guest(
  api: string,
): Promise<{ id: number; username: string; access_token: string; refresh_token: string }> {
  const answer = await call(api, 'POST', '/api/users/');
  if (answer.status !== 201) throw new Error(`guest creation answered ${answer.status}`);
  return answer.body;
}

/** Asserts the shape every error shares. */
export function expectError(answer: Answer, status: number, code: string): void {
  if (
    answer.status !== status ||
    answer.body?.code !== code ||
    typeof answer.body?.message !== 'string' ||
    answer.body?.errors !== answer.body?.message
  ) {
    throw new Error(`expected ${status} ${code}, got ${answer.status} ${JSON.stringify(answer.body)}`);
  }
}

/** The built CLI and dev mode (`npm test` builds first): they start in a fraction of tsx's time, which matters on a busy machine. */
export const BUILT_CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
export const BUILT_DEV = fileURLToPath(new URL('../dist/cli/dev.js', import.meta.url));

/** The CLI as an operator runs it, asynchronously (an emulator in this process must go on answering). */
export function runCli(
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BUILT_CLI, ...args], {
      env: { ...process.env, LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
