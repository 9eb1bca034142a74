// `npm run bench:compare -- <git-ref>`: the server's CPU time per request of this checkout and of another
// commit, measured in turns in one run (A B A B…), so that a slow or busy machine weighs on both alike.
// It answers "did this change make a sign-in cheaper?", which req/s on a shared machine cannot.
//
//   npm run bench:compare -- 7022353                       # SQLite, cases 1-3, 2 rounds
//   BENCH_COMPARE_DATABASE=postgres BENCH_COMPARE_CASES=case1,case2 npm run bench:compare -- HEAD~3
//
// The other commit is checked out with `git worktree` into a temporary directory and built there (sharing
// this checkout's node_modules); both servers run as `node dist/cli.js serve`, against one emulator.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { EmulatorClient } from '@social-link/emulator';
import { cycle, measure, type LoadSpec, type Shot } from './load.js';
import { announcedUrl, freePort, startNode, stop, stopAll, waitForHealthy } from './processes.js';
import { benchServerEnv } from './server-env.js';
import { throwawayPostgres } from './throwaway-database.js';
import {
  associatePool,
  closeSeedingAgent,
  facebookSignIns,
  googleSignIns,
  linkUsers,
  mintLinkedTokens,
} from './seed.js';

const ref = process.argv[2] ?? '';
if (!ref) {
  console.error('usage: npm run bench:compare -- <git-ref>   (see the top of bench/compare.ts)');
  process.exit(2);
}
const env = process.env;
const cases = (env.BENCH_COMPARE_CASES ?? 'case1,case2,case3').split(',');
const rounds = Number(env.BENCH_COMPARE_ROUNDS ?? 2);
const seconds = Number(env.BENCH_DURATION ?? 8);
const postgresUrl =
  env.BENCH_COMPARE_DATABASE === 'postgres'
    ? (env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test')
    : undefined;

const here = process.cwd();
const other = mkdtempSync(join(tmpdir(), 'social-link-compare-'));
const git = (...args: string[]) => execFileSync('git', args, { cwd: here, encoding: 'utf8' }).trim();
const label = {
  [here]: `this checkout (${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--', 'src') ? ' + changes' : ''})`,
  [other]: git('rev-parse', '--short', ref),
};

async function main(): Promise<void> {
  git('worktree', 'add', '--detach', other, ref);
  symlinkSync(resolve(here, 'node_modules'), join(other, 'node_modules'));
  for (const dir of [here, other])
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });

  const apps = emulatedApps({}, generateAppleKey());
  const emulatorChild = startNode('emulator', ['--import', 'tsx', 'bench/emulator.ts'], {
    BENCH_APPS: JSON.stringify(apps),
    NODE_ENV: 'production',
  });
  const emulatorUrl = await announcedUrl(emulatorChild);
  const emulator = new EmulatorClient(emulatorUrl);
  const linked = await mintLinkedTokens(emulator, 200, randomBytes(4).toString('hex'));
  const signingKeys = await generateSigningKeySet();

  const results: Record<string, Record<string, number[]>> = {};
  for (let round = 1; round <= rounds; round++) {
    for (const dir of [other, here]) {
      const database = await freshDatabase();
      const serverEnv = benchServerEnv({ databaseUrl: database.url, emulatorUrl, apps, signingKeys });
      const port = await freePort();
      const server = startNode('server', [join(dir, 'dist/cli.js'), 'serve'], {
        ...serverEnv,
        HOST: '127.0.0.1',
        PORT: String(port),
      });
      const url = `http://127.0.0.1:${port}`;
      await waitForHealthy(server, url, performance.now());
      await linkUsers(url, linked);
      const run = async (name: string, spec: Omit<LoadSpec, 'url' | 'connections'>) => {
        if (!cases.includes(name)) return;
        const m = await measure(
          { ...spec, url, connections: 64 },
          { warmupSeconds: 2, durationSeconds: seconds },
          { targetPid: server.pid, emulatorPid: emulatorChild.pid },
        );
        const usPerRequest = Math.round((m.cpu.target * 10_000) / Math.max(m.rps, 1));
        ((results[name] ??= {})[dir] ??= []).push(usPerRequest);
        console.log(
          `round ${round} ${name} ${label[dir]}: ${m.rps} req/s, server ${usPerRequest} µs CPU per request, ${m.non2xx + m.socketErrors} errors`,
        );
      };
      await run('case1', { path: '/api/auth/facebook/', next: cycle(facebookSignIns(linked)) });
      await run('case2', { path: '/api/auth/google/', next: cycle(googleSignIns(linked)) });
      if (cases.includes('case3')) {
        const pool: Shot[] = await associatePool(url, emulator, Math.ceil(seconds * 1500));
        let used = 0;
        await run('case3', { path: '/api/associate/facebook/', next: () => pool[used++ % pool.length]! });
      }
      await stop(server);
      await database.drop();
    }
  }
  await stop(emulatorChild);

  console.log(`\nserver CPU µs per request (each round; lower is better), ${postgresUrl ? 'PostgreSQL' : 'SQLite'}:`);
  for (const [name, byDir] of Object.entries(results)) {
    const mean = (values: number[] = []) => values.reduce((a, b) => a + b, 0) / Math.max(values.length, 1);
    const change = ((mean(byDir[here]) / mean(byDir[other]) - 1) * 100).toFixed(0);
    console.log(
      `  ${name}: ${label[other]} ${byDir[other]?.join(', ')} → ${label[here]} ${byDir[here]?.join(', ')} (${Number(change) > 0 ? '+' : ''}${change} %)`,
    );
  }
}

async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  if (!postgresUrl) {
    const dir = mkdtempSync(join(tmpdir(), 'social-link-compare-db-'));
    return {
      url: `sqlite:${join(dir, 'compare.sqlite')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  return throwawayPostgres(postgresUrl, 'social_link_compare');
}

async function cleanUp(): Promise<void> {
  await stopAll();
  await closeSeedingAgent();
  try {
    git('worktree', 'remove', '--force', other);
  } catch {
    rmSync(other, { recursive: true, force: true });
    execFileSync('git', ['worktree', 'prune'], { cwd: here });
  }
}

main().then(
  async () => {
    await cleanUp();
    process.exit(0);
  },
  async (error: unknown) => {
    console.error('bench:compare failed:', error);
    await cleanUp();
    process.exit(1);
  },
);
