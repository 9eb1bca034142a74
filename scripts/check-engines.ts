/**
 * Every Node.js version that package.json's `engines.node` admits must be admitted by every package that
 * package-lock.json installs (its `engines.node`, as npm records it): otherwise `npm ci` warns EBADENGINE on a
 * Node we claim to support, and that package may not run there. A dependency upgrade that drops one of our
 * Node lines fails this check (and CI, through test/engines.test.ts) instead of printing a warning.
 *
 *   npx tsx scripts/check-engines.ts     prints the packages that refuse part of our range; exits 1 if any
 *
 * The fix is an npm `overrides` entry pinning the package to the newest version that admits our range, or a
 * narrower `engines.node` for us, when the versions it drops are ones we no longer mean to support.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// semver comes with npm's own tooling and with fastify (a dependency of ours): the same rules npm applies.
const semver = createRequire(import.meta.url)('semver') as {
  validRange(range: string): string | null;
  subset(sub: string, dom: string, options?: { includePrerelease?: boolean }): boolean;
};

interface LockedPackage {
  version?: string;
  engines?: unknown;
  dev?: boolean;
  optional?: boolean;
  link?: boolean;
}

export interface EngineProblem {
  /** Where package-lock.json installs it, e.g. node_modules/fastify/node_modules/cookie */
  path: string;
  version: string;
  /** Its engines.node */
  requires: string;
  /** Only a dev (and/or optional) dependency: still installed by `npm ci`, and so still warned about. */
  dev: boolean;
  optional: boolean;
}

const root = fileURLToPath(new URL('..', import.meta.url));

/** Our engines.node, from package.json. */
export function ourNodeRange(packageJson = readFileSync(`${root}package.json`, 'utf8')): string {
  const range = (JSON.parse(packageJson) as { engines?: { node?: unknown } }).engines?.node;
  if (typeof range !== 'string' || !semver.validRange(range))
    throw new Error(`package.json: engines.node is not a semver range: ${JSON.stringify(range)}`);
  return range;
}

/** The installed packages whose engines.node refuses some Node version of `ours`; empty when none does. */
export function engineProblems(
  ours: string,
  packageLock = readFileSync(`${root}package-lock.json`, 'utf8'),
): EngineProblem[] {
  const packages = (JSON.parse(packageLock) as { packages?: Record<string, LockedPackage> }).packages ?? {};
  const problems: EngineProblem[] = [];
  for (const [path, locked] of Object.entries(packages)) {
    // "" is this package; a link points at a workspace, listed under its own folder too.
    if (path === '' || locked.link) continue;
    const engines = locked.engines;
    // npm records engines as an object; very old packages have an array of strings, which npm ignores.
    const requires =
      engines && typeof engines === 'object' && !Array.isArray(engines)
        ? (engines as { node?: unknown }).node
        : undefined;
    if (typeof requires !== 'string') continue;
    const admitted = semver.validRange(requires) !== null && semver.subset(ours, requires, { includePrerelease: true });
    if (!admitted)
      problems.push({
        path,
        version: locked.version ?? '?',
        requires,
        dev: Boolean(locked.dev),
        optional: Boolean(locked.optional),
      });
  }
  return problems;
}

export function describeProblem(problem: EngineProblem): string {
  const name = problem.path.replace(/^.*node_modules\//, '');
  const kind = [problem.dev ? 'dev' : 'production', problem.optional ? 'optional' : ''].filter(Boolean).join(', ');
  return `${name}@${problem.version} (${kind}; ${problem.path}) requires node ${problem.requires}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const ours = ourNodeRange();
  const problems = engineProblems(ours);
  for (const problem of problems) console.error(describeProblem(problem));
  if (problems.length > 0) {
    console.error(
      `\n${problems.length} installed package(s) refuse part of engines.node "${ours}": pin them with package.json "overrides", or narrow engines.node.`,
    );
    process.exit(1);
  }
  console.log(`Every installed package admits engines.node "${ours}".`);
}
