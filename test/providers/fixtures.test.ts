import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startContractEmulator, emulate } from '../contract/emulator.js';
import { documentedSituations, ENDPOINTS, loadFixtures, shapeDifferences } from '../contract/fixtures.js';
import { replay } from '../contract/replay.js';

// The real providers' answers, each pinned to a cited source (test/fixtures/providers/README.md), replayed
// through our provider modules; and our emulator driven into the same situations answers the same.

const fixtures = loadFixtures();

describe('provider fixtures', () => {
  it('are well-formed: known endpoint and situation, a source (or a note saying there is none), an expectation', () => {
    const situations = documentedSituations();
    const problems = fixtures.flatMap((fixture) => {
      const found: string[] = [];
      if (!ENDPOINTS[fixture.provider]?.includes(fixture.endpoint)) found.push(`unknown endpoint ${fixture.endpoint}`);
      if (!situations.has(fixture.situation)) found.push(`situation ${fixture.situation} is not listed in README.md`);
      if (!fixture.file.startsWith(`${fixture.provider}/${fixture.endpoint}.${fixture.situation}.`))
        found.push('file name is not <endpoint>.<situation>[.variant].json');
      if (fixture.sources.length === 0 && !/source|gap|assum/i.test(fixture.notes ?? ''))
        found.push('no source, and no note saying what is assumed');
      if (
        fixture.sources.some((source) => !source.says || !(source.url || (source.repo && source.path) || source.repo))
      )
        found.push('a source without says and url/repo');
      if (!fixture.response === !fixture.token) found.push('needs exactly one of response and token');
      if (typeof fixture.expect?.status !== 'number') found.push('no expect.status');
      return found.map((problem) => `${fixture.file}: ${problem}`);
    });
    expect(problems).toEqual([]);
  });

  it('cover every endpoint social-link calls with a recorded success', () => {
    const missing = Object.entries(ENDPOINTS).flatMap(([provider, endpoints]) =>
      endpoints
        .filter((endpoint) => !fixtures.some((f) => f.file === `${provider}/${endpoint}.${'success'}.json`))
        .map((endpoint) => `${provider}/${endpoint}`),
    );
    expect(missing).toEqual([]);
  });
});

describe.each(fixtures.map((fixture) => [fixture.file, fixture] as const))('%s', (_file, fixture) => {
  it(`social-link answers ${fixture.expect.status}${fixture.expect.code ? ` ${fixture.expect.code}` : ''} when the provider answers as recorded`, async () => {
    const outcome = await replay(fixture, fixtures);
    const shown = `${JSON.stringify(outcome)} (${fixture.title})`;
    expect(outcome.status, shown).toBe(fixture.expect.status);
    if (fixture.expect.code) expect(outcome.code, shown).toBe(fixture.expect.code);
    if (fixture.expect.uid) expect(outcome.uid, shown).toBe(fixture.expect.uid);
    // The replay really reached the recorded answer (a fixture nobody calls proves nothing).
    const endpoint = fixture.endpoint === 'id_token' || fixture.endpoint === 'user' ? undefined : fixture.endpoint;
    if (endpoint) expect(outcome.calls, shown).toContain(endpoint);
  });
});

describe('the emulator, driven into each recorded situation, answers as the provider does', () => {
  let emulator: Awaited<ReturnType<typeof startContractEmulator>>;
  beforeAll(async () => {
    emulator = await startContractEmulator(fixtures);
  });
  afterAll(() => emulator.running.close());
  beforeEach(async () => {
    await emulator.client.reset();
  });

  it.for(fixtures.map((fixture) => [fixture.file, fixture] as const))('%s', async ([, fixture], context) => {
    const emulated = await emulate(fixture, emulator.running.url, emulator.client);
    if (emulated.kind === 'skip') return context.skip(emulated.reason);
    if (emulated.kind === 'token') {
      expect(fixture.token, 'the fixture records a token').toBeDefined();
      expect(emulated.header.alg).toBe(fixture.token!.header.alg);
      expect(shapeDifferences(fixture.token!.claims, emulated.claims, fixture.match, fixture.optional)).toEqual([]);
      return;
    }
    const recorded = fixture.response!;
    // A server error is any 5xx: that is all the situation says.
    if (fixture.situation === 'server_error') expect(emulated.status).toBeGreaterThanOrEqual(500);
    else expect({ status: emulated.status, body: emulated.body }).toMatchObject({ status: recorded.status });
    if (recorded.body !== undefined && recorded.body !== null && recorded.body !== '') {
      expect(shapeDifferences(recorded.body, emulated.body, fixture.match, fixture.optional)).toEqual([]);
    }
    const optional = new Set(
      (fixture.optional ?? [])
        .filter((path) => path.startsWith('headers.'))
        .map((path) => path.slice('headers.'.length).toLowerCase()),
    );
    for (const [name, value] of Object.entries(recorded.headers ?? {})) {
      const header = name.toLowerCase();
      if (optional.has(header)) continue;
      if (header === 'content-type')
        expect(emulated.headers[header]?.split(';')[0], 'content-type').toBe(value.split(';')[0]);
      else expect(emulated.headers[header], `header ${header}`).toBeDefined();
    }
  });
});
