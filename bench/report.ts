// The results: one table (Markdown, padded so that it also reads in a terminal), the targets with
// PASS/MISS, start-up times, CPU hot spots; written as JSON and Markdown under bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Measurement } from './load.js';
import type { ProfileSummary } from './profile.js';

export interface Row {
  /** Stable id: baseline-b, baseline-c, baseline-f, baseline-a1, baseline-a, baseline-l, baseline-a-slow, case1, case2, case3, case4, case4-fixed. */
  id: string;
  label: string;
  /** What answered: "bare Fastify", "sqlite ×1", "postgres ×2"… */
  server: string;
  /** The database it wrote to: the cases', and baselines C, F and L (each on the database of the cases it limits). */
  database?: string;
  workers?: number;
  connections: number;
  m: Measurement;
  /** What the row is compared with, and the ratio of its req/s to that limit. */
  limit?: { name: string; rps: number };
  ratio?: number;
  notes: string[];
}

export interface Startup {
  server: string;
  database: string;
  workers: number;
  /** Spawn → first 200 on /healthz, in ms; several samples when measured more than once. */
  samplesMs: number[];
  medianMs: number;
  freshDatabase: boolean;
  /** RSS of its processes when it first answered (idle), MB; the median with several samples. */
  readyRssMb: number;
}

/** `npm run bench:peer`'s run within `npm run bench` (bench/peer.ts writes it): its table and each row's figures. */
export interface PeerSummary {
  heading: string;
  /** The table bench:peer prints (Markdown). */
  table: string;
  /** How to read it. */
  reading: string;
  rows: Array<{
    database: string;
    users: number;
    connections: number;
    socialLinkRps: number;
    betterAuthRps: number;
    socialLinkCpuMs: number;
    betterAuthCpuMs: number;
  }>;
}

export interface TargetCheck {
  name: string;
  goal: string;
  actual: string;
  pass: boolean;
}

export interface Report {
  date: string;
  wallSeconds: number;
  machine: { cpus: number; model: string; node: string; memoryGb: number; commit: string };
  runner: string;
  timing: {
    warmupSeconds: number;
    durationSeconds: number;
    connections: number;
    slowConnections: number;
    users: number;
  };
  rows: Row[];
  startups: Startup[];
  targets: TargetCheck[];
  littlesLawRps: number;
  profiles: Array<{ case: string; rps: number; summary: ProfileSummary }>;
  /** The peer beside us (absent with BENCH_PEER=0, or when its run failed: then a target says so). */
  peer?: PeerSummary;
  /** BENCH_PEER=0: the peer's targets were not checked (the report says so). */
  peerSkipped?: boolean;
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const errorsOf = (m: Measurement) => m.non2xx + m.socketErrors;
/** The server's CPU time per answered request, in ms (all its threads; its CPU % over the window ÷ req/s). */
const cpuMsPerRequest = (row: Row): number => (row.m.rps > 0 ? (row.m.cpu.target * 10) / row.m.rps : Infinity);
const cpuMsText = (row: Row) => (row.m.rps > 0 ? cpuMsPerRequest(row).toFixed(2) : '?');
const fmt = (value: number, digits = 0) =>
  value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** PASS/MISS per target of the issue, for every database measured. */
export function checkTargets(
  rows: Row[],
  startups: Startup[],
  littlesLawRps: number,
  peer?: PeerSummary,
): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const ratioCheck = (row: Row, goal: number, zeroErrors: boolean, name: string) => {
    const ratio = row.ratio ?? 0;
    const errors = errorsOf(row.m);
    checks.push({
      name: `${name} (${row.server})`,
      goal: `≥ ${goal} × ${row.limit?.name ?? '?'}${zeroErrors ? ', 0 errors' : ''}`,
      actual: `${ratio.toFixed(2)} (${fmt(row.m.rps)} / ${fmt(row.limit?.rps ?? 0)} req/s)${zeroErrors ? `, ${errors} errors` : ''}`,
      pass: ratio >= goal && (!zeroErrors || errors === 0),
    });
  };
  // The targets: ×1 against the baselines doing the same work on the same database (case 1: F, case 2: C, case 3:
  // L), every case ≥ 0.7 of its baseline on SQLite and ≥ 0.6 on PostgreSQL.
  for (const row of rows.filter((r) => r.workers === 1)) {
    const goal = row.database === 'postgres' ? 0.6 : 0.7;
    if (row.id === 'case1') ratioCheck(row, goal, true, 'case 1 auth/facebook');
    if (row.id === 'case3') ratioCheck(row, goal, true, 'case 3 associate/facebook');
    if (row.id === 'case2') ratioCheck(row, goal, true, 'case 2 auth/google');
    // The issue's target is SQLite's; PostgreSQL's case 4 is in the table.
    if (row.id === 'case4' && row.database !== 'postgres') {
      const ratio = row.m.rps / littlesLawRps;
      // What a bare server reaches with the same latency on this machine: the ceiling the machine allows.
      const bare = rows.find((r) => r.id === 'baseline-a-slow' && r.server.includes(row.database ?? ''));
      checks.push({
        name: `case 4 auth/facebook, provider +200 ms (${row.server})`,
        goal: `≥ 0.85 × ${fmt(littlesLawRps)} req/s (Little's law): ≤ 0.75 ms of CPU per sign-in`,
        actual:
          `${ratio.toFixed(2)} (${fmt(row.m.rps)} req/s), ${cpuMsText(row)} ms of CPU per sign-in` +
          (bare ? `; bare baseline A with the same latency: ${(bare.m.rps / littlesLawRps).toFixed(2)}` : ''),
        pass: ratio >= 0.85,
      });
    }
    // PostgreSQL: the server's CPU per sign-in, beside its same-work baseline's on this machine (the mean of the runs
    // around the case): a figure in ms depends on the machine's speed, which the baseline shows.
    const cpuBaseline = { case1: 'baseline-f', case2: 'baseline-c' }[row.id];
    if (row.database === 'postgres' && cpuBaseline) {
      const baselines = rows.filter((r) => r.id === cpuBaseline && r.database === 'postgres' && r.m.rps > 0);
      const baselineMs = baselines.reduce((sum, r) => sum + cpuMsPerRequest(r), 0) / baselines.length;
      const ms = cpuMsPerRequest(row);
      checks.push({
        name: `server CPU per sign-in, ${row.id === 'case1' ? 'case 1 auth/facebook' : 'case 2 auth/google'} (${row.server})`,
        goal: '≤ 0.8 ms',
        actual:
          `${cpuMsText(row)} ms` +
          (baselines.length
            ? `; its same-work baseline's ${baselineMs.toFixed(2)} ms (${(ms / baselineMs).toFixed(2)} ×)`
            : ''),
        pass: ms <= 0.8,
      });
    }
  }
  // Memory: at 256 connections, within 1.2 × the bare baseline's RSS at the same load (its node process).
  const bareSlow = rows.filter((r) => r.id === 'baseline-a-slow');
  for (const row of rows.filter((r) => r.id === 'case4' && r.workers === 1)) {
    const bare = bareSlow.find((b) => b.server.includes(row.database ?? '')) ?? bareSlow[0];
    const bareMb = bare?.m.rssPerProcessMb[0] ?? 0;
    checks.push({
      name: `RSS at ${row.connections} connections (${row.server})`,
      goal: `≤ 1.2 × the bare baseline's (${fmt(bareMb)} MB)`,
      actual: `peak ${fmt(row.m.rssPeakMb, 1)} MB = ${(row.m.rssPeakMb / Math.max(1, bareMb)).toFixed(2)} ×`,
      pass: row.m.rssPeakMb <= 1.2 * bareMb,
    });
  }
  // The peer: at least twice Better Auth's sign-ins per second, every database, user count and connection count.
  for (const row of peer?.rows ?? []) {
    const ratio = row.socialLinkRps / Math.max(row.betterAuthRps, 1e-9);
    checks.push({
      name: `sign-ins per second ÷ Better Auth's (${row.database.toLowerCase()}, ${row.users} user${row.users > 1 ? 's' : ''}, ${row.connections} connections)`,
      goal: '≥ 2',
      actual: `${ratio.toFixed(2)} (${fmt(row.socialLinkRps)} / ${fmt(row.betterAuthRps)} req/s; CPU per sign-in ${row.socialLinkCpuMs.toFixed(2)} / ${row.betterAuthCpuMs.toFixed(2)} ms)`,
      pass: ratio >= 2,
    });
  }
  for (const startup of startups.filter((s) => s.workers === 1 && !s.freshDatabase)) {
    checks.push({
      name: `start-up, spawn → first 200 on /healthz (${startup.server})`,
      goal: '< 1 s',
      actual: `median ${fmt(startup.medianMs)} ms of ${startup.samplesMs.map((ms) => fmt(ms)).join(', ')}`,
      pass: startup.medianMs < 1000,
    });
  }
  return checks;
}

/** A Markdown table whose columns are padded to the same width (so it also reads as plain text). */
function table(header: string[], rows: string[][], alignRight: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => (alignRight[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (alignRight[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export function resultsTable(rows: Row[]): string {
  const header = [
    'case',
    'server',
    'conns',
    'req/s',
    'p50 ms',
    'p99 ms',
    'errors',
    'RSS MB',
    'CPU % srv/emu/gen/other',
    'iowait %',
    'srv CPU ms/req',
    'db CPU ms/req',
    'limit',
    'ratio',
  ];
  const body = rows.map((row) => [
    row.label,
    row.server,
    String(row.connections),
    fmt(row.m.rps),
    fmt(row.m.p50Ms),
    fmt(row.m.p99Ms),
    String(errorsOf(row.m)),
    row.id.startsWith('baseline') ? `(${fmt(row.m.rssPeakMb, 1)})` : fmt(row.m.rssPeakMb, 1),
    `${row.m.cpu.target}/${row.m.cpu.emulator}/${row.m.cpu.loadgen}/${row.m.cpu.other}`,
    String(row.m.cpu.iowait),
    row.m.rps > 0 ? fmt(cpuMsPerRequest(row), 2) : '',
    row.database === 'postgres' && row.m.rps > 0 ? fmt((row.m.cpu.database * 10) / row.m.rps, 2) : '',
    row.limit ? `${row.limit.name} ${fmt(row.limit.rps)}` : '',
    row.ratio === undefined ? '' : row.ratio.toFixed(2),
  ]);
  return table(header, body, [false, false, true, true, true, true, true, true, true, true, true, true, false, true]);
}

export function render(report: Report): string {
  const out: string[] = [];
  const { machine, timing } = report;
  out.push(`# social-link bench — ${report.date}`);
  out.push('');
  out.push(
    `${machine.cpus} × ${machine.model}, ${machine.memoryGb} GB, Node ${machine.node}, commit ${machine.commit}, server run as \`${report.runner}\`. ` +
      `Each case: ${timing.warmupSeconds} s warm-up, then ${timing.durationSeconds} s measured; ${timing.users} linked users. Wall time ${fmt(report.wallSeconds)} s.`,
  );
  out.push('');
  out.push(resultsTable(report.rows));
  out.push('');
  out.push(
    'req/s counts 2xx answers only; errors = non-2xx answers + socket errors/timeouts; RSS is the peak of the server process(es) ' +
      '(summed over the primary and its workers) sampled every 250 ms; in parentheses for the bare baseline. CPU is percent of one core ' +
      `over the measured window: server / emulator / load generator (this process) / everything else on the machine — ${report.machine.cpus * 100} % ` +
      "is the whole machine; iowait is the machine's idle time " +
      "waiting on the disk (fsync), in the same unit. *srv CPU ms/req* is the server's CPU time per answered request (all its threads): " +
      'the figure that compares best between runs on a busy machine, since it does not depend on how much of the CPU the server got. ' +
      "*db CPU ms/req* (PostgreSQL rows) is the same for the PostgreSQL server's processes (its backends and writers, every database of that server).",
  );
  const notes = report.rows.flatMap((row) => row.notes.map((note) => `- ${row.label} (${row.server}): ${note}`));
  if (notes.length > 0) out.push('', ...notes);

  out.push('', '## Start-up (spawn → first 200 on /healthz)', '');
  out.push(
    table(
      ['server', 'samples ms', 'median ms', 'RSS at first answer MB'],
      report.startups.map((s) => [
        s.server,
        s.samplesMs.map((ms) => fmt(ms)).join(', '),
        fmt(s.medianMs),
        fmt(s.readyRssMb),
      ]),
      [false, true, true, true],
    ),
  );

  if (report.peer) {
    out.push('', '## The peer: Better Auth (`npm run bench:peer`)', '', `${report.peer.heading}:`, '');
    out.push(report.peer.table, '', report.peer.reading);
  } else if (report.peerSkipped) {
    out.push(
      '',
      '## The peer: Better Auth (`npm run bench:peer`)',
      '',
      "Not run (BENCH_PEER=0): its targets (≥ 2 × Better Auth's sign-ins per second) were not checked.",
    );
  }

  out.push(
    '',
    `## Targets (Little's law limit of case 4: 256 connections / 0.2 s = ${fmt(report.littlesLawRps)} req/s)`,
    '',
  );
  for (const t of report.targets) out.push(`- **${t.pass ? 'PASS' : 'MISS'}** ${t.name}: ${t.actual} — goal ${t.goal}`);

  for (const profile of report.profiles) {
    const s = profile.summary;
    out.push(
      '',
      `## CPU profile: ${profile.case} (${fmt(profile.rps)} req/s while profiled; idle ${s.idlePercent} %, busy ${fmt(s.busyMs)} ms)`,
      '',
    );
    out.push(
      table(
        ['self %', 'self ms', 'function', 'where'],
        s.top.map((spot) => [spot.selfPercent.toFixed(1), fmt(spot.selfMs), spot.function, spot.location]),
        [true, true, false, false],
      ),
    );
    out.push('', `By package: ${s.byPackage.map((p) => `${p.package} ${p.selfPercent} %`).join(', ')}`);
    out.push('', `Profile: \`${s.file}\` (open it in Chrome DevTools → Performance, or VS Code).`);
  }
  return out.join('\n');
}

/** Writes latest.{json,md} and a timestamped copy of both; returns the paths. */
export function writeResults(dir: string, report: Report, markdown: string): string[] {
  mkdirSync(dir, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-');
  const json = JSON.stringify(report, null, 2);
  const files: Array<[string, string]> = [
    ['latest.json', json],
    ['latest.md', `${markdown}\n`],
    [`${stamp}.json`, json],
    [`${stamp}.md`, `${markdown}\n`],
  ];
  for (const [name, content] of files) writeFileSync(join(dir, name), content);
  return files.map(([name]) => join(dir, name));
}
