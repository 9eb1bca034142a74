// `npm run bench`: social-link under load, side by side with the physical limit of this machine.
// See bench/README.md for what each case means and how to read the ratios.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, availableParallelism, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { EmulatorClient } from '@social-link/emulator';
import { cycle, measure, type LoadSpec, type Shot, type Timing } from './load.js';
import {
  announcedUrl,
  freePort,
  killAll,
  processTree,
  rssBytes,
  startNode,
  stop,
  stopAll,
  waitForHealthy,
  type Child,
} from './processes.js';
import { summarizeProfile } from './profile.js';
import {
  checkTargets,
  median,
  render,
  writeResults,
  type PeerSummary,
  type Report,
  type Row,
  type Startup,
  type TargetCheck,
} from './report.js';
import { startBaselineCF } from './baseline-cf.js';
import { benchServerEnv } from './server-env.js';
import { FIXED_SLOW_PROVIDER, SLOW_PROVIDER, slowProviderLabel } from './slow-provider.js';
import { throwawayPostgres } from './throwaway-database.js';
import {
  associatePool,
  closeSeedingAgent,
  facebookSignIns,
  googleSignIns,
  linkUsers,
  mintLinkedTokens,
} from './seed.js';

const env = process.env;
const int = (name: string, fallback: number) => {
  const value = Number(env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number, got "${env[name]}"`);
  return value;
};
const timing: Timing = { warmupSeconds: int('BENCH_WARMUP', 2), durationSeconds: int('BENCH_DURATION', 10) };
const CONNECTIONS = int('BENCH_CONNECTIONS', 64);
const SLOW_CONNECTIONS = int('BENCH_SLOW_CONNECTIONS', 256);
const USERS = int('BENCH_USERS', 200);
const POOL_MAX = int('BENCH_POOL_MAX', 40_000);
const LATENCY_MS = SLOW_PROVIDER.latency_ms;
const LITTLES_LAW_RPS = SLOW_CONNECTIONS / (LATENCY_MS / 1000);
const PROFILE = env.BENCH_PROFILE === '1' || env.BENCH_PROFILE === 'true';
/** Extra node flags for every server process, to try a runtime setting without touching src/ (e.g. --max-semi-space-size=8). */
const SERVER_NODE_ARGS = (env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const RESULTS_DIR = join(process.cwd(), 'bench', 'results');
const PROFILE_DIR = join(RESULTS_DIR, 'profiles');
/** The peer (bench/peer.ts) after the cases, unless BENCH_PEER=0; one round each unless BENCH_PEER_ROUNDS says more. */
const PEER = env.BENCH_PEER !== '0' && env.BENCH_PEER !== 'false';

const started = performance.now();
const log = (message: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}`);
const cleanups: Array<() => Promise<void>> = [];

// ---- the server under test ------------------------------------------------------------------------------

/** `node dist/cli.js` when the build succeeds (what production runs), else `node --import tsx src/cli.ts`. */
function buildServer(): { args: string[]; description: string } {
  const built = spawnSync('npm', ['run', '--silent', 'build'], { encoding: 'utf8' });
  if (built.status === 0 && existsSync('dist/cli.js'))
    return { args: ['dist/cli.js'], description: 'node dist/cli.js serve' };
  console.warn(
    `npm run build failed; running the server from source with tsx (start-up includes transpiling):\n${built.stdout}${built.stderr}`,
  );
  return { args: ['--import', 'tsx', 'src/cli.ts'], description: 'node --import tsx src/cli.ts serve' };
}

interface Server {
  child: Child;
  url: string;
  startupMs: number;
  /** RSS of its processes when it first answered, MB. */
  readyRssMb: number;
}

async function launchServer(
  name: string,
  serverArgs: string[],
  serverEnv: Record<string, string>,
  workers: number,
  nodeArgs: string[] = [],
): Promise<Server> {
  const port = await freePort();
  const since = performance.now();
  const child = startNode(
    name,
    [...SERVER_NODE_ARGS, ...nodeArgs, ...serverArgs, 'serve', '--workers', String(workers)],
    {
      ...serverEnv,
      HOST: '127.0.0.1',
      PORT: String(port),
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const startupMs = Math.round(await waitForHealthy(child, url, since));
  return { child, url, startupMs, readyRssMb: Math.round(rssBytes(processTree(child.pid)) / 2 ** 20) };
}

// ---- databases ------------------------------------------------------------------------------------------

interface BenchDatabase {
  kind: 'sqlite' | 'postgres';
  url: string;
  /** PostgreSQL's postmaster, when it runs on this machine (its CPU is measured). */
  serverPid?: number;
}

function sqliteDatabase(): BenchDatabase {
  const dir = mkdtempSync(join(tmpdir(), 'social-link-bench-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  return { kind: 'sqlite', url: `sqlite:${join(dir, 'bench.sqlite')}` };
}

/** A throwaway database on the server of BENCH_DATABASE_URL, dropped at the end whatever happens. */
async function postgresDatabase(adminUrl: string, prefix?: string): Promise<BenchDatabase> {
  const { url, serverPid, drop } = await throwawayPostgres(adminUrl, prefix);
  cleanups.push(drop);
  return { kind: 'postgres', url, serverPid };
}

// ---- main -----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  log(
    `bench: ${timing.warmupSeconds} s warm-up + ${timing.durationSeconds} s per case, ${CONNECTIONS} connections (${SLOW_CONNECTIONS} for case 4)`,
  );
  const commit = gitCommit(); // the server's: read when it is built, not after minutes of edits
  const server = buildServer();
  log(`server: ${server.description}${SERVER_NODE_ARGS.length ? ` (node ${SERVER_NODE_ARGS.join(' ')})` : ''}`);

  const apps = emulatedApps({}, generateAppleKey());
  const emulatorChild = startNode('emulator', ['--import', 'tsx', 'bench/emulator.ts'], {
    BENCH_APPS: JSON.stringify(apps),
    NODE_ENV: 'production',
  });
  const emulatorUrl = await announcedUrl(emulatorChild);
  const emulator = new EmulatorClient(emulatorUrl);
  log(`emulator: ${emulatorUrl} (pid ${emulatorChild.pid})`);

  const runId = randomBytes(4).toString('hex');
  const linked = await mintLinkedTokens(emulator, USERS, runId);
  log(`minted ${USERS} Facebook access tokens and ${USERS} Google ID tokens`);
  const signIns = { facebook: facebookSignIns(linked), google: googleSignIns(linked) };

  const rows: Row[] = [];
  const startups: Startup[] = [];
  let postgresPid: number | undefined; // the PostgreSQL server's postmaster, for its CPU per request
  const run = async (
    row: Omit<Row, 'm' | 'notes' | 'connections'>,
    spec: LoadSpec,
    target: Child,
    notes: string[] = [],
    afterWarmup?: (warmupRps: number) => Promise<void>,
  ): Promise<Row> => {
    log(`${row.label} — ${row.server}, ${spec.connections} connections…`);
    target.takeLogSummary(); // what it logged before (seeding, another case) is not this case's
    const m = await measure(
      spec,
      timing,
      {
        targetPid: target.pid,
        emulatorPid: emulatorChild.pid,
        databasePid: row.database === 'postgres' ? postgresPid : undefined,
      },
      afterWarmup,
    );
    const full: Row = { ...row, connections: spec.connections, m, notes: [...notes] };
    if (row.workers && row.workers > 1) {
      const [primary, ...workers] = m.rssPerProcessMb;
      full.notes.push(`RSS: ${m.rssPeakMb} MB in all; peaks: primary ${primary} MB, workers ${workers.join(', ')} MB`);
    }
    if (full.limit) full.ratio = m.rps / full.limit.rps;
    const bad = Object.entries(m.statusCodes).filter(([code]) => !code.startsWith('2'));
    if (bad.length > 0 || m.socketErrors > 0) {
      full.notes.push(
        `errors: ${[...bad.map(([code, n]) => `HTTP ${code} × ${n}`), ...(m.socketErrors ? [`socket errors/timeouts × ${m.socketErrors}`] : [])].join(', ')}`,
      );
    }
    for (const { message, count } of target.takeLogSummary().slice(0, 5))
      full.notes.push(`logged × ${count}: ${message}`);
    rows.push(full);
    log(
      `  ${m.rps} req/s, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms, errors ${m.non2xx + m.socketErrors}, RSS ${m.rssPeakMb} MB, CPU ${m.cpu.target}/${m.cpu.emulator}/${m.cpu.loadgen} %`,
    );
    return full;
  };

  // The write path (baseline L, case 3): every request a new user and a never-linked account. The warm-up uses a small
  // pool (it may wrap around: re-links are fine there); its rate sizes the measured window's pool, made between the two.
  const runLinks = async (row: Omit<Row, 'm' | 'notes' | 'connections'>, url: string, target: Child): Promise<Row> => {
    let pool = await associatePool(url, emulator, Math.min(POOL_MAX, 2000));
    let used = 0;
    const measured = await run(
      row,
      { url, path: '/api/associate/facebook/', connections: CONNECTIONS, next: () => pool[used++ % pool.length]! },
      target,
      [],
      async (warmupRps) => {
        const size = Math.min(
          POOL_MAX,
          Math.ceil((timing.warmupSeconds > 0 ? warmupRps : 2000) * timing.durationSeconds * 1.6) + 4 * CONNECTIONS,
        );
        const made = performance.now();
        pool = await associatePool(url, emulator, size);
        used = 0;
        log(
          `  made ${size} new users and fresh Facebook tokens in ${((performance.now() - made) / 1000).toFixed(1)} s (warm-up ran at ${warmupRps} req/s)`,
        );
      },
    );
    if (used > pool.length)
      measured.notes.push(
        `the pool of ${pool.length} pairs ran out: ${used - pool.length} requests re-linked an account already linked (idempotent, no write)`,
      );
    return measured;
  };

  // -- The limits: a bare Fastify server doing only the provider calls, or nothing at all. Measured again right
  // before each database's cases, so that a ratio compares runs a minute apart, not ten (the machine is noisy).
  const baselineChild = startNode('baseline', ['--import', 'tsx', 'bench/baseline.ts'], {
    NODE_ENV: 'production',
    BENCH_FACEBOOK_API_URL: `${emulatorUrl}/facebook`,
    BENCH_FACEBOOK_APP_ID: apps.facebook.appId,
    BENCH_FACEBOOK_APP_SECRET: apps.facebook.appSecret,
  });
  const baselineUrl = await announcedUrl(baselineChild);
  // Baselines C, F and L: a Google / a Facebook sign-in's (a link's) unavoidable work (the provider check, the sign-in
  // transaction, ES256) on bare node:http, on the database of the cases they are compared with: one process per
  // database, started before that database's cases, each measured right before and right after its case (on PostgreSQL, in a throwaway database of its own).
  const startBaselineCFOn = async (db: BenchDatabase) =>
    startBaselineCF({
      name: `baseline C/F (${db.kind})`,
      emulatorUrl,
      apps,
      googleSubs: linked.googleSubs,
      facebookUids: linked.facebookUids,
      postgresUrl:
        db.kind === 'postgres'
          ? (await postgresDatabase(env.BENCH_DATABASE_URL!, 'social_link_baseline')).url
          : undefined,
    });
  // The bare server's rows (no database): B, A1, A, and A with the slow provider (case 4's limit).
  const measureBareBaselines = async (db: BenchDatabase) => {
    const bare = { server: `bare Fastify (before ${db.kind})` };
    await run(
      { id: 'baseline-b', label: 'baseline B: static JSON', ...bare },
      { url: baselineUrl, path: '/api/auth/google/', connections: CONNECTIONS, next: cycle(signIns.google) },
      baselineChild,
    );
    await run(
      { id: 'baseline-a1', label: 'baseline A1: 1 Graph call', ...bare },
      { url: baselineUrl, path: '/a1/api/auth/facebook/', connections: CONNECTIONS, next: cycle(signIns.facebook) },
      baselineChild,
    );
    await run(
      { id: 'baseline-a', label: 'baseline A: 2 Graph calls', ...bare },
      { url: baselineUrl, path: '/api/auth/facebook/', connections: CONNECTIONS, next: cycle(signIns.facebook) },
      baselineChild,
    );
    await emulator.setFault('facebook', SLOW_PROVIDER);
    const slow = await run(
      {
        id: 'baseline-a-slow',
        label: `baseline A: ${slowProviderLabel}`,
        ...bare,
        limit: { name: "Little's law", rps: LITTLES_LAW_RPS },
      },
      { url: baselineUrl, path: '/api/auth/facebook/', connections: SLOW_CONNECTIONS, next: cycle(signIns.facebook) },
      baselineChild,
    );
    await emulator.clearFaults();
    return slow.m.rps;
  };

  // -- social-link, on each database.
  const signingKeys = await generateSigningKeySet();
  const databases = [sqliteDatabase()];
  if (env.BENCH_DATABASE_URL) databases.push(await postgresDatabase(env.BENCH_DATABASE_URL));
  const serverEnvOf = (db: BenchDatabase) => benchServerEnv({ databaseUrl: db.url, emulatorUrl, apps, signingKeys });

  for (const db of databases) {
    if (db.kind === 'postgres') postgresPid = db.serverPid;
    const slowRps = await measureBareBaselines(db);
    const cf = await startBaselineCFOn(db);
    const dbName = db.kind === 'postgres' ? 'PostgreSQL' : 'SQLite';
    const bareHttp = { server: `bare node:http, ${db.kind}`, database: db.kind };
    const serverEnv = serverEnvOf(db);
    const on = (workers: number) => ({ server: `${db.kind} ×${workers}`, database: db.kind, workers });

    const one = await launchServer(`server (${db.kind})`, server.args, serverEnv, 1);
    log(`social-link on ${db.kind}: first 200 after ${one.startupMs} ms (new database: includes the migrations)`);
    startups.push({
      server: `${db.kind}, 1 worker, new database`,
      database: db.kind,
      workers: 1,
      samplesMs: [one.startupMs],
      medianMs: one.startupMs,
      freshDatabase: true,
      readyRssMb: one.readyRssMb,
    });
    await linkUsers(one.url, linked);
    log(`linked ${USERS} guest users to a Facebook and a Google account each`);

    // Each case between two runs of the baseline doing its work (seconds apart, not minutes: this machine's speed
    // drifts), compared with their mean; each server idle while the other is measured.
    const bracketed = async (baseline: (after: boolean) => Promise<Row>, measureCase: () => Promise<Row>) => {
      const before = await baseline(false);
      const measured = await measureCase();
      const after = await baseline(true);
      const limit = { name: before.label.split(':')[0]!, rps: Math.round((before.m.rps + after.m.rps) / 2) };
      measured.limit = limit;
      measured.ratio = measured.m.rps / limit.rps;
      measured.notes.push(
        `${limit.name}: ${before.m.rps} req/s before this case, ${after.m.rps} after; the limit is their mean`,
      );
      return limit;
    };
    const afterLabel = (after: boolean, caseName: string) => (after ? ` (after ${caseName})` : '');
    // A sign-in case (1, 2) and its baseline (F, C): the same path and tokens, one server each.
    const signInCase = (baseline: Row['id'], baselineLabel: string, id: Row['id'], label: string, shots: Shot[]) => {
      const path = `/api/auth/${id === 'case1' ? 'facebook' : 'google'}/`;
      const load = (url: string) => ({ url, path, connections: CONNECTIONS, next: cycle(shots) });
      return bracketed(
        (after) =>
          run(
            { id: baseline, label: `${baselineLabel}${afterLabel(after, label.split(':')[0]!)}`, ...bareHttp },
            load(cf.url),
            cf.child,
          ),
        () => run({ id, label, ...on(1) }, load(one.url), one.child),
      );
    };
    const limitF = await signInCase(
      'baseline-f',
      `baseline F: debug_token + ${dbName} tx + ES256`,
      'case1',
      'case 1: auth/facebook',
      signIns.facebook,
    );
    const limitC = await signInCase(
      'baseline-c',
      `baseline C: RS256 + ${dbName} tx + ES256`,
      'case2',
      'case 2: auth/google',
      signIns.google,
    );
    await bracketed(
      (after) =>
        runLinks(
          {
            id: 'baseline-l',
            label: `baseline L: ES256 + 2 Graph calls + ${dbName} link tx${afterLabel(after, 'case 3')}`,
            ...bareHttp,
          },
          cf.url,
          cf.child,
        ),
      () => runLinks({ id: 'case3', label: 'case 3: associate/facebook', ...on(1) }, one.url, one.child),
    );
    await stop(cf.child);

    const slowSignIns = { url: one.url, path: '/api/auth/facebook/', connections: SLOW_CONNECTIONS };
    await emulator.setFault('facebook', SLOW_PROVIDER);
    await run(
      {
        id: 'case4',
        label: `case 4: auth/facebook, ${slowProviderLabel}`,
        ...on(1),
        limit: { name: "Little's law", rps: LITTLES_LAW_RPS },
      },
      { ...slowSignIns, next: cycle(signIns.facebook) },
      one.child,
      [`baseline A with the same latency: ${slowRps} req/s`],
    );
    // No target: what the same load does when every answer takes exactly 200 ms (bench/slow-provider.ts).
    await emulator.setFault('facebook', FIXED_SLOW_PROVIDER);
    await run(
      {
        id: 'case4-fixed',
        label: `case 4, Graph always ${LATENCY_MS} ms`,
        ...on(1),
        limit: { name: "Little's law", rps: LITTLES_LAW_RPS },
      },
      { ...slowSignIns, next: cycle(signIns.facebook) },
      one.child,
    );
    await emulator.clearFaults();
    await stop(one.child);

    // Start-up on a migrated database (a restart, a deploy): three times, the median counts.
    const samples: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < 3; i++) {
      const again = await launchServer(`server (${db.kind}) restart`, server.args, serverEnv, 1);
      samples.push(again.startupMs);
      rss.push(again.readyRssMb);
      await stop(again.child);
    }
    startups.push({
      server: `${db.kind}, 1 worker`,
      database: db.kind,
      workers: 1,
      samplesMs: samples,
      medianMs: median(samples),
      freshDatabase: false,
      readyRssMb: median(rss),
    });

    const two = await launchServer(`server (${db.kind}, 2 workers)`, server.args, serverEnv, 2);
    startups.push({
      server: `${db.kind}, 2 workers`,
      database: db.kind,
      workers: 2,
      samplesMs: [two.startupMs],
      medianMs: two.startupMs,
      freshDatabase: false,
      readyRssMb: two.readyRssMb,
    });
    for (const [id, label, path, shots, limit] of [
      ['case1', 'case 1: auth/facebook', '/api/auth/facebook/', signIns.facebook, limitF],
      ['case2', 'case 2: auth/google', '/api/auth/google/', signIns.google, limitC],
    ] as const) {
      const single = rows.find((r) => r.id === id && r.database === db.kind && r.workers === 1)!;
      const row = await run(
        { id, label, ...on(2), limit },
        { url: two.url, path, connections: CONNECTIONS, next: cycle(shots) },
        two.child,
      );
      row.notes.push(`2 workers / 1 worker = ${(row.m.rps / single.m.rps).toFixed(2)}×`);
    }
    await stop(two.child);
  }

  // -- CPU profiles (BENCH_PROFILE=1): separate runs, so that the profiler's cost never skews the table.
  const profiles: Report['profiles'] = [];
  if (PROFILE) {
    const db = databases[0]!;
    mkdirSync(PROFILE_DIR, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    for (const [name, path, shots] of [
      ['case 1: auth/facebook', '/api/auth/facebook/', signIns.facebook],
      ['case 2: auth/google', '/api/auth/google/', signIns.google],
    ] as const) {
      const file = `${name.slice(0, 6).replace(' ', '')}-${stamp}.cpuprofile`;
      const profiled = await launchServer(`server (profiled)`, server.args, serverEnvOf(db), 1, [
        '--cpu-prof',
        '--cpu-prof-dir',
        PROFILE_DIR,
        '--cpu-prof-name',
        file,
      ]);
      log(`profiling ${name} (${db.kind} ×1)…`);
      const m = await measure({ url: profiled.url, path, connections: CONNECTIONS, next: cycle(shots) }, timing, {
        targetPid: profiled.child.pid,
        emulatorPid: emulatorChild.pid,
      });
      await stop(profiled.child, 30_000); // SIGTERM: the server exits cleanly and node writes the profile
      const summary = summarizeProfile(join(PROFILE_DIR, file));
      summary.file = relative(process.cwd(), summary.file);
      profiles.push({ case: name, rps: m.rps, summary });
      log(`  ${m.rps} req/s while profiled; profile ${summary.file}`);
    }
  }

  await stop(emulatorChild);
  // The peer measures on a machine the cases left quiet: the bare baseline stopped, their databases dropped.
  await stop(baselineChild);
  await runCleanups();
  const peer = PEER ? await runPeer() : undefined;
  // Stopped by a signal meanwhile (the peer with it): no report; the signal's handler ends the process.
  if (interrupted) await new Promise<never>(() => {});
  const report: Report = {
    date: new Date().toISOString(),
    wallSeconds: Math.round((performance.now() - started) / 1000),
    machine: {
      cpus: availableParallelism(),
      model: cpus()[0]?.model ?? 'unknown',
      node: process.versions.node,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      commit,
    },
    runner: SERVER_NODE_ARGS.length
      ? server.description.replace('node ', `node ${SERVER_NODE_ARGS.join(' ')} `)
      : server.description,
    timing: { ...timing, connections: CONNECTIONS, slowConnections: SLOW_CONNECTIONS, users: USERS },
    rows,
    startups,
    targets: [
      ...checkTargets(rows, startups, LITTLES_LAW_RPS, peer?.summary),
      ...(peer?.failure ? [peer.failure] : []),
    ],
    littlesLawRps: LITTLES_LAW_RPS,
    profiles,
    peer: peer?.summary,
    peerSkipped: !PEER,
  };
  const markdown = render(report);
  console.log(`\n${markdown}\n`);
  const written = writeResults(RESULTS_DIR, report, markdown);
  log(`written: ${written.map((file) => relative(process.cwd(), file)).join(', ')}`);
}

let peerChild: ChildProcess | undefined;

/**
 * `npm run bench:peer` (bench/peer.ts) in a process of its own, on the same database server (it makes its own social-link
 * server from this run's build, emulator and databases); its figures read from the summary it writes. A failed run is
 * a MISS, not a crash.
 */
async function runPeer(): Promise<{ summary?: PeerSummary; failure?: TargetCheck }> {
  log('the peer: Better Auth beside social-link (bench/peer.ts; BENCH_PEER=0 skips it)…');
  const dir = mkdtempSync(join(tmpdir(), 'social-link-bench-peer-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'summary.json');
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/peer.ts'], {
    stdio: 'inherit',
    env: {
      ...env,
      BENCH_PEER_ROUNDS: env.BENCH_PEER_ROUNDS ?? '1',
      BENCH_PEER_SUMMARY: file,
      BENCH_PEER_BUILT: '1', // this run's build: the server the report names
      BENCH_PROFILE: '', // the cases' profiles are this run's; bench:peer profiles on its own
    },
  });
  peerChild = child;
  // Why it did not succeed, or undefined when it did.
  const problem = await new Promise<string | undefined>((resolve) => {
    child.on('error', (error) => resolve(`could not start: ${error.message}`));
    child.on('exit', (code, signal) =>
      resolve(signal ? `stopped by ${signal}` : code === 0 ? undefined : `exited with code ${code}`),
    );
  });
  peerChild = undefined;
  const failure = (actual: string) => ({
    failure: { name: "the peer's run (bench/peer.ts)", goal: 'it runs', actual, pass: false },
  });
  if (problem) return failure(`${problem}: see its output above`);
  if (!existsSync(file)) return failure('it wrote no summary');
  try {
    return { summary: JSON.parse(readFileSync(file, 'utf8')) as PeerSummary };
  } catch (error) {
    return failure(`its summary could not be read: ${(error as Error).message}`);
  }
}

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head} + uncommitted src/ changes` : head;
  } catch {
    return 'unknown';
  }
}

/** Drops this run's databases and removes its files, each once. */
async function runCleanups(): Promise<void> {
  for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) {
    await cleanup().catch((error: unknown) => console.error(`cleanup failed: ${(error as Error).message}`));
  }
}

/** Stops the peer, which stops its own children and drops its databases first; killed if it takes over 30 s. */
async function stopPeer(): Promise<void> {
  const child = peerChild;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function cleanUp(): Promise<void> {
  await stopPeer();
  await stopAll();
  await closeSeedingAgent();
  await runCleanups();
}

// Every child dies with the bench: on success, on failure, on Ctrl-C, and (SIGKILL, synchronously) on exit.
process.on('exit', () => {
  killAll();
  peerChild?.kill('SIGKILL');
});
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) {
      killAll();
      process.exit(130);
    }
    interrupted = true;
    console.error(`\n${signal}: stopping every child process…`);
    void cleanUp().finally(() => process.exit(130));
  });
}

main().then(
  async () => {
    await cleanUp();
    log('done');
    process.exit(0);
  },
  async (error: unknown) => {
    console.error('bench failed:', error);
    await cleanUp();
    process.exit(1);
  },
);
