import { describe, expect, it } from 'vitest';
import { describeProblem, engineProblems, ourNodeRange } from '../scripts/check-engines.js';

// scripts/check-engines.ts: every Node version package.json's engines.node admits is admitted by every package
// `npm ci` installs. A dependency upgrade that drops one of our Node lines fails here, not as an EBADENGINE warning.

const lock = (packages: Record<string, object>) =>
  JSON.stringify({ lockfileVersion: 3, packages: { '': { engines: { node: '>=1' } }, ...packages } });

describe('engines', () => {
  it('every installed package admits the Node versions package.json names', () => {
    const ours = ourNodeRange();
    expect(engineProblems(ours).map(describeProblem)).toEqual([]);
  });

  it('the check finds a package that drops a line we claim, or needs a later release of it', () => {
    const packages = {
      'node_modules/light-my-request/node_modules/cookie': { version: '2.0.2', engines: { node: '>=22' } },
      'node_modules/@noble/hashes': { version: '2.4.0', engines: { node: '>= 20.19.0' } },
      'node_modules/vite': { version: '8.3.8', dev: true, engines: { node: '^20.19.0 || >=22.12.0' } },
      'node_modules/better-sqlite3': { version: '12.11.1', engines: { node: '20.x || 22.x || 24.x' } },
      'node_modules/garbled': { version: '1.0.0', engines: { node: 'not a range' } },
      'node_modules/fine': { version: '1.0.0', engines: { node: '>=18' } },
      'node_modules/ancient': { version: '0.1.0', engines: ['node >= 0.4'] }, // an array: npm ignores it
      'node_modules/no-engines': { version: '1.0.0' },
      'node_modules/@social-link/emulator': { link: true, engines: { node: '>=99' } },
    };
    const found = (ours: string) =>
      engineProblems(ours, lock(packages)).map((problem) => problem.path.replace(/^.*node_modules\//, ''));
    expect(found('>=20.18.1')).toEqual(['cookie', '@noble/hashes', 'vite', 'better-sqlite3', 'garbled']);
    expect(found('^20.19.0 || ^22.13.0')).toEqual(['cookie', 'garbled']);
    expect(found('^22.13.0 || ^24.0.0')).toEqual(['garbled']);
    expect(found('^22.13.0 || >=24')).toEqual(['better-sqlite3', 'garbled']); // it names the majors it was built for
    const [cookie] = engineProblems('>=20.18.1', lock(packages));
    expect(describeProblem(cookie!)).toBe(
      'cookie@2.0.2 (production; node_modules/light-my-request/node_modules/cookie) requires node >=22',
    );
    expect(engineProblems('>=20.18.1', lock(packages)).find((problem) => problem.path.endsWith('vite'))).toMatchObject({
      dev: true,
      requires: '^20.19.0 || >=22.12.0',
    });
  });

  it('refuses an engines.node that is not a range', () => {
    expect(() => ourNodeRange(JSON.stringify({ engines: {} }))).toThrow(/engines\.node/);
    expect(() => ourNodeRange(JSON.stringify({ engines: { node: 'twenty' } }))).toThrow(/engines\.node/);
    expect(ourNodeRange(JSON.stringify({ engines: { node: '^20.19.0 || ^22.13.0' } }))).toBe('^20.19.0 || ^22.13.0');
  });
});
