import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// `npm run check:deps`: dependency-cruiser holds src/ and emulator/src/ to .dependency-cruiser.cjs, the arrows that
// must never exist — no circle (`import type` and import() included), the emulator imports nothing of src/, src/
// nothing of test/, and no floor imports one above it (lib → auth → store → providers → config → core → import →
// http + admin → cli → src/*.ts).

const root = fileURLToPath(new URL('..', import.meta.url));
const depcruise = join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
  /** A circle: the modules after `from`, back to it. */
  cycle?: { name: string }[];
}

interface Cruise {
  modules: {
    source: string;
    dependencies: { module: string; resolved: string; couldNotResolve: boolean; dependencyTypes: string[] }[];
  }[];
  summary: { violations: Violation[]; totalCruised: number; ruleSetUsed: { forbidden?: { name: string }[] } };
}

function run(command: string, args: string[], cwd: string) {
  const done = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120_000 });
  if (done.error) throw done.error;
  return done;
}

/** The JSON report (`--output-type json`) the command wrote. */
function cruise(command: string, args: string[], cwd: string): Cruise {
  const done = run(command, [...args, '--output-type', 'json'], cwd);
  try {
    return JSON.parse(done.stdout) as Cruise;
  } catch {
    throw new Error(
      `${command} ${args.join(' ')} wrote no JSON report (exit ${done.status}):\n${done.stderr}${done.stdout.slice(0, 2000)}`,
    );
  }
}

/** "rule: from → to"; a circle written all the way round, from its first module by name. */
function describeViolation(violation: Violation): string {
  if (!violation.cycle) return `${violation.rule.name}: ${violation.from} → ${violation.to}`;
  const ring = violation.cycle.map((step) => step.name);
  const start = ring.indexOf([...ring].sort()[0]!);
  const round = [...ring.slice(start), ...ring.slice(0, start)];
  return `${violation.rule.name}: ${[...round, round[0]].join(' → ')}`;
}

/** The floors, bottom up, as .dependency-cruiser.cjs names them. */
const FLOORS = ['lib', 'auth', 'store', 'providers', 'config', 'core', 'import', 'http', 'admin', 'server', 'cli'];

const dependency = (report: Cruise, from: string, to: string) =>
  report.modules
    .find((module) => module.source === from)
    ?.dependencies.find((dependency) => dependency.resolved === to);

describe('dependencies', () => {
  it('npm run check:deps finds none of the arrows .dependency-cruiser.cjs forbids', { timeout: 120_000 }, () => {
    const report = cruise('npm', ['run', '--silent', 'check:deps', '--'], root);
    expect(report.summary.violations.map(describeViolation)).toEqual([]);

    // It read the rule file, and saw the house as it is: a misconfiguration that sees nothing passes nothing.
    expect(report.summary.ruleSetUsed.forbidden?.map((rule) => rule.name)).toEqual([
      'no-circular',
      'emulator-imports-nothing-of-src',
      'src-imports-nothing-of-test',
      ...FLOORS.map((floor) => `${floor}-imports-nothing-above`),
    ]);
    expect(report.summary.totalCruised).toBeGreaterThan(100);
    const sources = report.modules.map((module) => module.source);
    expect(sources).toEqual(
      expect.arrayContaining([
        'src/server/app.ts',
        'src/core/services.ts',
        'src/store/storage.ts',
        'emulator/src/index.ts',
      ]),
    );
    // NodeNext specifiers ('./app.js') name the .ts sources, the workspace is its sources (tsconfig.json's paths),
    // and `import type` is an arrow too.
    expect(dependency(report, 'src/server/api-document.ts', 'src/server/app.ts')?.module).toBe('./app.js');
    expect(dependency(report, 'src/cli/dev.ts', 'emulator/src/index.ts')?.module).toBe('@social-link/emulator');
    expect(
      dependency(report, 'src/core/email-linking.ts', 'src/core/pipeline-step.ts')?.dependencyTypes ?? [],
    ).toContain('type-only');
    const unresolved = report.modules.flatMap((module) =>
      module.dependencies
        .filter((dependency) => dependency.couldNotResolve && dependency.module.startsWith('.'))
        .map((dependency) => `${module.source} → ${dependency.module}`),
    );
    expect(unresolved).toEqual([]);
  });

  it('each rule refuses its arrow, a circle through `import type` and import() too', { timeout: 120_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'social-link-deps-'));
    const files: Record<string, string> = {
      'tsconfig.json': JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true },
      }),
      'src/core/a.ts': "import type { B } from './b.js';\nexport interface A { b?: B }\n",
      'src/core/b.ts': "export interface B { name: string }\nexport const loadA = () => import('./a.js');\n",
      'src/http/app.ts': 'export const app = 1;\n',
      'src/store/rows.ts': "import { app } from '../http/app.js';\nexport const rows = app;\n",
      // Each floor reaching one floor up (cli up to an entry point); admin reaching down to http (allowed).
      ...Object.fromEntries(
        FLOORS.map((floor, index) => {
          const up = FLOORS[index + 1];
          const target = up ? `../${up}/up.js` : '../main.js';
          return [`src/${floor}/up.ts`, `import { up } from '${target}';\nexport const mine = up;\n`];
        }),
      ),
      'src/admin/side.ts': "import { up } from '../http/up.js';\nexport const side = up;\n",
      'src/main.ts': 'export const up = 1;\n',
      'src/index.ts': "export { fixture } from '../test/helpers.js';\n",
      'test/helpers.ts': 'export const fixture = 1;\n',
      'emulator/src/index.ts': "import type { app } from '../../src/http/app.js';\nexport type App = typeof app;\n",
    };
    try {
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, path)), { recursive: true });
        writeFileSync(join(dir, path), text);
      }
      const args = [depcruise, 'src', 'emulator/src', '--config', join(root, '.dependency-cruiser.cjs')];
      const report = cruise(process.execPath, args, dir);
      expect(report.summary.violations.map(describeViolation).sort()).toEqual(
        [
          'emulator-imports-nothing-of-src: emulator/src/index.ts → src/http/app.ts',
          'no-circular: src/core/a.ts → src/core/b.ts → src/core/a.ts',
          'src-imports-nothing-of-test: src/index.ts → test/helpers.ts',
          'store-imports-nothing-above: src/store/rows.ts → src/http/app.ts',
          ...FLOORS.map(
            (floor, index) =>
              `${floor}-imports-nothing-above: src/${floor}/up.ts → ${FLOORS[index + 1] ? `src/${FLOORS[index + 1]}/up.ts` : 'src/main.ts'}`,
          ),
        ].sort(),
      );
      // As `npm run check:deps` runs it (its text report): it fails, and names them.
      const checked = run(process.execPath, args, dir);
      expect(checked.status).not.toBe(0);
      expect(checked.stdout).toMatch(/no-circular: src\/core\/[ab]\.ts/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
