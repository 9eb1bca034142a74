// Child processes of the bench: start, wait until they answer, measure (/proc), stop; and kill every one of
// them whatever happens (failure, Ctrl-C), by pid only.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

export interface Child {
  name: string;
  process: ChildProcess;
  pid: number;
  /** The last lines it wrote (stdout and stderr), for error messages. */
  output(): string;
  /** Resolves with the exit code (or signal name) when it exits. */
  exited: Promise<number | string>;
  hasExited(): boolean;
  /** Warnings and errors it logged since the last call (pino level ≥ warn, or any non-JSON line), counted by message. */
  takeLogSummary(): Array<{ message: string; count: number }>;
}

const children = new Set<Child>();
const OUTPUT_TAIL = 16 * 1024;

/** Spawns `node <args>` with exactly `env` (plus PATH/HOME), its output kept (the tail) in memory. */
export function startNode(name: string, args: string[], env: Record<string, string>): Child {
  const proc = spawn(process.execPath, args, {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TMPDIR: process.env.TMPDIR ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error(`${name}: could not spawn node`);
  let tail = '';
  const logged = new Map<string, number>();
  const partial = { stdout: '', stderr: '' };
  const keep = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    tail = (tail + text).slice(-OUTPUT_TAIL);
    const lines = (partial[stream] + text).split('\n');
    partial[stream] = lines.pop() ?? '';
    for (const line of lines) {
      const message = logMessage(line);
      if (message !== undefined && logged.size < 100) logged.set(message, (logged.get(message) ?? 0) + 1);
      else if (message !== undefined && logged.has(message)) logged.set(message, logged.get(message)! + 1);
    }
  };
  proc.stdout!.on('data', keep('stdout'));
  proc.stderr!.on('data', keep('stderr'));
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => {
      done = true;
      children.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const takeLogSummary = () => {
    const summary = [...logged.entries()]
      .map(([message, count]) => ({ message, count }))
      .sort((a, b) => b.count - a.count);
    logged.clear();
    return summary;
  };
  const child: Child = {
    name,
    process: proc,
    pid: proc.pid,
    output: () => tail,
    exited,
    hasExited: () => done,
    takeLogSummary,
  };
  children.add(child);
  return child;
}

/** A warning or error worth reporting from one output line: pino JSON at level ≥ 40 (warn), or any other text. */
function logMessage(line: string): string | undefined {
  const text = line.trim();
  if (!text) return undefined;
  if (!text.startsWith('{')) return text.slice(0, 200);
  try {
    const entry = JSON.parse(text) as {
      level?: number;
      msg?: string;
      err?: { message?: string };
      code?: string;
      detail?: string;
      reason?: string;
      url?: unknown;
    };
    if (entry.url !== undefined && entry.level === undefined) return undefined; // a bench child announcing its URL
    if ((entry.level ?? 0) < 40) return undefined;
    const why = entry.err?.message ?? entry.detail ?? entry.reason ?? entry.code;
    return `${entry.msg ?? ''}${why ? `: ${why}` : ''}`.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}

/** Waits for the child's first stdout line that is JSON with a `url` (the bench's own child scripts print one). */
export function announcedUrl(child: Child, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => fail(new Error(`${child.name} did not start within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      for (const line of buffer.split('\n')) {
        try {
          const parsed = JSON.parse(line) as { url?: unknown };
          if (typeof parsed.url === 'string') return done(parsed.url);
        } catch {
          // not our line
        }
      }
    };
    const onExit = () => fail(new Error(`${child.name} exited before it was ready:\n${child.output()}`));
    const cleanup = () => {
      clearTimeout(timer);
      child.process.stdout!.off('data', onData);
      child.process.off('exit', onExit);
    };
    const done = (url: string) => (cleanup(), resolve(url));
    const fail = (error: Error) => (cleanup(), reject(error));
    child.process.stdout!.on('data', onData);
    child.process.once('exit', onExit);
  });
}

/** Polls GET {url}/healthz until it answers 200; resolves with the milliseconds since `since`. */
export async function waitForHealthy(child: Child, url: string, since: number, timeoutMs = 60_000): Promise<number> {
  while (performance.now() - since < timeoutMs) {
    if (child.hasExited()) throw new Error(`${child.name} exited before it answered /healthz:\n${child.output()}`);
    try {
      const response = await request(`${url}/healthz`, { headersTimeout: 1000, bodyTimeout: 1000, reset: true });
      await response.body.dump();
      if (response.statusCode === 200) return performance.now() - since;
    } catch {
      // not listening yet
    }
    await sleep(5);
  }
  throw new Error(`${child.name} did not answer /healthz within ${timeoutMs} ms:\n${child.output()}`);
}

/** SIGTERM (graceful: a server finishes, a --cpu-prof process writes its profile), SIGKILL after `graceMs`. */
export async function stop(child: Child, graceMs = 10_000): Promise<void> {
  if (child.hasExited()) return;
  const family = [...descendants(child.pid)];
  child.process.kill('SIGTERM');
  const killed = await Promise.race([child.exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (killed) {
    console.warn(`  ${child.name} (pid ${child.pid}) did not stop within ${graceMs} ms: killed`);
    child.process.kill('SIGKILL');
    await child.exited;
  }
  for (const pid of family) killPid(pid, 'SIGKILL'); // workers left behind, if any
}

/** Last resort, synchronous (works in process.on('exit')): SIGKILL every child still running and its descendants. */
export function killAll(): void {
  for (const child of children) {
    for (const pid of descendants(child.pid)) killPid(pid, 'SIGKILL');
    killPid(child.pid, 'SIGKILL');
  }
  children.clear();
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((child) => stop(child, 5000)));
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** A free TCP port on 127.0.0.1 (for a server that is told its port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

// ---- /proc: process tree, memory, CPU time -------------------------------------------------------------

/** Every descendant of `root` (cluster workers are children of the primary), from /proc/<pid>/stat. */
export function descendants(root: number): number[] {
  const parentOf = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProc(`/proc/${entry}/stat`);
    if (!stat) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = parentOf.get(ppid) ?? [];
    list.push(Number(entry));
    parentOf.set(ppid, list);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const pid of parentOf.get(queue.shift()!) ?? []) {
      found.push(pid);
      queue.push(pid);
    }
  }
  return found;
}

/** The process and its descendants. */
export const processTree = (pid: number): number[] => [pid, ...descendants(pid)];

/** Resident memory of the processes together, in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readProc(`/proc/${pid}/status`) ?? '');
    if (match) total += Number(match[1]) * 1024;
  }
  return total;
}

let clockTicks: number | undefined;

/** CPU time (user + system) the processes used so far, in seconds. */
export function cpuSeconds(pids: number[]): number {
  clockTicks ??= ticksPerSecond();
  let ticks = 0;
  for (const pid of pids) {
    const stat = readProc(`/proc/${pid}/stat`);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
  }
  return ticks / clockTicks;
}

/**
 * CPU time of one process so far, in seconds, split: its main thread's (the event loop: user, and system — the
 * kernel's work for its syscalls, socket writes above all) and every other thread's together (V8's garbage collector
 * and compiler helpers, libuv's pool, a worker thread).
 */
export function threadCpuSeconds(pid: number): { mainUser: number; mainSystem: number; others: number } {
  clockTicks ??= ticksPerSecond();
  const fieldsOf = (path: string) => {
    const stat = readProc(path);
    return stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ') : undefined;
  };
  const main = fieldsOf(`/proc/${pid}/task/${pid}/stat`);
  const all = fieldsOf(`/proc/${pid}/stat`);
  if (!main || !all) return { mainUser: 0, mainSystem: 0, others: 0 };
  const mainUser = Number(main[11]) / clockTicks;
  const mainSystem = Number(main[12]) / clockTicks;
  return { mainUser, mainSystem, others: (Number(all[11]) + Number(all[12])) / clockTicks - mainUser - mainSystem };
}

/**
 * CPU time of a process and all its descendants so far, in seconds, those that exited included (their time is in
 * their parent's cutime and cstime once reaped: a PostgreSQL backend whose connection closed, say).
 */
export function treeCpuSeconds(root: number): number {
  clockTicks ??= ticksPerSecond();
  let ticks = 0;
  for (const pid of [root, ...descendants(root)]) {
    const stat = readProc(`/proc/${pid}/stat`);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime (fields 14 to 17 of stat)
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  }
  return ticks / clockTicks;
}

/** Busy and I/O-wait CPU time of the whole machine so far (every process, ours or not), in seconds. */
export function machineCpuSeconds(): { busy: number; iowait: number } {
  clockTicks ??= ticksPerSecond();
  const fields = (readProc('/proc/stat') ?? '').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …
  const [user = 0, nice = 0, system = 0, , iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
  return { busy: (user + nice + system + irq + softirq + steal) / clockTicks, iowait: iowait / clockTicks };
}

function ticksPerSecond(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Runs a bench script: every child dies with it — on success, on failure, on Ctrl-C, and (SIGKILL, synchronously) on
 * exit — then `cleanUp` (the script's own: databases to drop, files to remove) runs, and the exit code says how it went.
 */
export function runBench(name: string, main: () => Promise<void>, cleanUp: () => Promise<void>): void {
  // Once, whatever asks first: Ctrl-C's SIGINT and a parent's SIGTERM (npm run bench stopping its peer) may both come.
  let finishing: Promise<void> | undefined;
  const finish = () =>
    (finishing ??= (async () => {
      await stopAll();
      await cleanUp();
    })());
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping every child process…`);
      void finish().finally(() => process.exit(130));
    });
  }
  main().then(
    async () => {
      await finish();
      process.exit(0);
    },
    async (error: unknown) => {
      console.error(`${name} failed:`, error);
      await finish();
      process.exit(1);
    },
  );
}
