import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, freshDatabase, runCli, startStack, type Stack } from './helpers.js';

// social-link import, from the real python-social-auth database of the original design (../shared/fixtures/
// python-social-auth: its README lists users, passwords and links), Firebase's export and Supabase's tables
// (test/fixtures/imports/, with their sources); then the people sign in through HTTP, on the emulator.

/** The text dumps of the original design's database are in the repository; its SQLite file (a database) is read
 * from the shared test data when present: SOCIAL_LINK_SHARED_DIR, ../shared beside the checkout, or /work/shared. */
const PSA = new URL('./fixtures/imports/psa/', import.meta.url).pathname;
const SHARED_SQLITE = [
  process.env.SOCIAL_LINK_SHARED_DIR,
  new URL('../../shared/', import.meta.url).pathname,
  '/work/shared/',
]
  .map((dir) => dir && `${dir}/fixtures/python-social-auth/psa.sqlite`)
  .find((file) => file && existsSync(file));
if (!SHARED_SQLITE)
  console.warn(
    'test/import.test.ts: the shared psa.sqlite is not found (set SOCIAL_LINK_SHARED_DIR): its import is not tested',
  );
const FIREBASE = new URL('./fixtures/imports/firebase/', import.meta.url).pathname;
const SUPABASE = new URL('./fixtures/imports/supabase/', import.meta.url).pathname;
const FIREBASE_HASH = [
  '--hash-key',
  'jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==',
  '--salt-separator',
  'Bw==',
  '--rounds',
  '8',
  '--mem-cost',
  '14',
];

/** A PostgreSQL database loaded from a SQL file with psql (pg_dump's COPY blocks need it). */
async function loadedPostgres(file: string) {
  const database = await freshDatabase('postgres');
  const loaded = spawnSync('psql', ['-q', '-v', 'ON_ERROR_STOP=1', '-d', database.url, '-f', file], {
    encoding: 'utf8',
  });
  if (loaded.status !== 0) throw new Error(`psql -f ${file}: ${loaded.stderr}`);
  return database;
}

const basic = (username: string, password: string) =>
  `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
const rows = async (stack: Stack) => ({
  users: await stack.db
    .selectFrom('users')
    .select(['id', 'username', 'created_at', 'last_login_at'])
    .orderBy('id')
    .execute(),
  links: await stack.db
    .selectFrom('social_associations')
    .select(['user_id', 'provider', 'uid', 'extra_data'])
    .orderBy('id')
    .execute(),
});

/** The python-social-auth sources: its SQLite file, its dumpdata JSON, and (with TEST_DATABASE_URL) its PostgreSQL dump. */
const psaSources: Array<[string, () => Promise<{ location: string; drop(): Promise<void> }>]> = [
  ...(SHARED_SQLITE
    ? [
        ['its SQLite file', async () => ({ location: `sqlite:${SHARED_SQLITE}`, drop: async () => {} })] as [
          string,
          () => Promise<{ location: string; drop(): Promise<void> }>,
        ],
      ]
    : []),
  ['its dumpdata JSON', async () => ({ location: `${PSA}psa-dumpdata.json`, drop: async () => {} })],
  ...(process.env.TEST_DATABASE_URL
    ? [
        [
          'its PostgreSQL database',
          async () => {
            const database = await loadedPostgres(`${PSA}psa-postgres.sql`);
            return { location: database.url, drop: database.drop };
          },
        ] as [string, () => Promise<{ location: string; drop(): Promise<void> }>],
      ]
    : []),
];

describe.each(databaseKinds())('import psa into %s', (kind) => {
  describe.each(psaSources)('from %s', (_name, open) => {
    let stack: Stack;
    let source: { location: string; drop(): Promise<void> };
    beforeAll(async () => {
      stack = await startStack(kind, { SOCIAL_LINK_COMPAT_PREFIX: '/myapp' });
      source = await open();
    });
    afterAll(async () => {
      await stack.close();
      await source.drop();
    });
    const importPsa = (...more: string[]) =>
      runCli(['import', 'psa', source.location, '--json', ...more], { DATABASE_URL: stack.databaseUrl });

    it('a dry run writes nothing; the import keeps ids, drops tokens, reports carol; the people sign in; a second run changes nothing', async () => {
      const dry = await importPsa('--dry-run');
      expect(dry.status, dry.stderr).toBe(0);
      expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, users: { imported: 4 } });
      expect((await rows(stack)).users).toEqual([]);

      const first = await importPsa();
      expect(first.status, first.stderr).toBe(0);
      const report = JSON.parse(first.stdout);
      expect(report).toMatchObject({
        keptIds: true,
        users: { imported: 4, unchanged: 0, conflicts: [] },
        links: { imported: 3, conflicts: [], unknownProviders: {}, keyedByEmail: [] },
        noWayIn: ['carol'],
        unverifiableHashes: {},
      });
      // Facebook's access_token and token_type; Twitter's access_token (its oauth_token and secret inside it).
      expect(report.tokensDropped).toBe(4);

      const imported = await rows(stack);
      expect(imported.users.map((user) => [user.id, user.username])).toEqual([
        [1, 'alice'],
        [2, 'bob'],
        [3, 'carol'],
        [4, 'admin'],
      ]);
      expect(new Date(imported.users[0]!.created_at as unknown as string).toISOString()).toBe(
        '2026-12-01T05:22:24.747Z',
      );
      expect(new Date(imported.users[1]!.last_login_at as unknown as string).toISOString()).toBe(
        '2026-12-01T05:22:28.485Z',
      );
      expect(imported.links.map((link) => [link.user_id, link.provider, link.uid])).toEqual([
        [1, 'facebook', '10150000000000001'],
        [1, 'twitter', '783214'],
        [2, 'twitter', '6253282'],
      ]);
      // No provider token in clear; the profile facts stay.
      const stored = JSON.stringify(imported.links.map((link) => link.extra_data));
      expect(stored).not.toMatch(/facebook-23e2dd6f|twitter-338f76c4|oauth_token|access_token/);
      expect(stored).toContain('auth_time');

      // alice's Django password works, and is upgraded to ours.
      const alice = await call(stack.api, 'POST', '/api/token/', {
        body: { username: 'alice', password: 'alice-password-1' },
      });
      expect(alice.status).toBe(200);
      expect(alice.body.id).toBe(1);
      const hash = await stack.db
        .selectFrom('users')
        .select('password_hash')
        .where('id', '=', 1)
        .executeTakeFirstOrThrow();
      expect(hash.password_hash).toMatch(/^scrypt\$/);
      expect(
        (await call(stack.api, 'POST', '/api/token/', { body: { username: 'alice', password: 'alice-password-1' } }))
          .status,
      ).toBe(200);
      expectError(
        await call(stack.api, 'POST', '/api/token/', { body: { username: 'bob', password: 'alice-password-1' } }),
        401,
        'invalid_credentials',
      );
      // carol's unusable password stays unusable.
      expectError(
        await call(stack.api, 'POST', '/api/token/', { body: { username: 'carol', password: '' } }),
        401,
        'invalid_credentials',
      );
      expectError(
        await call(stack.api, 'POST', '/api/token/', {
          body: { username: 'carol', password: '!szp0MexB18QUET2jaUd3tDRGz0uGcXNVuGk0T8M8' },
        }),
        401,
        'invalid_credentials',
      );

      // A Facebook token for alice's uid finds alice; a Twitter token for 6253282 finds bob.
      const facebook = await stack.emulator.mintFacebookToken({ user: { id: '10150000000000001' } });
      expect(
        (await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: facebook.access_token } })).body,
      ).toMatchObject({ id: 1, username: 'alice' });
      const twitter = await stack.emulator.mintTwitterToken({ user: { id: '6253282' } });
      expect(
        (
          await call(stack.api, 'POST', '/api/auth/twitter/', {
            body: { access_token: twitter.access_token, access_token_secret: twitter.access_token_secret },
          })
        ).body,
      ).toMatchObject({ id: 2, username: 'bob' });

      const before = await rows(stack);
      const second = await importPsa();
      expect(JSON.parse(second.stdout)).toMatchObject({
        users: { imported: 0, unchanged: 4 },
        links: { imported: 0, conflicts: [] },
      });
      expect(await rows(stack)).toEqual(before);
    });

    it("the original design's routes answer a released app exactly (SOCIAL_LINK_COMPAT_PREFIX)", async () => {
      // auth, as a form post: {"id", "username"} (and our tokens).
      const facebook = await stack.emulator.mintFacebookToken({ user: { id: '10150000000000001' } });
      const auth = await fetch(`${stack.api}/myapp/api/auth/facebook/`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `access_token=${facebook.access_token}`,
      });
      expect(auth.status).toBe(200);
      expect(await auth.json()).toMatchObject({
        id: 1,
        username: 'alice',
        access_token: expect.any(String),
        refresh_token: expect.any(String),
      });

      // associate with HTTP Basic: {"success": true}.
      const twitter = await stack.emulator.mintTwitterToken({});
      const associate = await fetch(`${stack.api}/myapp/api/associate/twitter/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic('bob', 'bob-password-1') },
        body: JSON.stringify({ access_token: twitter.access_token, access_token_secret: twitter.access_token_secret }),
      });
      expect(associate.status).toBe(200);
      expect(await associate.json()).toEqual({ success: true });

      // An unknown account: 404 {"errors": "User Not Found"}; a bad token 400 "Error with social authentication".
      const stranger = await stack.emulator.mintFacebookToken({});
      const notFound = await fetch(`${stack.api}/myapp/api/auth/facebook/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ access_token: stranger.access_token }),
      });
      expect(notFound.status).toBe(404);
      expect(await notFound.json()).toMatchObject({ errors: 'User Not Found' });
      const bad = await fetch(`${stack.api}/myapp/api/auth/facebook/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ access_token: 'garbage' }),
      });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ errors: 'Error with social authentication' });

      // Wrong Basic password, or none: 401.
      const wrong = await fetch(`${stack.api}/myapp/api/associate/twitter/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic('bob', 'nope') },
        body: '{"access_token":"x","access_token_secret":"y"}',
      });
      expect(wrong.status).toBe(401);
      const none = await fetch(`${stack.api}/myapp/api/associate/twitter/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"access_token":"x","access_token_secret":"y"}',
      });
      expect(none.status).toBe(401);
      // python-social-auth's backend names.
      const google = await stack.emulator.mintIdToken('google', {});
      expect(
        (
          await fetch(`${stack.api}/myapp/api/auth/google-oauth2/`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ id_token: google.id_token }),
          })
        ).status,
      ).toBe(404);
    });

    it('a user deleted since, or a link removed since, is not brought back by another run', async () => {
      const bob = await call(stack.api, 'POST', '/api/token/', {
        body: { username: 'bob', password: 'bob-password-1' },
      });
      expect((await call(stack.api, 'DELETE', '/api/me/', { token: bob.body.access_token })).status).toBe(204);
      await stack.db.deleteFrom('social_associations').where('uid', '=', '783214').execute();
      const again = await importPsa();
      expect(JSON.parse(again.stdout)).toMatchObject({
        users: { imported: 0, unchanged: 3, deletedSince: 1 },
        links: { imported: 0 },
      });
      const after = await rows(stack);
      expect(after.users.map((user) => user.username)).toEqual(['alice', 'carol', 'admin']);
      expect(after.links.map((link) => [link.provider, link.uid])).toEqual([['facebook', '10150000000000001']]);
    });
  });

  it('a target with a user of the same name: reported, never overwritten; ids are mapped', async () => {
    const stack = await startStack(kind);
    try {
      const bob = await call(stack.api, 'POST', '/api/users/', {
        body: { username: 'Bob', password: 'the-other-bob-1' },
      });
      expect(bob.status).toBe(201);
      const result = await runCli(['import', 'psa', `${PSA}psa-dumpdata.json`, '--json'], {
        DATABASE_URL: stack.databaseUrl,
      });
      expect(result.status, 'conflicts exit 2').toBe(2);
      const report = JSON.parse(result.stdout);
      expect(report.keptIds).toBe(false);
      expect(report.users.conflicts).toEqual([
        { source_id: '2', username: 'bob', reason: `the username is taken by user ${bob.body.id}` },
      ]);
      expect(report.mapping.map((entry: { source_id: string }) => entry.source_id)).toEqual(['1', '3', '4']);
      // The other Bob keeps his password, and bob's Twitter account was not given to him.
      expect(
        (await call(stack.api, 'POST', '/api/token/', { body: { username: 'Bob', password: 'the-other-bob-1' } }))
          .status,
      ).toBe(200);
      expect(
        await stack.db.selectFrom('social_associations').select('uid').where('uid', '=', '6253282').execute(),
      ).toEqual([]);
    } finally {
      await stack.close();
    }
  });
});

describe.each(databaseKinds())('import firebase into %s', (kind) => {
  it("users keep their Firebase passwords (Firebase's scrypt) and their Google account; a disabled one is not imported", async () => {
    const stack = await startStack(kind);
    try {
      const refused = await runCli(['import', 'firebase', `${FIREBASE}export.json`], {
        DATABASE_URL: stack.databaseUrl,
      });
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain('hash parameters');
      const result = await runCli(['import', 'firebase', `${FIREBASE}export.json`, '--json', ...FIREBASE_HASH], {
        DATABASE_URL: stack.databaseUrl,
      });
      expect(result.status, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report.users.imported).toBe(3);
      expect(report.users.inactive).toHaveLength(1);
      const exported = (await import(`${FIREBASE}export.json`, { with: { type: 'json' } })).default as {
        users: Array<{
          email?: string;
          passwordHash?: string;
          disabled?: boolean;
          providerUserInfo?: Array<{ providerId: string; rawId: string }>;
        }>;
      };
      const withPassword = exported.users.find((user) => user.passwordHash && !user.disabled)!;
      const signedIn = await call(stack.api, 'POST', '/api/token/', {
        body: { username: withPassword.email!, password: 'user1password' },
      });
      expect(signedIn.status).toBe(200);
      expectError(
        await call(stack.api, 'POST', '/api/token/', {
          body: { username: withPassword.email!, password: 'user2password' },
        }),
        401,
        'invalid_credentials',
      );
      const googleUser = exported.users.find((user) =>
        user.providerUserInfo?.some((info) => info.providerId === 'google.com'),
      )!;
      const sub = googleUser.providerUserInfo!.find((info) => info.providerId === 'google.com')!.rawId;
      const google = await call(stack.api, 'POST', '/api/auth/google/', {
        body: { id_token: (await stack.emulator.mintIdToken('google', { sub })).id_token },
      });
      expect(google.status).toBe(200);
      expect(google.body.username).toBe(googleUser.email!.toLowerCase());
    } finally {
      await stack.close();
    }
  });
});

describe.runIf(process.env.TEST_DATABASE_URL).each(databaseKinds())('import supabase into %s', (kind) => {
  let source: Awaited<ReturnType<typeof loadedPostgres>>;
  beforeAll(async () => {
    source = await loadedPostgres(`${SUPABASE}schema.sql`);
  });
  afterAll(() => source.drop());

  it('users keep their Supabase (bcrypt) passwords and their social identities; a banned one is not imported', async () => {
    const stack = await startStack(kind);
    try {
      const result = await runCli(['import', 'supabase', source.url, '--json'], { DATABASE_URL: stack.databaseUrl });
      expect(result.status, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report.users).toMatchObject({ imported: 3, conflicts: [] });
      expect(report.users.inactive).toHaveLength(1);
      expect(
        (await call(stack.api, 'POST', '/api/token/', { body: { username: 'alice@example.com', password: 'allmine' } }))
          .status,
      ).toBe(200);
      expect(
        (await call(stack.api, 'POST', '/api/token/', { body: { username: 'carol@example.com', password: 'abc' } }))
          .status,
      ).toBe(200);
      const google = await stack.db
        .selectFrom('social_associations')
        .select(['uid', 'user_id'])
        .where('provider', '=', 'google')
        .executeTakeFirstOrThrow();
      const signedIn = await call(stack.api, 'POST', '/api/auth/google/', {
        body: { id_token: (await stack.emulator.mintIdToken('google', { sub: google.uid })).id_token },
      });
      expect(signedIn.body).toMatchObject({ id: google.user_id, username: 'bob.example@gmail.com' });
      expect(
        await stack.db.selectFrom('social_associations').select('provider').where('provider', '=', 'email').execute(),
      ).toEqual([]);
    } finally {
      await stack.close();
    }
  });
});
