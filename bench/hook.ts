// `npm run bench:hook`: what a before_sign_in blocking hook costs per sign-in. One run measures case 1 (a linked
// user's Facebook sign-in, 64 connections) against the built server without a hook and with one, in turns (no
// hook, hook, no hook, hook…: BENCH_HOOK_ROUNDS, default 2), each on a new database, and prints the hook's
// variant ÷ the other's for req/s and for the server's CPU per sign-in. The hook is bench/hook-receiver.ts in its
// own process (verifies the signature, answers allow); its CPU per call is printed apart.
//
//   npm run bench:hook                                                         # SQLite
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run bench:hook   # PostgreSQL instead
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmulatorClient } from '@social-link/emulator';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { cycle, measure, type Measurement } from './load.js';
import {
  announcedUrl,
  cpuSeconds,
  freePort,
  startNode,
  stop,
  waitForHealthy,
  type Child,
  runBench,
} from './processes.js';
import { closeSeedingAgent, facebookSignIns, linkUsers, mintLinkedTokens } from './seed.js';
import { benchServerEnv } from './server-env.js';
import { throwawayPostgres } from './throwaway-database.js';

const timing = {
  warmupSeconds: Number(process.env.BENCH_WARMUP ?? 2),
  durationSeconds: Number(process.env.BENCH_DURATION ?? 8),
};
const rounds = Number(process.env.BENCH_HOOK_ROUNDS ?? 2);
const CONNECTIONS = 64;
const USERS = 200;
const postgresUrl = process.env.BENCH_DATABASE_URL;

type Variant = 'no hook' | 'hook';
const VARIANTS: Variant[] = ['no hook', 'hook'];

/** One measured window of one variant. */
interface Round {
  m: Measurement;
  /** The server's CPU ms per 2xx sign-in (every thread of its process). */
  serverMs: number;
  /** PostgreSQL's CPU ms per sign-in (undefined on SQLite, or when it runs elsewhere). */
  databaseMs?: number;
  /** The hook variant: the receiver's CPU ms per call, its calls, and the server's mean wait for an answer. */
  receiverMs?: number;
  hookCalls?: number;
  /** Connections opened to the receiver during the window (0 when the server keeps them alive). */
  hookConnections?: number;
  hookWaitMs?: number;
}

/** Databases not dropped yet (dropped after each variant, or at the end when something failed). */
const pendingDrops = new Set<() => Promise<void>>();

async function freshDatabase(): Promise<{ url: string; serverPid?: number; drop: () => Promise<void> }> {
  let database: { url: string; serverPid?: number; drop: () => Promise<void> };
  if (postgresUrl) database = await throwawayPostgres(postgresUrl, 'social_link_bench_hook');
  else {
    const dir = mkdtempSync(join(tmpdir(), 'social-link-bench-hook-'));
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

/** The receiver's counters (GET /stats): calls verified and rejected, connections opened (this one's too). */
interface ReceiverStats {
  verified: number;
  rejected: number;
  connections: number;
}

async function receiverStats(receiverUrl: string): Promise<ReceiverStats> {
  const response = await fetch(new URL('/stats', receiverUrl));
  return (await response.json()) as ReceiverStats;
}

/** Sum and count of the server's before_sign_in hook calls that allowed (its /metrics histogram). */
async function hookHistogram(url: string, token: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const read = (suffix: string) => {
    const line = text
      .split('\n')
      .find(
        (l) =>
          l.startsWith(`social_link_blocking_hook_duration_seconds_${suffix}{`) &&
          l.includes('hook="before_sign_in"') &&
          l.includes('outcome="allowed"'),
      );
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };
  return { sum: read('sum'), count: read('count') };
}

async function main(): Promise<void> {
  if (spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' }).status !== 0)
    throw new Error('npm run build failed');
  const apps = emulatedApps({}, generateAppleKey());
  const emulatorChild = startNode('emulator', ['--import', 'tsx', 'bench/emulator.ts'], {
    BENCH_APPS: JSON.stringify(apps),
    NODE_ENV: 'production',
  });
  const hookSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const receiver = startNode('hook receiver', ['--import', 'tsx', 'bench/hook-receiver.ts'], {
    BENCH_HOOK_SECRET: hookSecret,
    NODE_ENV: 'production',
  });
  const [emulatorUrl, receiverUrl] = await Promise.all([announcedUrl(emulatorChild), announcedUrl(receiver)]);
  const emulator = new EmulatorClient(emulatorUrl);
  const linked = await mintLinkedTokens(emulator, USERS, randomBytes(4).toString('hex'));
  const signingKeys = await generateSigningKeySet();
  const hookEnv = { SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: receiverUrl, SOCIAL_LINK_HOOK_SECRET: hookSecret };

  const results: Record<Variant, Round[]> = { 'no hook': [], hook: [] };
  for (let round = 1; round <= rounds; round++) {
    for (const variant of VARIANTS) {
      const result = await runVariant(variant, {
        emulatorChild,
        receiver,
        receiverUrl,
        serverEnv: (databaseUrl) => ({
          ...benchServerEnv({ databaseUrl, emulatorUrl, apps, signingKeys }),
          ...(variant === 'hook' ? hookEnv : {}),
        }),
        linked,
      });
      results[variant].push(result);
      console.log(`round ${round} ${variant.padEnd(7)}: ${describe(result)}`);
    }
  }

  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(values.length, 1);
  const of = (variant: Variant, pick: (r: Round) => number | undefined) =>
    mean(results[variant].map(pick).filter((v): v is number => v !== undefined));
  const summary = (variant: Variant) => {
    const db = postgresUrl && results[variant].every((r) => r.databaseMs !== undefined);
    return (
      `${of(variant, (r) => r.m.rps).toFixed(0)} req/s, p50 ${of(variant, (r) => r.m.p50Ms).toFixed(1)} ms, ` +
      `p99 ${of(variant, (r) => r.m.p99Ms).toFixed(1)} ms, server ${of(variant, (r) => r.serverMs).toFixed(3)} ms CPU/sign-in` +
      (db ? `, PostgreSQL ${of(variant, (r) => r.databaseMs).toFixed(3)} ms CPU/sign-in` : '') +
      (variant === 'hook'
        ? `, receiver ${of(variant, (r) => r.receiverMs).toFixed(3)} ms CPU/call, hook answer in ${of(variant, (r) => r.hookWaitMs).toFixed(2)} ms (mean)`
        : '')
    );
  };
  const rps = of('hook', (r) => r.m.rps) / of('no hook', (r) => r.m.rps);
  const serverCpu = of('hook', (r) => r.serverMs) / of('no hook', (r) => r.serverMs);
  const extraMs = of('hook', (r) => r.serverMs) - of('no hook', (r) => r.serverMs);
  console.log(
    `\nbefore_sign_in hook, case 1 (POST /api/auth/facebook/, ${CONNECTIONS} connections), ${postgresUrl ? 'PostgreSQL' : 'SQLite'}, ` +
      `mean of ${rounds} rounds × ${timing.durationSeconds} s:`,
  );
  for (const variant of VARIANTS) console.log(`  ${variant.padEnd(7)}: ${summary(variant)}`);
  console.log(
    `  hook ÷ no hook: req/s ${rps.toFixed(2)}, server CPU per sign-in ${serverCpu.toFixed(2)} (${extraMs >= 0 ? '+' : ''}${extraMs.toFixed(3)} ms)`,
  );
  await stop(receiver);
  await stop(emulatorChild);
}

function describe(r: Round): string {
  return (
    `${r.m.rps} req/s, p50 ${r.m.p50Ms} ms, p99 ${r.m.p99Ms} ms, server ${r.serverMs.toFixed(3)} ms CPU/sign-in` +
    (r.databaseMs !== undefined ? `, PostgreSQL ${r.databaseMs.toFixed(3)} ms` : '') +
    (r.receiverMs !== undefined
      ? `, receiver ${r.receiverMs.toFixed(3)} ms CPU/call (${r.hookCalls} calls, ${r.hookConnections} new connections), hook answer ${r.hookWaitMs?.toFixed(2)} ms`
      : '') +
    `, errors ${r.m.non2xx + r.m.socketErrors}, other CPU ${r.m.cpu.other} %`
  );
}

async function runVariant(
  variant: Variant,
  context: {
    emulatorChild: Child;
    receiver: Child;
    receiverUrl: string;
    serverEnv: (databaseUrl: string) => Record<string, string>;
    linked: Awaited<ReturnType<typeof mintLinkedTokens>>;
  },
): Promise<Round> {
  const database = await freshDatabase();
  const env = context.serverEnv(database.url);
  const port = await freePort();
  const server = startNode(`server (${variant})`, ['dist/cli.js', 'serve'], {
    ...env,
    HOST: '127.0.0.1',
    PORT: String(port),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHealthy(server, url, performance.now());
  await linkUsers(url, context.linked);

  // The receiver's CPU and calls, and the server's wait for it, over the measured window only (after the warm-up).
  const hooked = variant === 'hook';
  let before = { cpu: 0, stats: { verified: 0, rejected: 0, connections: 0 }, wait: { sum: 0, count: 0 } };
  const snapshot = async () => ({
    cpu: cpuSeconds([context.receiver.pid]),
    stats: await receiverStats(context.receiverUrl),
    wait: await hookHistogram(url, env.METRICS_TOKEN!),
  });
  const m = await measure(
    { url, path: '/api/auth/facebook/', connections: CONNECTIONS, next: cycle(facebookSignIns(context.linked)) },
    timing,
    { targetPid: server.pid, emulatorPid: context.emulatorChild.pid, databasePid: database.serverPid },
    async () => {
      if (hooked) before = await snapshot();
    },
  );
  const after = hooked ? await snapshot() : before;
  const stats = await receiverStats(context.receiverUrl);
  await stop(server, 30_000);
  await database.drop();
  const logged = server.takeLogSummary();

  const errors = m.non2xx + m.socketErrors;
  if (errors > 0 || stats.rejected > 0 || m.rps === 0) {
    throw new Error(
      `${variant}: ${errors} errors (status codes ${JSON.stringify(m.statusCodes)}, ${m.socketErrors} socket errors, ` +
        `${m.timeouts} timeouts), ${m.rps} req/s, the receiver rejected ${stats.rejected} signatures; the server logged:\n` +
        logged.map((line) => `  × ${line.count}: ${line.message}`).join('\n'),
    );
  }
  for (const line of logged) console.log(`  server logged × ${line.count}: ${line.message}`);
  const calls = after.stats.verified - before.stats.verified;
  const waited = { sum: after.wait.sum - before.wait.sum, count: after.wait.count - before.wait.count };
  if (hooked && calls === 0) throw new Error('hook: the receiver was never called');
  return {
    m,
    serverMs: (m.cpu.target * 10) / m.rps,
    databaseMs: database.serverPid ? (m.cpu.database * 10) / m.rps : undefined,
    ...(hooked && {
      receiverMs: ((after.cpu - before.cpu) * 1000) / calls,
      hookCalls: calls,
      hookConnections: after.stats.connections - before.stats.connections,
      hookWaitMs: waited.count > 0 ? (waited.sum * 1000) / waited.count : 0,
    }),
  };
}

async function cleanUp(): Promise<void> {
  await closeSeedingAgent();
  for (const drop of pendingDrops)
    await drop().catch((error: unknown) => console.error('could not drop a database:', error));
}

runBench('bench:hook', main, cleanUp);
