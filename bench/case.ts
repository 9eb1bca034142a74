// `npm run bench:case -- case4`: one case of `npm run bench` alone, for quick turns while changing the server
// (SQLite, or a throwaway database on BENCH_DATABASE_URL's PostgreSQL server; 1 worker, the built server): prints
// req/s, latency, the server's CPU ms per request (and PostgreSQL's, on PostgreSQL) and where its requests' time went
// (its own histograms). Cases: case1 (auth/facebook), case2 (auth/google), case4 (auth/facebook, Graph 200 ± 50 ms,
// 256 connections), case4-fixed (the same, Graph always 200 ms), case3 (associate/facebook, every request a new user
// and a never-linked account). Cases 1, 2 and 3 are each measured right after their
// same-work baseline (F, C, L: bench/baseline-c.ts on the same database), BENCH_CASE_ROUNDS times (default 1: baseline,
// case, baseline, case…), and print case ÷ baseline as `npm run bench` does; BENCH_CASE_BASELINE=0 skips the
// baseline. BENCH_PROFILE=1 writes a CPU profile of the server (and of the baseline) to bench/results/profiles/ and
// prints their tops.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmulatorClient } from '@social-link/emulator';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { cycle, measure } from './load.js';
import { startBaselineCF } from './baseline-cf.js';
import { announcedUrl, freePort, startNode, stop, stopAll, waitForHealthy } from './processes.js';
import { serverProfile } from './profile.js';
import { benchServerEnv } from './server-env.js';
import { FIXED_SLOW_PROVIDER, SLOW_PROVIDER } from './slow-provider.js';
import { throwawayPostgres } from './throwaway-database.js';
import {
  associatePool,
  closeSeedingAgent,
  facebookSignIns,
  googleSignIns,
  linkUsers,
  mintLinkedTokens,
} from './seed.js';

const name = process.argv[2] ?? 'case1';
interface Case {
  path: string;
  connections: number;
  provider: 'facebook' | 'google';
  slow?: typeof SLOW_PROVIDER | typeof FIXED_SLOW_PROVIDER;
  /** The same-work baseline (bench/baseline-c.ts) measured before this case. */
  baseline?: 'F' | 'C' | 'L';
  /** The write path: every request a new user and a never-linked account (as bench/run.ts's case 3). */
  links?: true;
}
const CASES: Record<string, Case> = {
  case1: { path: '/api/auth/facebook/', connections: 64, provider: 'facebook', baseline: 'F' },
  case2: { path: '/api/auth/google/', connections: 64, provider: 'google', baseline: 'C' },
  case3: { path: '/api/associate/facebook/', connections: 64, provider: 'facebook', baseline: 'L', links: true },
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
const rounds = Math.max(1, Number(process.env.BENCH_CASE_ROUNDS ?? 1));
const withBaseline = chosen.baseline !== undefined && process.env.BENCH_CASE_BASELINE !== '0';
let dropDatabase: (() => Promise<void>) | undefined;
let dropBaselineDatabase: (() => Promise<void>) | undefined;
const cpuMsPerRequest = (m: { rps: number; cpu: { target: number } }) =>
  (m.rps > 0 ? (m.cpu.target * 10) / m.rps : 0).toFixed(2);
// Where it went, in ms per request: the main thread's user and system time, the process's other threads.
const threadsText = (m: { rps: number; threads: { mainUser: number; mainSystem: number; others: number } }) => {
  const ms = (percent: number) => (m.rps > 0 ? ((percent * 10) / m.rps).toFixed(2) : '?');
  return `main thread ${ms(m.threads.mainUser)} user + ${ms(m.threads.mainSystem)} sys, other threads ${ms(m.threads.others)}`;
};

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
  const baselineProfile = profile && withBaseline ? serverProfile(`${name}-baseline-${chosen.baseline}`) : undefined;
  try {
    const postgres = process.env.BENCH_DATABASE_URL
      ? await throwawayPostgres(process.env.BENCH_DATABASE_URL)
      : undefined;
    dropDatabase = postgres?.drop;
    const databaseUrl = postgres?.url ?? `sqlite:${join(dir, 'bench.sqlite')}`;
    const env = benchServerEnv({ databaseUrl, emulatorUrl, apps, signingKeys: await generateSigningKeySet() });
    const port = await freePort();
    // BENCH_SERVER_NODE_ARGS / BENCH_BASELINE_NODE_ARGS: extra node flags for the server / the same-work baseline
    // (e.g. --import a probe of your own, the same on both sides).
    const flags = (variable: string) => (process.env[variable] ?? '').split(/\s+/).filter(Boolean);
    const nodeArgs = flags('BENCH_SERVER_NODE_ARGS');
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
    const load = { path: chosen.path, connections: chosen.connections, next: cycle(shots) };
    const baselinePostgres =
      withBaseline && process.env.BENCH_DATABASE_URL
        ? await throwawayPostgres(process.env.BENCH_DATABASE_URL, 'social_link_baseline')
        : undefined;
    dropBaselineDatabase = baselinePostgres?.drop;
    const baseline = withBaseline
      ? await startBaselineCF({
          name: `baseline ${chosen.baseline}`,
          emulatorUrl,
          apps,
          googleSubs: linked.googleSubs,
          facebookUids: linked.facebookUids,
          postgresUrl: baselinePostgres?.url,
          nodeArgs: [...(baselineProfile?.nodeArgs ?? []), ...flags('BENCH_BASELINE_NODE_ARGS')],
        })
      : undefined;
    const watched = { emulatorPid: emulatorChild.pid, databasePid: postgres?.serverPid };
    // Case 3 and baseline L: a pool of (new user, never-linked account) for the warm-up, then one sized by its rate.
    const measureOn = async (target: string, targetPid: number) => {
      if (!chosen.links) return measure({ ...load, url: target }, timing, { ...watched, targetPid });
      let pool = await associatePool(target, emulator, 2000);
      let used = 0;
      const next = () => pool[used++ % pool.length]!;
      return measure({ ...load, url: target, next }, timing, { ...watched, targetPid }, async (warmupRps) => {
        const size = Math.ceil(Math.max(warmupRps, 100) * timing.durationSeconds * 1.6) + 4 * chosen.connections;
        pool = await associatePool(target, emulator, Math.min(40_000, size));
        used = 0;
      });
    };
    const ratios: string[] = [];
    let m!: Awaited<ReturnType<typeof measure>>;
    for (let round = 1; round <= rounds; round++) {
      const prefix = rounds > 1 ? `round ${round}, ` : '';
      let limit: number | undefined;
      if (baseline) {
        const b = await measureOn(baseline.url, baseline.child.pid);
        limit = b.rps;
        console.log(
          `${prefix}baseline ${chosen.baseline}: ${b.rps} req/s, p50 ${b.p50Ms} ms, errors ${b.non2xx + b.socketErrors}, CPU ${b.cpu.target} % = ${cpuMsPerRequest(b)} ms/req (${threadsText(b)})`,
        );
      }
      m = await measureOn(url, server.pid);
      const ratio = limit ? ` = ${(m.rps / limit).toFixed(2)} of baseline ${chosen.baseline}` : '';
      if (limit) ratios.push((m.rps / limit).toFixed(2));
      console.log(
        `${prefix}${name}: ${m.rps} req/s${ratio}, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms, errors ${m.non2xx + m.socketErrors}, server CPU ${m.cpu.target} % = ${cpuMsPerRequest(m)} ms/req (${threadsText(m)}), RSS ${m.rssPeakMb} MB, emulator ${m.cpu.emulator} %`,
      );
    }
    if (ratios.length > 1) console.log(`${name} ÷ baseline ${chosen.baseline}, each round: ${ratios.join(' / ')}`);
    if (baseline) await stop(baseline.child);
    if (baselineProfile) {
      console.log(`baseline ${chosen.baseline}, over all its rounds:`);
      baselineProfile.print();
    }
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
    await dropBaselineDatabase?.();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
