// Reads a V8 .cpuprofile (node --cpu-prof): self time per function and per package.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface CpuProfile {
  nodes: Array<{ id: number; hitCount?: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotSpot {
  function: string;
  /** file:line, shortened (node_modules/<pkg>/…, dist/…, src/…, node:…). */
  location: string;
  /** Percent of the busy samples (every sample but idle). */
  selfPercent: number;
  selfMs: number;
}

export interface ProfileSummary {
  file: string;
  /** Percent of all samples the process was idle (waiting on I/O). */
  idlePercent: number;
  busyMs: number;
  top: HotSpot[];
  /** Self time per package (node_modules/<pkg>, social-link, node internals, GC…), percent of busy. */
  byPackage: Array<{ package: string; selfPercent: number }>;
}

export function summarizeProfile(file: string, topN = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  // Self time of a node: the time deltas of the samples taken in it (hitCount when there are no samples).
  const selfUs = new Map<number, number>();
  if (profile.samples && profile.timeDeltas) {
    profile.samples.forEach((id, i) =>
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, profile.timeDeltas![i + 1] ?? 0)),
    );
  } else {
    for (const node of profile.nodes) selfUs.set(node.id, (node.hitCount ?? 0) * 1000);
  }

  const byFunction = new Map<string, HotSpot & { us: number }>();
  const byPackage = new Map<string, number>();
  let idleUs = 0;
  let busyUs = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    const location = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${functionName}|${location}`;
    const entry = byFunction.get(key) ?? {
      function: functionName || '(anonymous)',
      location,
      selfPercent: 0,
      selfMs: 0,
      us: 0,
    };
    entry.us += us;
    byFunction.set(key, entry);
    const pkg = packageOf(functionName, url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
  }

  const percent = (us: number) => Math.round((us / Math.max(busyUs, 1)) * 1000) / 10;
  return {
    file,
    idlePercent: Math.round((idleUs / Math.max(idleUs + busyUs, 1)) * 1000) / 10,
    busyMs: Math.round(busyUs / 1000),
    top: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map(({ us, ...spot }) => ({ ...spot, selfPercent: percent(us), selfMs: Math.round(us / 1000) })),
    byPackage: [...byPackage.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([name, us]) => ({ package: name, selfPercent: percent(us) })),
  };
}

export function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('/node_modules/');
  if (modules >= 0) return path.slice(modules + 1);
  const own = /\/(dist|src|bench)\/(.*)$/.exec(path);
  return own ? `${own[1]}/${own[2]}` : path;
}

export function packageOf(functionName: string, url: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native / V8 builtins)';
  if (url.startsWith('node:')) return 'node internals';
  const modules = /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1]!;
  if (/\/(dist|src)\//.test(url)) return 'social-link (dist/src)';
  return url;
}

/**
 * The main thread's profile among those node wrote in `dir` (one per thread): the busiest, not the largest file (an
 * idle thread's may be larger). Undefined when there is none.
 */
export function busiestProfile(dir: string, topN = 15): ProfileSummary | undefined {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.cpuprofile'))
    .map((file) => summarizeProfile(join(dir, file), topN))
    .sort((a, b) => b.busyMs - a.busyMs)[0];
}

/**
 * A server's CPU profile for a bench (BENCH_PROFILE=1): the node flags that write it to bench/results/profiles/,
 * and the printing of its top once the server has stopped. Node writes one profile per thread (a worker's, tsx's
 * loader thread's) into a directory of this profile's own; the busiest is the one printed.
 */
export function serverProfile(name: string) {
  const dir = join(process.cwd(), 'bench', 'results', 'profiles', `${name}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  return {
    nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir],
    print(topN = 25): void {
      const summary = busiestProfile(dir, topN);
      if (!summary) return console.log(`profile: none written in ${relative(process.cwd(), dir)}`);
      console.log(`profile ${relative(process.cwd(), summary.file)}: idle ${summary.idlePercent} %`);
      for (const spot of summary.top)
        console.log(`  ${spot.selfPercent.toFixed(1).padStart(5)} %  ${spot.function}  ${spot.location}`);
      console.log(`  by package: ${summary.byPackage.map((p) => `${p.package} ${p.selfPercent} %`).join(', ')}`);
    },
  };
}
