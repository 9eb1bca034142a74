// `npm run bench:profile-diff -- <baseline> <case>`: where a case's CPU goes beyond its same-work baseline's, per
// request. Each argument is a .cpuprofile or a directory `BENCH_PROFILE=1 npm run bench:case` wrote (its busiest
// thread's profile). Both are read over their busiest BENCH_PROFILE_WINDOW seconds (default 10: the measured load,
// not the start-up), and every self time is divided by that of `signOneShot` — the one ES256 signature both make per
// request — so that the figures compare requests, whatever the machine's speed during each run: 100 = one signature.
// BENCH_PROFILE_BY=function lists functions instead of packages.
import { readFileSync, statSync } from 'node:fs';
import { busiestProfile, packageOf, shortUrl, type CpuProfile } from './profile.js';

// Whole seconds, at least one.
const windowUs = Math.max(1, Math.round(Number(process.env.BENCH_PROFILE_WINDOW ?? 10) || 10)) * 1e6;
const byFunction = process.env.BENCH_PROFILE_BY === 'function';

/** A .cpuprofile, or the main thread's among those of a directory. */
function profileFile(path: string): string {
  if (!statSync(path).isDirectory()) return path;
  const busiest = busiestProfile(path, 0);
  if (!busiest) throw new Error(`no .cpuprofile in ${path}`);
  return busiest.file;
}

/** A package; our own code and the bench's by file; a native function (writev, runMicrotasks…) by its name. */
function groupOf(functionName: string, url: string): string {
  if (!url) return functionName || '(native)';
  const group = packageOf(functionName, url);
  return group === 'social-link (dist/src)' || url.includes('/bench/') ? shortUrl(url) : group;
}

/** Self time per package (or function) in the busiest window, in signatures (signOneShot = 100). */
function perRequest(path: string): { units: Map<string, number>; signatures: number } {
  const profile = JSON.parse(readFileSync(profileFile(path), 'utf8')) as Required<CpuProfile>;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const at: number[] = [];
  // A sample's self time is the delta to the next one (V8 may write a negative delta: counted as none).
  const delta = (i: number) => Math.max(0, profile.timeDeltas[i + 1] ?? 0);
  profile.samples.reduce((time, _id, i) => (at[i] = time + profile.timeDeltas[i]!), 0);
  // The busiest window, in 1 s steps.
  const busy: number[] = [];
  profile.samples.forEach((id, i) => {
    const second = Math.floor(at[i]! / 1e6);
    const idle = nodes.get(id)!.callFrame.functionName === '(idle)';
    busy[second] = (busy[second] ?? 0) + (idle ? 0 : delta(i));
  });
  const width = Math.round(windowUs / 1e6);
  let from = 0;
  let best = -1;
  for (let second = 0; second + width <= busy.length; second++) {
    const sum = busy.slice(second, second + width).reduce((a, b) => a + (b ?? 0), 0);
    if (sum > best) [best, from] = [sum, second];
  }
  const self = new Map<string, number>();
  let signatures = 0;
  profile.samples.forEach((id, i) => {
    if (at[i]! < from * 1e6 || at[i]! >= from * 1e6 + windowUs) return;
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (functionName === '(idle)') return;
    const us = delta(i);
    if (functionName === 'signOneShot') signatures += us;
    const key = byFunction
      ? `${functionName || '(anonymous)'} ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ''}`
      : groupOf(functionName, url);
    self.set(key, (self.get(key) ?? 0) + us);
  });
  if (signatures === 0) throw new Error(`${path}: no signOneShot in its busiest window (not a sign-in's profile?)`);
  return { units: new Map([...self].map(([key, us]) => [key, (us / signatures) * 100])), signatures };
}

const [baselinePath, casePath] = process.argv.slice(2);
if (!baselinePath || !casePath) {
  console.error('usage: npm run bench:profile-diff -- <baseline profile or directory> <case profile or directory>');
  process.exit(2);
}
const baseline = perRequest(baselinePath).units;
const measured = perRequest(casePath).units;
const total = (units: Map<string, number>) => [...units.values()].reduce((a, b) => a + b, 0);
console.log(
  `per request, in signatures × 100: baseline ${total(baseline).toFixed(0)}, case ${total(measured).toFixed(0)}`,
);
const rows = [...new Set([...baseline.keys(), ...measured.keys()])]
  .map((key) => ({ key, baseline: baseline.get(key) ?? 0, measured: measured.get(key) ?? 0 }))
  .sort((a, b) => b.measured - b.baseline - (a.measured - a.baseline));
const top = Number(process.env.BENCH_PROFILE_TOP ?? 30);
console.log('baseline    case    more');
for (const row of rows.length > top + 5 ? [...rows.slice(0, top), ...rows.slice(-5)] : rows)
  console.log(
    `${row.baseline.toFixed(1).padStart(8)} ${row.measured.toFixed(1).padStart(7)} ${(row.measured - row.baseline).toFixed(1).padStart(7)}  ${row.key}`,
  );
