// `npm run bench:case -- case4`: one case of `npm run bench` alone, for quick turns while changing the server
// (SQLite, or a throwaway database on BENCH_DATABASE_URL's PostgreSQL server; 1 worker, the built server): prints
// req/s, latency, the server's CPU ms per request (and PostgreSQL's, on PostgreSQL) and where its requests' time went
// (its own histograms). Cases: case1 (auth/facebook), case2 (auth/google), case4 (auth/facebook, Graph 200 ± 50 ms,
// 256 connections), case4-fixed (the same, Graph always 200 ms). BENCH_PROFILE=1 writes a CPU profile to
// bench/results/profiles/ and prints its top.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmulatorClient } from '@social-link/emulator';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { cycle, measure } from './load.js';
import { announcedUrl, freePort, startNode, stop, stopAll, waitForHealthy } from './processes.js';
import { serverProfile } from './profile.js';
import { benchServerEnv } from './server-env.js';
import { FIXED_SLOW_PROVIDER, SLOW_PROVIDER } from './slow-provider.js';
import { throwawayPostgres } from './throwaway-database.js';
import { closeSeedingAgent, facebookSignIns, googleSignIns, linkUsers, mintLinkedTokens } from './seed.js';

const name = process.argv[2] ?? 'case1';
interface Case {
  path: string;
  connections: number;
  provider: 'facebook' | 'google';
  slow?: typeof SLOW_PROVIDER | typeof FIXED_SLOW_PROVIDER;
}
const CASES: Record<string, Case> = {
  case1: { path: '/api/auth/facebook/', connections: 64, provider: 'facebook' },
  case2: { path: '/api/auth/google/', connections: 64, provider: 'google' },
  case4: { path: '/api/auth/facebook/', connections: 256, provider: 'facebook', slow: SLOW_PROVIDER },
  'case4-fixed': { path: '/api/auth/facebook/', connections: 256, provider: 'facebook', slow: FIXED_SLOW_PROVIDER },
};
const chosen = CASES[name]!;
if (!CASES[name]) {
  console.error(`usage: npm run bench:case -- ${Object.keys(CASES).join('|')}`);
  process.exit(2);
}
const timing = {
  warmupSeconds: Number(process.env.BENCH_WARMUP ?? 2),
  durationSeconds: Number(process.env.BENCH_DURATION ?? 8),
};
const profile = process.env.BENCH_PROFILE === '1';
let dropDatabase: (() => Promise<void>) | undefined;

async function main(): Promise<void> {
  if (spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' }).status !== 0)
    throw new Error('npm run build failed');
  const apps = emulatedApps({}, generateAppleKey());
  const emulatorChild = startNode('emulator', ['--import', 'tsx', 'bench/emulator.ts'], {
    BENCH_APPS: JSON.stringify(apps),
    NODE_ENV: 'production',
  });
  const emulatorUrl = await announcedUrl(emulatorChild);
  const emulator = new EmulatorClient(emulatorUrl);
  const dir = mkdtempSync(join(tmpdir(), 'social-link-bench-case-'));
  const cpuProfile = profile ? serverProfile(`${name}-single`) : undefined;
  try {
    const postgres = process.env.BENCH_DATABASE_URL
      ? await throwawayPostgres(process.env.BENCH_DATABASE_URL)
      : undefined;
    dropDatabase = postgres?.drop;
    const databaseUrl = postgres?.url ?? `sqlite:${join(dir, 'bench.sqlite')}`;
    const env = benchServerEnv({ databaseUrl, emulatorUrl, apps, signingKeys: await generateSigningKeySet() });
    const port = await freePort();
    // BENCH_SERVER_NODE_ARGS: extra node flags, as in bench/run.ts (e.g. --import a probe of your own).
    const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const server = startNode('server', [...(cpuProfile?.nodeArgs ?? []), ...nodeArgs, 'dist/cli.js', 'serve'], {
      ...env,
      HOST: '127.0.0.1',
      PORT: String(port),
    });
    const url = `http://127.0.0.1:${port}`;
    await waitForHealthy(server, url, performance.now());
    const linked = await mintLinkedTokens(emulator, 200, Date.now().toString(36));
    await linkUsers(url, linked);
    if (chosen.slow) await emulator.setFault('facebook', chosen.slow);
    const shots = chosen.provider === 'facebook' ? facebookSignIns(linked) : googleSignIns(linked);
    const m = await measure({ url, path: chosen.path, connections: chosen.connections, next: cycle(shots) }, timing, {
      targetPid: server.pid,
      emulatorPid: emulatorChild.pid,
      databasePid: postgres?.serverPid,
    });
    const cpuMs = m.rps > 0 ? (m.cpu.target * 10) / m.rps : 0;
    console.log(
      `${name}: ${m.rps} req/s, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms, errors ${m.non2xx + m.socketErrors}, server CPU ${m.cpu.target} % = ${cpuMs.toFixed(2)} ms/req, RSS ${m.rssPeakMb} MB, emulator ${m.cpu.emulator} %`,
    );
    if (postgres && !postgres.serverPid) console.log('  PostgreSQL runs elsewhere: its CPU is not measured');
    else if (postgres && m.rps > 0)
      console.log(`  PostgreSQL CPU ${m.cpu.database} % = ${((m.cpu.database * 10) / m.rps).toFixed(2)} ms/req`);
    // Where the time goes: the server's own histograms (whole request vs. the provider call).
    const metrics = await (
      await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${env.METRICS_TOKEN}` } })
    ).text();
    for (const line of metrics
      .split('\n')
      .filter(
        (l) =>
          /^social_link_(http_request|provider_request)_duration_seconds_(sum|count)/.test(l) &&
          /auth|facebook|google/.test(l),
      ))
      console.log(`  ${line}`);
    await stop(server, 30_000);
    for (const line of server.takeLogSummary()) console.log(`server logged × ${line.count}: ${line.message}`);
    cpuProfile?.print();
  } finally {
    await stopAll();
    await closeSeedingAgent();
    rmSync(dir, { recursive: true, force: true });
    await dropDatabase?.();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
