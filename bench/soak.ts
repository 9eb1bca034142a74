// `npm run bench:soak`: does the server's memory stay flat under a long steady load? The built server (1 worker,
// SQLite, or a throwaway database on BENCH_DATABASE_URL's PostgreSQL server) with webhooks on (every sign-in is a
// `sign_in` event delivered to a receiver of its own: a bare node:http process answering 204 to every POST), many
// linked users (BENCH_SOAK_USERS, default 2,000) signing in with Facebook in turn at BENCH_SOAK_CONNECTIONS (32)
// for BENCH_SOAK_MINUTES (10). Every 10 s: the server's RSS (/proc) and, from its /metrics, V8's heap and the
// webhook outbox. Prints a row per minute and the verdict: RSS at the end ÷ RSS at minute 2 (target ≤ 1.10).
// Fails (exit 1) on any error answer, socket error, or webhook delivery given up.
//
//   npm run bench:soak
//   BENCH_SOAK_MINUTES=1 npm run bench:soak                                        # a quick turn
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run bench:soak   # PostgreSQL instead
//   BENCH_PROFILE=1 npm run bench:soak      # and the server's CPU profile (bench/results/profiles/), its top printed
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { EmulatorClient } from '@social-link/emulator';
import { generateSigningKeySet } from '../src/auth/keys.js';
import { emulatedApps, generateAppleKey } from '../src/config/dev.js';
import { cycle } from './load.js';
import {
  announcedUrl,
  cpuSeconds,
  freePort,
  rssBytes,
  startNode,
  stop,
  waitForHealthy,
  runBench,
} from './processes.js';
import { serverProfile } from './profile.js';
import { closeSeedingAgent, facebookSignIns, linkUsers, mintLinkedTokens } from './seed.js';
import { benchServerEnv } from './server-env.js';
import { throwawayPostgres } from './throwaway-database.js';

const minutes = Number(process.env.BENCH_SOAK_MINUTES ?? 10);
const users = Number(process.env.BENCH_SOAK_USERS ?? 2000);
const connections = Number(process.env.BENCH_SOAK_CONNECTIONS ?? 32);
const SAMPLE_SECONDS = 10;
/** The minute the end is compared with: 2 (past start-up and the first caches filling), or half a short run. */
const referenceMinute = minutes >= 4 ? 2 : minutes / 2;
const postgresUrl = process.env.BENCH_DATABASE_URL;
const profile = process.env.BENCH_PROFILE === '1';
const MB = 1024 * 1024;

// The webhook endpoint: accepts every POST (204), verifies nothing; GET /stats answers how many it accepted.
const RECEIVER = `
const http = require('node:http');
let posts = 0;
const server = http.createServer((request, response) => {
  if (request.method === 'GET') return response.writeHead(200).end(JSON.stringify({ posts }));
  request.resume();
  request.on('end', () => { posts++; response.writeHead(204).end(); });
});
server.keepAliveTimeout = 30000;
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: 'http://127.0.0.1:' + server.address().port + '/webhooks' })));
process.once('SIGTERM', () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
`;

/** One sample: the server's RSS (/proc) and what its /metrics say. */
interface Sample {
  seconds: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  pending: number;
  delivered: number;
  failed: number;
  gaveUp: number;
  ok: number;
}

/** Reads the given series of a Prometheus text answer (summed over their labels, when `filter` matches). */
function series(text: string, name: string, filter: (line: string) => boolean = () => true): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    if (filter(line)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function scrape(url: string, token: string): Promise<string> {
  const response = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

function memoryOf(text: string) {
  const outcome = (name: string) => (line: string) => line.includes(`outcome="${name}"`);
  return {
    heapUsed: series(text, 'social_link_nodejs_heap_size_used_bytes'),
    heapTotal: series(text, 'social_link_nodejs_heap_size_total_bytes'),
    external: series(text, 'social_link_nodejs_external_memory_bytes'),
    pending: series(text, 'social_link_webhook_outbox_pending'),
    delivered: series(text, 'social_link_webhook_deliveries_total', outcome('delivered')),
    failed: series(text, 'social_link_webhook_deliveries_total', outcome('failed')),
    gaveUp: series(text, 'social_link_webhook_deliveries_total', outcome('gave_up')),
  };
}

/** RSS of a process doing nothing: `node -e` reading its own. */
function emptyNodeRss(): number {
  const out = spawnSync(process.execPath, ['-e', 'console.log(process.memoryUsage().rss)'], { encoding: 'utf8' });
  return Number(out.stdout.trim());
}

const mb = (bytes: number) => (bytes / MB).toFixed(1);
let dropDatabase: (() => Promise<void>) | undefined;
let dir: string | undefined;

async function main(): Promise<void> {
  if (spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' }).status !== 0)
    throw new Error('npm run build failed');
  const apps = emulatedApps({}, generateAppleKey());
  const emulatorChild = startNode('emulator', ['--import', 'tsx', 'bench/emulator.ts'], {
    BENCH_APPS: JSON.stringify(apps),
    NODE_ENV: 'production',
  });
  const receiver = startNode('webhook receiver', ['-e', RECEIVER], {});
  const [emulatorUrl, receiverUrl] = await Promise.all([announcedUrl(emulatorChild), announcedUrl(receiver)]);
  const emulator = new EmulatorClient(emulatorUrl);

  const postgres = postgresUrl ? await throwawayPostgres(postgresUrl, 'social_link_bench_soak') : undefined;
  dropDatabase = postgres?.drop;
  dir = postgres ? undefined : mkdtempSync(join(tmpdir(), 'social-link-bench-soak-'));
  const databaseUrl = postgres?.url ?? `sqlite:${join(dir!, 'bench.sqlite')}`;
  const env: Record<string, string> = {
    ...benchServerEnv({ databaseUrl, emulatorUrl, apps, signingKeys: await generateSigningKeySet() }),
    SOCIAL_LINK_WEBHOOK_URL: receiverUrl,
    SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
  };
  const token = env.METRICS_TOKEN!;
  const port = await freePort();
  const cpuProfile = profile ? serverProfile('soak') : undefined;
  const server = startNode('server', [...(cpuProfile?.nodeArgs ?? []), 'dist/cli.js', 'serve'], {
    ...env,
    HOST: '127.0.0.1',
    PORT: String(port),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHealthy(server, url, performance.now());
  await sleep(1000);
  const empty = emptyNodeRss();
  const atStart = { rss: rssBytes([server.pid]), ...memoryOf(await scrape(url, token)) };

  const seedStarted = performance.now();
  const linked = await mintLinkedTokens(emulator, users, randomBytes(4).toString('hex'));
  await linkUsers(url, linked);
  const seeded = { rss: rssBytes([server.pid]), ...memoryOf(await scrape(url, token)) };
  console.log(
    `\n${users} users linked (Facebook + Google each) in ${((performance.now() - seedStarted) / 1000).toFixed(0)} s; ` +
      `soak: POST /api/auth/facebook/ of each in turn, ${connections} connections, ${minutes} min, ` +
      `${postgres ? 'PostgreSQL' : 'SQLite'}, webhooks to ${receiverUrl}`,
  );

  // The load: one autocannon run for the whole soak; its answers counted as they come, per sample.
  let ok = 0;
  let bad = 0;
  const statusCodes: Record<string, number> = {};
  const instance = autocannon({
    url,
    connections,
    duration: minutes * 60,
    timeout: 10,
    requests: [
      {
        method: 'POST',
        path: '/api/auth/facebook/',
        headers: { 'content-type': 'application/json' },
        setupRequest: (() => {
          const next = cycle(facebookSignIns(linked));
          return (request) => ({ ...request, body: next().body });
        })(),
      },
    ],
  });
  instance.on('response', (_client: unknown, statusCode: number) => {
    if (statusCode >= 200 && statusCode < 300) ok++;
    else {
      bad++;
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
    }
  });

  const started = performance.now();
  const cpuBefore = cpuSeconds([server.pid]);
  const samples: Sample[] = [];
  let sampling = true;
  const sampler = (async () => {
    for (let n = 1; sampling; n++) {
      const due = started + n * SAMPLE_SECONDS * 1000;
      await sleep(Math.max(0, due - performance.now()));
      if (!sampling) break;
      const rss = rssBytes([server.pid]);
      const seconds = Math.round((performance.now() - started) / 1000);
      samples.push({ seconds, rss, ok, ...memoryOf(await scrape(url, token)) });
    }
  })();
  const result = await instance;
  sampling = false;
  await sampler;
  const elapsed = (performance.now() - started) / 1000;
  const serverCpu = cpuSeconds([server.pid]) - cpuBefore;
  const final = {
    seconds: Math.round(elapsed),
    rss: rssBytes([server.pid]),
    ok,
    ...memoryOf(await scrape(url, token)),
  };
  if (samples.length === 0 || samples.at(-1)!.seconds < final.seconds - 2) samples.push(final);

  // The backlog left, delivered after the load (at most 30 s).
  for (let i = 0; i < 30 && memoryOf(await scrape(url, token)).pending > 0; i++) await sleep(1000);
  const drained = { rss: rssBytes([server.pid]), ...memoryOf(await scrape(url, token)) };
  const received = (await (await fetch(receiverUrl)).json()) as { posts: number };
  await stop(server, 30_000);
  const logged = server.takeLogSummary();

  // A row per minute: the last sample of each minute; req/s over that minute.
  console.log(
    '\n| minute | req/s | RSS MB | heap used MB | heap total MB | external MB | webhooks delivered | outbox pending |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const atMinute = (minute: number) =>
    samples.filter((s) => s.seconds <= minute * 60 + 2).at(-1) ?? { ...seeded, seconds: 0, ok: 0 };
  const row = (label: string, s: Omit<Sample, 'seconds' | 'ok'>, rps: string) =>
    console.log(
      `| ${label} | ${rps} | ${mb(s.rss)} | ${mb(s.heapUsed)} | ${mb(s.heapTotal)} | ${mb(s.external)} | ${s.delivered} | ${s.pending} |`,
    );
  row('start', atStart, '');
  row('seeded', seeded, '');
  let previous: { seconds: number; ok: number } = { seconds: 0, ok: 0 };
  for (let minute = 1; minute <= Math.ceil(minutes); minute++) {
    const s = atMinute(minute);
    if (s.seconds <= previous.seconds) continue;
    row(String(minute), s, ((s.ok - previous.ok) / (s.seconds - previous.seconds)).toFixed(0));
    previous = s;
  }
  row('drained', drained, '');

  const reference = atMinute(referenceMinute);
  const end = samples.at(-1)!;
  const ratio = end.rss / reference.rss;
  const rssMin = Math.min(...samples.filter((s) => s.seconds >= referenceMinute * 60 - 2).map((s) => s.rss));
  const rssMax = Math.max(...samples.filter((s) => s.seconds >= referenceMinute * 60 - 2).map((s) => s.rss));
  console.log(
    `\n${ok} sign-ins in ${elapsed.toFixed(0)} s (${(ok / elapsed).toFixed(0)} req/s, p50 ${result.latency.p50} ms, ` +
      `p99 ${result.latency.p99} ms), server CPU ${((serverCpu / elapsed) * 100).toFixed(0)} % = ` +
      `${((serverCpu * 1000) / Math.max(ok, 1)).toFixed(2)} ms/req; webhooks: ${drained.delivered} delivered, ` +
      `${drained.failed} failed (retried), ${drained.gaveUp} given up, ${drained.pending} pending after the load, ` +
      `${received.posts} POSTs received`,
  );
  console.log(
    `memory: an empty node process ${mb(empty)} MB; the server after start ${mb(atStart.rss)} MB ` +
      `(heap used ${mb(atStart.heapUsed)} MB), after seeding ${mb(seeded.rss)} MB; RSS from minute ${referenceMinute} on ` +
      `between ${mb(rssMin)} and ${mb(rssMax)} MB (samples every ${SAMPLE_SECONDS} s)`,
  );
  console.log(
    `RSS at the end (${end.seconds} s) ÷ RSS at minute ${referenceMinute} (${reference.seconds} s): ` +
      `${mb(end.rss)} / ${mb(reference.rss)} MB = ${ratio.toFixed(3)} (target ≤ 1.10): ${ratio <= 1.1 ? 'PASS' : 'MISS'}`,
  );
  for (const line of logged) console.log(`  server logged × ${line.count}: ${line.message}`);
  cpuProfile?.print();

  const errors = bad + result.errors + result.timeouts;
  if (errors > 0 || ok === 0 || drained.gaveUp > 0) {
    throw new Error(
      `${bad} non-2xx answers (${JSON.stringify(statusCodes)}), ${result.errors} socket errors, ` +
        `${result.timeouts} timeouts, ${ok} sign-ins, ${drained.gaveUp} webhook deliveries given up`,
    );
  }
  await stop(receiver);
  await stop(emulatorChild);
}

async function cleanUp(): Promise<void> {
  await closeSeedingAgent();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await dropDatabase?.().catch((error: unknown) => console.error('could not drop the database:', error));
}

runBench('bench:soak', main, cleanUp);
