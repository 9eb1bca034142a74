// `npm run bench:peer`: social-link beside a peer, Better Auth (the version pinned in package.json, configured as its
// documentation says: bench/peer-better-auth.ts), on the same flow: the Google ID-token sign-in of an already-linked
// account, against the same provider emulator, with the same load generator. For each database (SQLite; PostgreSQL
// too when BENCH_DATABASE_URL is set), for 1 user and for 32 users, at 16 and at 64 connections, the two servers are
// measured in turns (social-link, Better Auth, social-link, Better Auth…: BENCH_PEER_ROUNDS, default 2; warm-up
// BENCH_WARMUP s, default 2, then BENCH_DURATION s, default 8), and it prints social-link ÷ Better Auth for req/s and
// for the server's CPU per sign-in. Any answer but 200 fails the run. `npm run bench` runs it too (one round unless
// BENCH_PEER_ROUNDS says otherwise; BENCH_PEER=0 skips it), on its build (BENCH_PEER_BUILT), reading its figures from
// BENCH_PEER_SUMMARY's file. BENCH_SERVER_NODE_ARGS are given to social-link's server.
//
//   npm run bench:peer                                                         # SQLite
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run bench:peer   # SQLite, then PostgreSQL
//
// Both sides get the same requests: a pool of 200 Google ID tokens (a day long, from the emulator), cycled in order
// as case 2 of `npm run bench` does, token i belonging to user i mod N. Each side has its own new database, where
// those N users were made and linked before the load: through social-link's API (a guest user, linked to a Facebook
// and to the Google account), and by a first Better Auth sign-in with each user's token (which creates its user and
// account rows).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { EmulatorClient } from '@social-link/emulator';
import ts from 'typescript';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { cycle, measure, type Measurement, type Shot } from './load.js';
import { announcedUrl, freePort, startNode, stop, waitForHealthy, type Child, runBench } from './processes.js';
import { summarizeProfile } from './profile.js';
import type { PeerSummary } from './report.js';
import { closeSeedingAgent, linkUsers, mapLimit } from './seed.js';
import { benchServerEnv } from './server-env.js';
import { throwawayPostgres } from './throwaway-database.js';

const timing = {
  warmupSeconds: Number(process.env.BENCH_WARMUP ?? 2),
  durationSeconds: Number(process.env.BENCH_DURATION ?? 8),
};
const rounds = Number(process.env.BENCH_PEER_ROUNDS || 2);
if (!Number.isInteger(rounds) || rounds < 1)
  throw new Error(`BENCH_PEER_ROUNDS must be a whole number ≥ 1, got "${process.env.BENCH_PEER_ROUNDS}"`);
/** Extra node flags for social-link's server, as `npm run bench` gives its own (BENCH_SERVER_NODE_ARGS). */
const SERVER_NODE_ARGS = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const USER_COUNTS = [1, 32];
const CONNECTIONS = [16, 64];
const POOL = 200;
const DAY = 86_400;
const postgresUrl = process.env.BENCH_DATABASE_URL;
const profile = process.env.BENCH_PROFILE === '1';
const profileDir = join(process.cwd(), 'bench', 'results', 'profiles');

type Side = 'social-link' | 'Better Auth';
const SIDES: Side[] = ['social-link', 'Better Auth'];
const PATHS: Record<Side, string> = {
  'social-link': '/api/auth/google/',
  'Better Auth': '/api/auth/sign-in/social',
};

interface Round {
  m: Measurement;
  /** The server's CPU ms per 2xx sign-in (every thread of its process). */
  serverMs: number;
  /** PostgreSQL's CPU ms per sign-in (undefined on SQLite, or when it runs elsewhere). */
  databaseMs?: number;
}

interface Row {
  database: string;
  users: number;
  connections: number;
  results: Record<Side, Round[]>;
}

/** Databases not dropped yet. */
const pendingDrops = new Set<() => Promise<void>>();

async function freshDatabase(kind: 'sqlite' | 'postgres', prefix: string) {
  let database: { url: string; serverPid?: number; drop: () => Promise<void> };
  if (kind === 'postgres') database = await throwawayPostgres(postgresUrl!, prefix);
  else {
    const dir = mkdtempSync(join(tmpdir(), `${prefix.replace(/_/g, '-')}-`));
    database = {
      url: `sqlite:${join(dir, 'bench.sqlite')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const drop = async () => {
    pendingDrops.delete(drop);
    await database.drop();
  };
  pendingDrops.add(drop);
  return { ...database, drop };
}

/** The requests of one user count: POOL Google ID tokens, token i of user i mod `users`; and the users' Facebook tokens. */
async function mintTokens(emulator: EmulatorClient, users: number, runId: string) {
  const person = (i: number) => ({
    sub: `peer-${runId}-${users}-${i}`,
    email: `peer-${runId}-${users}-${i}@example.com`,
  });
  const google = await mapLimit(
    Array.from({ length: POOL }, (_, i) => i),
    16,
    async (i) => (await emulator.mintIdToken('google', { ...person(i % users), expires_in: DAY })).id_token,
  );
  const facebook = await mapLimit(
    Array.from({ length: users }, (_, i) => i),
    16,
    () => emulator.mintFacebookToken({ expires_in: DAY }),
  );
  return {
    google,
    linked: {
      facebook: facebook.map((token) => token.access_token),
      facebookUids: facebook.map((token) => token.user_id),
      google: google.slice(0, users),
      googleSubs: Array.from({ length: users }, (_, i) => person(i).sub),
    },
  };
}

const SHOTS: Record<Side, (token: string) => Shot> = {
  'social-link': (token) => ({ body: JSON.stringify({ id_token: token }) }),
  'Better Auth': (token) => ({ body: JSON.stringify({ provider: 'google', idToken: { token } }) }),
};

/** One sign-in; throws unless it answers 200 with a session (social-link: tokens; Better Auth: token + cookie). */
async function signIn(side: Side, url: string, token: string): Promise<void> {
  const response = await fetch(`${url}${PATHS[side]}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: SHOTS[side](token).body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${side}: sign-in answered ${response.status}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { access_token?: unknown; token?: unknown };
  const session =
    side === 'social-link'
      ? typeof body.access_token === 'string'
      : typeof body.token === 'string' && /better-auth\.session_token=/.test(response.headers.get('set-cookie') ?? '');
  if (!session) throw new Error(`${side}: sign-in answered 200 without a session: ${text.slice(0, 300)}`);
}

/**
 * bench/peer-better-auth.ts as plain JavaScript, so that Better Auth runs on bare node as social-link's build does
 * (no tsx loader thread): transpiled (TypeScript's transpileModule, no type check) to node_modules/.cache/, from
 * where its imports resolve to the project's node_modules.
 */
function compilePeer(): string {
  const dir = join(process.cwd(), 'node_modules', '.cache', 'social-link-bench-peer');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'peer-better-auth.mjs');
  const { outputText } = ts.transpileModule(readFileSync(join('bench', 'peer-better-auth.ts'), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  writeFileSync(file, outputText);
  return file;
}

interface Context {
  /** The compiled bench/peer-better-auth.ts. */
  peerScript: string;
  emulatorChild: Child;
  emulatorUrl: string;
  emulator: EmulatorClient;
  apps: ReturnType<typeof emulatedApps>;
  signingKeys: string;
  runId: string;
}

async function startSide(
  side: Side,
  context: Context,
  databaseUrl: string,
  extraEnv: Record<string, string> = {},
  profileFile?: string,
): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const nodeArgs = profileFile ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', profileFile] : [];
  const child =
    side === 'social-link'
      ? startNode('social-link', [...SERVER_NODE_ARGS, ...nodeArgs, 'dist/cli.js', 'serve'], {
          ...benchServerEnv({
            databaseUrl,
            emulatorUrl: context.emulatorUrl,
            apps: context.apps,
            signingKeys: context.signingKeys,
          }),
          HOST: '127.0.0.1',
          PORT: String(port),
        })
      : startNode('Better Auth', [...nodeArgs, context.peerScript], {
          NODE_ENV: 'production',
          BENCH_PEER_DATABASE_URL: databaseUrl,
          BENCH_PEER_GOOGLE_JWKS_URL: `${context.emulatorUrl}/google/oauth2/v3/certs`,
          BENCH_PEER_GOOGLE_CLIENT_IDS: context.apps.google.clientIds.join(','),
          BETTER_AUTH_SECRET: randomBytes(32).toString('base64'),
          PORT: String(port),
          ...extraEnv,
        });
  await waitForHealthy(child, url, performance.now());
  return { child, url };
}

/** Seeds the N users on one side: social-link links them through its API, Better Auth signs each in once. */
async function seed(side: Side, url: string, tokens: Awaited<ReturnType<typeof mintTokens>>): Promise<void> {
  if (side === 'social-link') await linkUsers(url, tokens.linked);
  else await mapLimit(tokens.linked.google, 8, (token) => signIn(side, url, token));
  // Every token of the pool signs in (the users are linked: no new user, no new account).
  await signIn(side, url, tokens.google[tokens.google.length - 1]!);
}

/** The SQL statements Better Auth runs for one sign-in of a linked user (BENCH_PEER_TRACE=1), in order. */
async function betterAuthStatements(context: Context, kind: 'sqlite' | 'postgres'): Promise<string[]> {
  const database = await freshDatabase(kind, 'social_link_bench_peer_trace');
  const tokens = await mintTokens(context.emulator, 1, `${context.runId}t${kind}`);
  const { child, url } = await startSide('Better Auth', context, database.url, { BENCH_PEER_TRACE: '1' });
  try {
    await seed('Better Auth', url, tokens);
    const before = child.output().length;
    await signIn('Better Auth', url, tokens.google[1]!);
    await new Promise((resolve) => setTimeout(resolve, 200));
    return child
      .output()
      .slice(before)
      .split('\n')
      .flatMap((line) => {
        try {
          const parsed = JSON.parse(line) as { sql?: unknown };
          return typeof parsed.sql === 'string' ? [parsed.sql] : [];
        } catch {
          return [];
        }
      });
  } finally {
    await stop(child);
    await database.drop();
  }
}

async function runConfiguration(context: Context, kind: 'sqlite' | 'postgres', users: number): Promise<Row[]> {
  const tokens = await mintTokens(context.emulator, users, context.runId);
  const started = {} as Record<Side, { child: Child; url: string; serverPid?: number; drop: () => Promise<void> }>;
  const profileFiles = {} as Record<Side, string | undefined>;
  if (profile) mkdirSync(profileDir, { recursive: true });
  for (const side of SIDES) {
    const database = await freshDatabase(
      kind,
      side === 'social-link' ? 'social_link_bench_peer_sl' : 'social_link_bench_peer_ba',
    );
    profileFiles[side] = profile
      ? `peer-${side === 'social-link' ? 'social-link' : 'better-auth'}-${kind}-${users}-${Date.now()}.cpuprofile`
      : undefined;
    const server = await startSide(side, context, database.url, {}, profileFiles[side]);
    await seed(side, server.url, tokens);
    started[side] = { ...server, serverPid: database.serverPid, drop: database.drop };
  }
  const rows: Row[] = [];
  try {
    for (const connections of CONNECTIONS) {
      const row: Row = {
        database: kind === 'sqlite' ? 'SQLite' : 'PostgreSQL',
        users,
        connections,
        results: { 'social-link': [], 'Better Auth': [] },
      };
      for (let round = 1; round <= rounds; round++) {
        for (const side of SIDES) {
          const { child, url, serverPid } = started[side];
          const m = await measure(
            {
              url,
              path: PATHS[side],
              connections,
              next: cycle(tokens.google.map((token) => SHOTS[side](token))),
            },
            timing,
            { targetPid: child.pid, emulatorPid: context.emulatorChild.pid, databasePid: serverPid },
          );
          const logged = child.takeLogSummary();
          const errors = m.non2xx + m.socketErrors;
          if (errors > 0 || m.rps === 0) {
            throw new Error(
              `${side}, ${row.database}, ${users} user(s), ${connections} connections: ${errors} errors (status codes ` +
                `${JSON.stringify(m.statusCodes)}, ${m.socketErrors} socket errors, ${m.timeouts} timeouts), ${m.rps} req/s; ` +
                `it logged:\n${logged.map((line) => `  × ${line.count}: ${line.message}`).join('\n')}`,
            );
          }
          for (const line of logged) console.log(`  ${side} logged × ${line.count}: ${line.message}`);
          const result: Round = {
            m,
            serverMs: (m.cpu.target * 10) / m.rps,
            databaseMs: serverPid ? (m.cpu.database * 10) / m.rps : undefined,
          };
          row.results[side].push(result);
          console.log(
            `${row.database}, ${users} user${users > 1 ? 's' : ''}, ${connections} conn., round ${round}, ${side.padEnd(11)}: ` +
              `${m.rps} req/s, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms, server ${result.serverMs.toFixed(3)} ms CPU/sign-in` +
              (result.databaseMs !== undefined ? `, PostgreSQL ${result.databaseMs.toFixed(3)} ms` : '') +
              `, emulator CPU ${m.cpu.emulator} %, other CPU ${m.cpu.other} %`,
          );
        }
      }
      rows.push(row);
    }
  } finally {
    for (const side of SIDES) {
      await stop(started[side].child, 30_000);
      await started[side].drop();
    }
  }
  for (const side of SIDES) {
    if (!profileFiles[side]) continue;
    const summary = summarizeProfile(join(profileDir, profileFiles[side]!), 20);
    console.log(
      `${side} profile ${relative(process.cwd(), summary.file)} (seeding included): idle ${summary.idlePercent} %`,
    );
    for (const spot of summary.top)
      console.log(`  ${spot.selfPercent.toFixed(1).padStart(5)} %  ${spot.function}  ${spot.location}`);
    console.log(`  by package: ${summary.byPackage.map((p) => `${p.package} ${p.selfPercent} %`).join(', ')}`);
  }
  return rows;
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(values.length, 1);

/** The mean over a row's rounds of one side's figure (rounds without it left out). */
const meanOf = (row: Row, side: Side, pick: (r: Round) => number | undefined) =>
  mean(row.results[side].map(pick).filter((v): v is number => v !== undefined));

function table(rows: Row[]): string {
  const withDatabase = rows.some((row) => row.results['social-link'].some((r) => r.databaseMs !== undefined));
  const header = [
    'database',
    'users',
    'conn.',
    'social-link req/s',
    'p50 / p99 ms',
    'CPU ms/sign-in',
    ...(withDatabase ? ['db CPU ms'] : []),
    'Better Auth req/s',
    'p50 / p99 ms',
    'CPU ms/sign-in',
    ...(withDatabase ? ['db CPU ms'] : []),
    'req/s SL ÷ BA',
    'CPU/sign-in SL ÷ BA',
  ];
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`];
  for (const row of rows) {
    const side = (s: Side) => [
      meanOf(row, s, (r) => r.m.rps).toFixed(0),
      `${meanOf(row, s, (r) => r.m.p50Ms).toFixed(1)} / ${meanOf(row, s, (r) => r.m.p99Ms).toFixed(1)}`,
      meanOf(row, s, (r) => r.serverMs).toFixed(3),
      ...(withDatabase
        ? [row.results[s].some((r) => r.databaseMs !== undefined) ? meanOf(row, s, (r) => r.databaseMs).toFixed(3) : '']
        : []),
    ];
    const rps = meanOf(row, 'social-link', (r) => r.m.rps) / meanOf(row, 'Better Auth', (r) => r.m.rps);
    const cpu = meanOf(row, 'social-link', (r) => r.serverMs) / meanOf(row, 'Better Auth', (r) => r.serverMs);
    lines.push(
      `| ${[row.database, row.users, row.connections, ...side('social-link'), ...side('Better Auth'), rps.toFixed(2), cpu.toFixed(2)].join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

const READING =
  'req/s SL ÷ BA > 1: social-link answers more sign-ins per second; CPU/sign-in SL ÷ BA < 1: it spends less ' +
  "server CPU on each (every thread of the server's process; PostgreSQL's own CPU apart).";

/** What `npm run bench` reads of this run: the table as printed, and each row's ratios for its targets. */
function summaryOf(heading: string, rows: Row[]): PeerSummary {
  return {
    heading,
    table: table(rows),
    reading: READING,
    rows: rows.map((row) => ({
      database: row.database,
      users: row.users,
      connections: row.connections,
      socialLinkRps: meanOf(row, 'social-link', (r) => r.m.rps),
      betterAuthRps: meanOf(row, 'Better Auth', (r) => r.m.rps),
      socialLinkCpuMs: meanOf(row, 'social-link', (r) => r.serverMs),
      betterAuthCpuMs: meanOf(row, 'Better Auth', (r) => r.serverMs),
    })),
  };
}

async function main(): Promise<void> {
  // `npm run bench` built the server its report names: measured as built (BENCH_PEER_BUILT).
  if (
    !process.env.BENCH_PEER_BUILT &&
    spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' }).status !== 0
  )
    throw new Error('npm run build failed');
  const apps = emulatedApps({}, generateAppleKey());
  const emulatorChild = startNode('emulator', ['--import', 'tsx', 'bench/emulator.ts'], {
    BENCH_APPS: JSON.stringify(apps),
    NODE_ENV: 'production',
  });
  const emulatorUrl = await announcedUrl(emulatorChild);
  const context: Context = {
    peerScript: compilePeer(),
    emulatorChild,
    emulatorUrl,
    emulator: new EmulatorClient(emulatorUrl),
    apps,
    signingKeys: await generateSigningKeySet(),
    runId: randomBytes(4).toString('hex'),
  };
  const kinds: Array<'sqlite' | 'postgres'> = postgresUrl ? ['sqlite', 'postgres'] : ['sqlite'];
  const traces: string[] = [];
  for (const kind of kinds) {
    const statements = await betterAuthStatements(context, kind);
    traces.push(
      `Better Auth's SQL for one sign-in of a linked user (${kind === 'sqlite' ? 'SQLite' : 'PostgreSQL'}), ${statements.length} statements:`,
      ...statements.map((sql) => `  ${sql.length > 200 ? `${sql.slice(0, 200)}…` : sql}`),
    );
  }
  console.log(traces.join('\n'));
  const rows: Row[] = [];
  for (const kind of kinds)
    for (const users of USER_COUNTS) rows.push(...(await runConfiguration(context, kind, users)));
  const heading =
    `social-link (POST /api/auth/google/) ÷ Better Auth (POST /api/auth/sign-in/social, idToken), Google ID-token ` +
    `sign-in of a linked user, mean of ${rounds} round${rounds > 1 ? 's' : ''} × ${timing.durationSeconds} s ` +
    `(after ${timing.warmupSeconds} s of warm-up)`;
  console.log(`\n${heading}:\n`);
  console.log(table(rows));
  console.log(`\n${READING}`);
  const summaryFile = process.env.BENCH_PEER_SUMMARY;
  if (summaryFile) writeFileSync(summaryFile, JSON.stringify(summaryOf(heading, rows)));
  await stop(emulatorChild);
}

async function cleanUp(): Promise<void> {
  await closeSeedingAgent();
  for (const drop of pendingDrops)
    await drop().catch((error: unknown) => console.error('could not drop a database:', error));
}

runBench('bench:peer', main, cleanUp);
