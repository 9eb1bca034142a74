import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One recorded answer of a real provider, with its sources: see test/fixtures/providers/README.md. */
export interface ProviderFixture {
  /** provider/file.json, for test names. */
  file: string;
  title: string;
  provider: string;
  endpoint: string;
  situation: string;
  sources: Array<{ url?: string; repo?: string; path?: string; says: string }>;
  request?: Record<string, unknown>;
  response?: { status: number; headers?: Record<string, string>; body?: unknown };
  token?: { header: Record<string, unknown>; claims: Record<string, unknown> };
  match?: string[];
  optional?: string[];
  config: Record<string, string>;
  input: Record<string, unknown>;
  expect: { status: number; code?: string; uid?: string };
  notes?: string;
}

export const FIXTURES_DIR = new URL('../fixtures/providers/', import.meta.url).pathname;

export const ENDPOINTS: Record<string, readonly string[]> = {
  facebook: ['me', 'debug_token', 'limited_jwks', 'id_token'],
  twitter: ['verify_credentials', 'users_me'],
  google: ['jwks', 'id_token', 'tokeninfo'],
  apple: ['jwks', 'id_token', 'token', 'revoke', 'user'],
  line: ['verify_access_token', 'profile', 'verify_id_token'],
  github: ['user', 'user_emails', 'check_token'],
  oidc: ['discovery', 'jwks', 'id_token'],
};

/** The situation keys README.md lists. */
export function documentedSituations(): Set<string> {
  const readme = readFileSync(join(FIXTURES_DIR, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Situation keys'));
  return new Set(
    [...section.matchAll(/^\| `([a-z_]+)`(?: \/ `([a-z_]+)`)?(?: \/ `([a-z_]+)`)? \|/gm)].flatMap((m) =>
      m.slice(1).filter(Boolean),
    ),
  );
}

export function loadFixtures(): ProviderFixture[] {
  const fixtures: ProviderFixture[] = [];
  for (const provider of readdirSync(FIXTURES_DIR, { withFileTypes: true })) {
    if (!provider.isDirectory()) continue;
    for (const name of readdirSync(join(FIXTURES_DIR, provider.name)).sort()) {
      if (!name.endsWith('.json')) continue;
      const file = `${provider.name}/${name}`;
      const parsed = JSON.parse(readFileSync(join(FIXTURES_DIR, file), 'utf8')) as Omit<ProviderFixture, 'file'>;
      fixtures.push({ ...parsed, file });
    }
  }
  return fixtures;
}

/** The value at a dotted path such as `error.code` or `errors[0].code`; undefined when absent. */
export function valueAt(value: unknown, path: string): unknown {
  let current = value;
  for (const part of path
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter(Boolean)) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

const kind = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

/**
 * Where `actual` (the emulator's answer) differs in shape from `recorded` (the fixture): a field missing
 * or extra, or of another JSON type; and, for the `match` paths, another value. `optional` paths may be
 * absent or null on either side (the providers' nullable fields). Arrays compare their first elements.
 */
export function shapeDifferences(
  recorded: unknown,
  actual: unknown,
  match: readonly string[] = [],
  optional: readonly string[] = [],
): string[] {
  const differences: string[] = [];
  const normal = (path: string) => path.replace(/\[\d+\]/g, '[0]');
  const isOptional = (path: string) => optional.map(normal).includes(normal(path));

  const walk = (expected: unknown, got: unknown, path: string) => {
    if ((expected === null || got === null) && isOptional(path)) return;
    if (kind(expected) !== kind(got)) {
      differences.push(
        `${path || '(body)'}: recorded ${kind(expected)} ${JSON.stringify(expected)?.slice(0, 60)}, emulator ${kind(got)} ${JSON.stringify(got)?.slice(0, 60)}`,
      );
      return;
    }
    if (Array.isArray(expected) && Array.isArray(got)) {
      if (expected.length > 0 && got.length > 0) walk(expected[0], got[0], `${path}[0]`);
      return;
    }
    if (kind(expected) === 'object') {
      const e = expected as Record<string, unknown>;
      const g = got as Record<string, unknown>;
      for (const key of new Set([...Object.keys(e), ...Object.keys(g)])) {
        const child = path ? `${path}.${key}` : key;
        if (!(key in g)) {
          if (!isOptional(child)) differences.push(`${child}: recorded, absent from the emulator's answer`);
        } else if (!(key in e)) {
          if (!isOptional(child)) differences.push(`${child}: in the emulator's answer, not in the recording`);
        } else {
          walk(e[key], g[key], child);
        }
      }
    }
  };
  walk(recorded, actual, '');
  for (const path of match) {
    const expected = valueAt(recorded, path);
    const got = valueAt(actual, path);
    if (expected !== undefined && JSON.stringify(expected) !== JSON.stringify(got)) {
      differences.push(`${path}: recorded ${JSON.stringify(expected)}, emulator ${JSON.stringify(got)}`);
    }
  }
  return differences;
}
