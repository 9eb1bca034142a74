// Drives one case with autocannon (in this process) and measures the server while it runs: throughput and
// latency from autocannon; RSS and CPU of the server's processes, of the emulator and of the load generator
// from /proc (this process: process.cpuUsage).
import autocannon, { type RawRequest, type Result } from 'autocannon';
import { cpuSeconds, machineCpuSeconds, processTree, rssBytes, threadCpuSeconds } from './processes.js';

/** What one request of a case sends. */
export interface Shot {
  body: string;
  headers?: Record<string, string>;
}

export interface LoadSpec {
  /** Base URL of the target, e.g. http://127.0.0.1:8000 */
  url: string;
  path: string;
  connections: number;
  /** Called once per request, in order: the body (and headers) to send. */
  next: () => Shot;
}

export interface Timing {
  warmupSeconds: number;
  durationSeconds: number;
}

export interface Watched {
  /** The root pid of the target; its descendants (cluster workers) are measured too. */
  targetPid: number;
  emulatorPid: number;
  /** The PostgreSQL server's postmaster (its backends and writers are its children), when it runs on this machine. */
  databasePid?: number;
}

export interface Measurement {
  /** 2xx answers per second over the measured window. */
  rps: number;
  /** Every answer and socket error, 2xx or not. */
  requests: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Highest sampled RSS of the target's processes together, and the mean of the samples. */
  rssPeakMb: number;
  rssMeanMb: number;
  /** The highest RSS of each process of the target: the root first (with workers: the primary), then its descendants. */
  rssPerProcessMb: number[];
  /**
   * Percent of one core over the measured window: the target's processes, the emulator, the load generator
   * (this process), everything else on the machine (other = machine busy − ours), and I/O wait of the machine.
   */
  /** Percent of one core; `database`: the PostgreSQL server's processes (Watched.databasePid; 0 without one). */
  cpu: { target: number; emulator: number; loadgen: number; database: number; other: number; iowait: number };
  /** The target's root process in percent of one core: its main thread (user, system), its other threads. */
  threads: { mainUser: number; mainSystem: number; others: number };
  durationSeconds: number;
}

const MB = 1024 * 1024;
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

function cannon(spec: LoadSpec, seconds: number) {
  return autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: seconds,
    timeout: 10,
    requests: [
      {
        method: 'POST',
        path: spec.path,
        headers: { 'content-type': 'application/json' },
        setupRequest: (request: RawRequest) => {
          const shot = spec.next();
          request.body = shot.body;
          if (shot.headers) request.headers = { ...request.headers, ...shot.headers };
          return request;
        },
      },
    ],
  });
}

const okPerSecond = (result: Result) =>
  round(
    Object.entries(result.statusCodeStats ?? {}).reduce(
      (sum, [code, { count }]) => (code.startsWith('2') ? sum + Number(count) : sum),
      0,
    ) / result.duration,
    0,
  );

/**
 * Warms up for `warmupSeconds` (not measured), then measures for `durationSeconds`. `afterWarmup` runs in
 * between, with the warm-up's rate (2xx/s; 0 without warm-up), e.g. to size what the measured window sends.
 */
export async function measure(
  spec: LoadSpec,
  timing: Timing,
  watched: Watched,
  afterWarmup?: (warmupRps: number) => Promise<void>,
): Promise<Measurement> {
  const warmupRps = timing.warmupSeconds > 0 ? okPerSecond(await cannon(spec, timing.warmupSeconds)) : 0;
  await afterWarmup?.(warmupRps);

  // Cluster workers exist by now: the tree is read once, the samples are cheap.
  const targetPids = processTree(watched.targetPid);
  const rssSamples: number[] = [];
  const peaks = targetPids.map(() => 0);
  const sample = () => {
    const each = targetPids.map((pid) => rssBytes([pid]));
    each.forEach((value, i) => (peaks[i] = Math.max(peaks[i]!, value)));
    rssSamples.push(each.reduce((sum, value) => sum + value, 0));
  };
  // PostgreSQL's processes (a backend per pooled connection, its writers): read at both ends, new ones counted whole.
  const databaseProcesses = () => (watched.databasePid ? processTree(watched.databasePid) : []);
  const databaseBefore = new Map(databaseProcesses().map((pid) => [pid, cpuSeconds([pid])]));
  const cpuBefore = {
    target: cpuSeconds(targetPids),
    emulator: cpuSeconds([watched.emulatorPid]),
    loadgen: process.cpuUsage(),
    machine: machineCpuSeconds(),
    threads: threadCpuSeconds(watched.targetPid),
  };
  const started = performance.now();
  const sampler = setInterval(sample, 250);
  let result: Result;
  try {
    result = await cannon(spec, timing.durationSeconds);
  } finally {
    clearInterval(sampler);
  }
  sample();
  const elapsed = (performance.now() - started) / 1000;
  const loadgen = process.cpuUsage(cpuBefore.loadgen);
  const machine = machineCpuSeconds();
  const percent = (seconds: number) => round((seconds / elapsed) * 100, 0);
  const databaseSeconds = databaseProcesses().reduce(
    (sum, pid) => sum + cpuSeconds([pid]) - (databaseBefore.get(pid) ?? 0),
    0,
  );
  const ours = {
    database: percent(databaseSeconds),
    target: percent(cpuSeconds(targetPids) - cpuBefore.target),
    emulator: percent(cpuSeconds([watched.emulatorPid]) - cpuBefore.emulator),
    loadgen: percent((loadgen.user + loadgen.system) / 1e6),
  };
  const cpu = {
    ...ours,
    other: Math.max(
      0,
      percent(machine.busy - cpuBefore.machine.busy) - ours.target - ours.emulator - ours.loadgen - ours.database,
    ),
    iowait: percent(machine.iowait - cpuBefore.machine.iowait),
  };
  const threadsAfter = threadCpuSeconds(watched.targetPid);
  const threads = {
    mainUser: percent(threadsAfter.mainUser - cpuBefore.threads.mainUser),
    mainSystem: percent(threadsAfter.mainSystem - cpuBefore.threads.mainSystem),
    others: percent(threadsAfter.others - cpuBefore.threads.others),
  };

  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = Number(count);
  const answered = Object.values(statusCodes).reduce((sum, count) => sum + count, 0);
  return {
    rps: okPerSecond(result),
    requests: answered + result.errors,
    p50Ms: result.latency.p50,
    p90Ms: result.latency.p90,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    socketErrors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    rssPeakMb: round(Math.max(...rssSamples) / MB),
    rssMeanMb: round(rssSamples.reduce((sum, value) => sum + value, 0) / rssSamples.length / MB),
    rssPerProcessMb: peaks.map((peak) => round(peak / MB, 0)),
    cpu,
    threads,
    durationSeconds: round(result.duration, 2),
  };
}

/** Cycles through pre-made shots, in order. */
export function cycle(shots: Shot[]): () => Shot {
  if (shots.length === 0) throw new Error('nothing to send');
  let i = 0;
  return () => shots[i++ % shots.length]!;
}
