import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runImport, type ImportSource, type SourceUser } from '../src/import/importer.js';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, runCli, startStack, type Stack } from './helpers.js';

// Issue 24 (security round 3): odd source rows. A dump's user id at the end of PostgreSQL's integer must not leave
// the id sequence there (every later sign-up failed), and rows social-link cannot store (NUL characters, lone
// surrogates, too long, year 0000) are listed in the report instead of stopping the import with a stack trace.

const dir = mkdtempSync(join(tmpdir(), 'social-link-odd-rows-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface DumpUser {
  pk: number;
  username: string;
  password?: string;
  date_joined?: string;
  last_login?: string | null;
  links?: Array<{ provider: string; uid: string; extra_data?: Record<string, unknown>; created?: string }>;
}

/** A python-social-auth dumpdata file (JSON.stringify writes NULs and lone surrogates as \u escapes, as Django's serializer does). */
function dumpdata(name: string, users: DumpUser[]): string {
  const rows = users.flatMap((user) => [
    {
      model: 'auth.user',
      pk: user.pk,
      fields: {
        password: user.password ?? '!unusable',
        last_login: user.last_login ?? null,
        username: user.username,
        is_active: true,
        date_joined: user.date_joined ?? '2026-12-01T05:22:24.747Z',
      },
    },
    ...(user.links ?? []).map((link) => ({
      model: 'social_django.usersocialauth',
      pk: 0,
      fields: {
        user: user.pk,
        provider: link.provider,
        uid: link.uid,
        extra_data: JSON.stringify(link.extra_data ?? {}),
        created: link.created ?? '2026-12-01T05:22:24.747Z',
      },
    })),
  ]);
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(rows));
  return file;
}

const users = (stack: Stack) => stack.db.selectFrom('users').select(['id', 'username']).orderBy('id').execute();

describe.each(databaseKinds())('source ids at the end of the id sequence, imported into %s', (kind) => {
  let stack: Stack;
  beforeEach(async () => {
    stack = await startStack(kind);
  });
  afterEach(() => stack.close());
  const importPsa = (file: string, ...more: string[]) =>
    runCli(['import', 'psa', file, ...more], { DATABASE_URL: stack.databaseUrl });
  const reason = /^the source id is above 2000000000: kept, it would leave too few ids for new users/;

  it('a dump with user id 2147483647: sign-ups go on after the import (it gets a new id, reported, the same in the dry run)', async () => {
    const file = dumpdata('max-id', [
      { pk: 1, username: 'alice' },
      { pk: 7, username: 'bob' },
      { pk: 2147483647, username: 'max' },
    ]);
    const dry = await importPsa(file, '--json', '--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(await users(stack)).toEqual([]);
    const result = await importPsa(file, '--json');
    expect(result.status, result.stderr).toBe(0);

    // The sign-up that answered 500 for good once the import had set the sequence to its end.
    const first = await call(stack.api, 'POST', '/api/users/', {
      body: { username: 'newcomer', password: 'a newcomer password' },
    });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body.id).toBe(9);
    expect((await call(stack.api, 'POST', '/api/users/')).status).toBe(201);

    const expected = {
      keptIds: true,
      users: { imported: 3, invalid: [] },
      mapping: [{ source_id: '2147483647', user_id: 8, reason: expect.stringMatching(reason) }],
    };
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, ...expected });
    expect(JSON.parse(result.stdout)).toMatchObject({ dryRun: false, ...expected });
    expect((await users(stack)).slice(0, 3)).toEqual([
      { id: 1, username: 'alice' },
      { id: 7, username: 'bob' },
      { id: 8, username: 'max' },
    ]);
  });

  it("an id past PostgreSQL's integer (3000000000) gets a new one with its links, reported in the dry run and the text report", async () => {
    const file = dumpdata('bigint-id', [
      { pk: 1, username: 'alice' },
      { pk: 3000000000, username: 'bigint', links: [{ provider: 'facebook', uid: '10150000000000009' }] },
    ]);
    const expected = {
      keptIds: true,
      users: { imported: 2, invalid: [] },
      mapping: [{ source_id: '3000000000', user_id: 2, reason: expect.stringMatching(reason) }],
    };
    const dry = await importPsa(file, '--json', '--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, ...expected });
    expect(await users(stack)).toEqual([]);

    const result = await importPsa(file);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain('users: 2 imported, 0 imported before (ids kept but 1: below)');
    expect(result.stdout).toContain(
      '  3000000000 → 2 (the source id is above 2000000000: kept, it would leave too few ids for new users',
    );
    expect(await users(stack)).toEqual([
      { id: 1, username: 'alice' },
      { id: 2, username: 'bigint' },
    ]);
    expect(await stack.db.selectFrom('social_associations').select(['user_id', 'uid']).execute()).toEqual([
      { user_id: 2, uid: '10150000000000009' },
    ]);
    expect((await call(stack.api, 'POST', '/api/users/')).body.id).toBe(3);
  });
});

describe.each(databaseKinds())('rows social-link cannot store, imported into %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());
  const importPsa = (file: string, ...more: string[]) =>
    runCli(['import', 'psa', file, ...more], { DATABASE_URL: stack.databaseUrl });

  const file = () =>
    dumpdata('odd-rows', [
      {
        pk: 1,
        username: 'alice',
        password: 'pbkdf2_sha256$260000$ueXvOJ7IFPuDsBk2hZ6j4T$Sp5z7B3qSx50AYqybsLfrI0ddkZQBbMX2HS8bNfKXJE=',
      },
      { pk: 2, username: 'nul\u0000user' },
      { pk: 3, username: 'lone\ud800surrogate' },
      { pk: 4, username: 'yearzero', date_joined: '0000-01-01T00:00:00Z' },
      { pk: 5, username: 'lastyearzero', last_login: '0000-06-01 10:00:00' },
      // 12 characters, 216 once normalised (NFKC): past username_key's 200.
      { pk: 6, username: '\ufdfa'.repeat(12) },
      { pk: 7, username: 'nulhash', password: 'pbkdf2_sha256$1$salt\u0000$hash' },
      {
        pk: 8,
        username: 'links',
        links: [
          { provider: 'p'.repeat(65), uid: '1' },
          { provider: 'github', uid: 'u'.repeat(256) },
          { provider: 'github', uid: 'nul\u0000uid' },
          { provider: 'facebook', uid: '101', extra_data: { name: 'Bad\u0000Name' } },
          { provider: 'facebook', uid: '102', extra_data: { name: 'Lone \udc00 name' } },
          { provider: 'twitter', uid: '103', created: '0000-01-01T00:00:00Z' },
          { provider: 'twitter', uid: '783214', extra_data: { id: 783214, name: 'Fine 😀' } },
        ],
      },
      {
        pk: 9,
        username: 'only-bad-link',
        links: [{ provider: 'facebook', uid: '104', extra_data: { name: 'x\u0000' } }],
      },
    ]);

  it('are listed with the reason (dry run and --json too), the other rows imported, nothing half-written; exit 2', async () => {
    const source = file();
    const invalidUsers = [
      { source_id: '2', username: 'nul\u0000user', reason: 'the username holds a NUL character (\\u0000)' },
      {
        source_id: '3',
        username: 'lone\ud800surrogate',
        reason: 'the username holds a lone UTF-16 surrogate (not Unicode text)',
      },
      {
        source_id: '4',
        username: 'yearzero',
        reason: 'the date joined 0000-01-01T00:00:00.000Z is outside years 1 to 9999',
      },
      {
        source_id: '5',
        username: 'lastyearzero',
        reason: 'the last sign-in date 0000-06-01T10:00:00.000Z is outside years 1 to 9999',
      },
      {
        source_id: '6',
        username: '\ufdfa'.repeat(12),
        reason: 'the username is longer than 200 characters once normalised (NFKC)',
      },
      { source_id: '7', username: 'nulhash', reason: 'the password hash holds a NUL character (\\u0000)' },
    ];
    const invalidLinks = [
      {
        source_id: '8',
        provider: 'p'.repeat(65),
        uid: '1',
        reason: 'the provider name is longer than 64 characters (65)',
      },
      {
        source_id: '8',
        provider: 'github',
        uid: `${'u'.repeat(100)}… (256 characters)`,
        reason: 'the uid is longer than 255 characters (256)',
      },
      { source_id: '8', provider: 'github', uid: 'nul\u0000uid', reason: 'the uid holds a NUL character (\\u0000)' },
      { source_id: '8', provider: 'facebook', uid: '101', reason: 'extra_data.name holds a NUL character (\\u0000)' },
      {
        source_id: '8',
        provider: 'facebook',
        uid: '102',
        reason: 'extra_data.name holds a lone UTF-16 surrogate (not Unicode text)',
      },
      {
        source_id: '8',
        provider: 'twitter',
        uid: '103',
        reason: 'the link date 0000-01-01T00:00:00.000Z is outside years 1 to 9999',
      },
      { source_id: '9', provider: 'facebook', uid: '104', reason: 'extra_data.name holds a NUL character (\\u0000)' },
    ];
    const expected = {
      users: { imported: 3, conflicts: [], invalid: invalidUsers },
      links: { imported: 1, conflicts: [], invalid: invalidLinks },
      noWayIn: ['only-bad-link'],
    };

    const dry = await importPsa(source, '--json', '--dry-run');
    expect(dry.status, dry.stderr).toBe(2);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, ...expected });
    expect(await users(stack)).toEqual([]);

    // The text report: no raw NUL or lone surrogate for the terminal, no stack.
    const text = await importPsa(source, '--dry-run');
    expect(text.status, text.stderr).toBe(2);
    expect(text.stderr).toBe('');
    expect(text.stdout).toContain(
      'users NOT imported (rows social-link cannot store as they are: correct them in the source and run the import again',
    );
    expect(text.stdout).toContain('  nul\\u0000user (2): the username holds a NUL character (\\u0000)');
    expect(text.stdout).toContain('  lone\\ud800surrogate (3): the username holds a lone UTF-16 surrogate');
    expect(text.stdout).toContain(
      'links NOT imported (social-link cannot store them as they are; their users were imported without them',
    );
    expect(text.stdout).toContain('  github:nul\\u0000uid of 8: the uid holds a NUL character');
    expect(text.stdout).not.toMatch(/\u0000|\p{Surrogate}/u);
    expect(await users(stack)).toEqual([]);

    const result = await importPsa(source, '--json');
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.status, result.stderr).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ dryRun: false, ...expected });
    // Nothing of the odd rows was written: no user, no record of them, no link but the good one.
    expect(await users(stack)).toEqual([
      { id: 1, username: 'alice' },
      { id: 8, username: 'links' },
      { id: 9, username: 'only-bad-link' },
    ]);
    expect(
      (await stack.db.selectFrom('imported_users').select('source_id').orderBy('source_id').execute()).map(
        (row) => row.source_id,
      ),
    ).toEqual(['1', '8', '9']);
    const links = await stack.db
      .selectFrom('social_associations')
      .select(['user_id', 'provider', 'uid', 'extra_data'])
      .execute();
    expect(links.map((link) => [link.user_id, link.provider, link.uid])).toEqual([[8, 'twitter', '783214']]);
    expect(JSON.stringify(links[0]!.extra_data)).toContain('Fine 😀');
    expect(
      (await call(stack.api, 'POST', '/api/token/', { body: { username: 'alice', password: 'alice-password-1' } }))
        .status,
    ).toBe(200);

    // Not recorded: another run lists the odd users again (and would import them, corrected in the source).
    const again = await importPsa(source, '--json');
    expect(again.status, again.stderr).toBe(2);
    expect(JSON.parse(again.stdout)).toMatchObject({
      users: { imported: 0, unchanged: 3, invalid: invalidUsers },
      links: { imported: 0, invalid: [] },
    });
  });
});

describe.each(databaseKinds())(
  'a row the database refuses although the checks let it through, imported into %s',
  (kind) => {
    it("leaves out that user only (listed with the database's reason), its batch imported, in a dry run too", async () => {
      const stack = await startStack(kind);
      try {
        // What no check foresaw, played by a trigger.
        if (kind === 'postgres') {
          await sql`create function refuse_user() returns trigger language plpgsql as $$ begin if new.username = 'refused' then raise exception 'refused by a trigger' using errcode = 'check_violation'; end if; return new; end $$`.execute(
            stack.db,
          );
          await sql`create trigger refuse_user before insert on users for each row execute function refuse_user()`.execute(
            stack.db,
          );
        } else {
          await sql`create trigger refuse_user before insert on users when new.username = 'refused' begin select raise(abort, 'refused by a trigger'); end`.execute(
            stack.db,
          );
        }
        const account = (id: number, username: string): SourceUser => ({
          sourceId: `s${id}`,
          username,
          passwordHash: null,
          createdAt: null,
          lastLoginAt: null,
          active: true,
          links: [{ provider: 'github', uid: `${id}`, extraData: {} }],
        });
        const source: ImportSource = {
          name: 'test',
          provider: (name) => name,
          notKept: [],
          async *batches() {
            yield [account(1, 'before'), account(2, 'refused'), account(3, 'after')];
          },
        };
        const storage = new Storage(stack.db);
        const expected = {
          users: {
            imported: 2,
            invalid: [
              {
                source_id: 's2',
                username: 'refused',
                reason: expect.stringMatching(/^the database refused it: .*refused by a trigger/),
              },
            ],
          },
          links: { imported: 2, skipped: 1 },
        };
        expect(await runImport(storage, source, { dryRun: true, batchSize: 500 })).toMatchObject({
          dryRun: true,
          ...expected,
        });
        expect(await users(stack)).toEqual([]);
        expect(await runImport(storage, source, { dryRun: false, batchSize: 500 })).toMatchObject({
          dryRun: false,
          ...expected,
        });
        expect((await users(stack)).map((user) => user.username)).toEqual(['before', 'after']);
        expect(
          (await stack.db.selectFrom('imported_users').select('source_id').orderBy('source_id').execute()).map(
            (row) => row.source_id,
          ),
        ).toEqual(['s1', 's3']);
        expect(
          (await stack.db.selectFrom('social_associations').select('uid').orderBy('uid').execute()).map(
            (row) => row.uid,
          ),
        ).toEqual(['1', '3']);
      } finally {
        await stack.close();
      }
    });
  },
);
