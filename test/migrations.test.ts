import { spawnSync } from 'node:child_process';
import { Migrator, sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../src/auth/passwords.js';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { migrationProvider } from '../src/store/migrations.js';
import { Storage } from '../src/store/storage.js';
import { BUILT_CLI, databaseKinds, freshDatabase } from './helpers.js';

const cli = (args: string[], env: Record<string, string>) =>
  spawnSync(process.execPath, [BUILT_CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });

// Migrations of databases that hold users already: nothing is lost, and what cannot be made to fit is reported.

describe.each(databaseKinds())('migration 0006 (usernames without case) on %s', (kind) => {
  const drops: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const drop of drops) await drop();
  });

  it('keeps users whose names differ only in case, each signing in with its own spelling, and lists the newer', async () => {
    const database = await freshDatabase(kind);
    drops.push(database.drop);
    const db = openDatabase(database.url);
    const migrated = await new Migrator({ db, provider: migrationProvider }).migrateTo('0005_audit_bigint');
    expect(migrated.error).toBeUndefined();
    const at = new Date().toISOString();
    const hash = await hashPassword('correct horse battery');
    // Made before the key: two spellings of one name, a compatibility form (the "ﬁ" ligature), host users.
    const names: Array<[string, string | null]> = [
      ['rtalice', null],
      ['RTAlice', null],
      ['ﬁle_owner', null],
      ['FILE_OWNER', null],
      ['carol', null],
      ['app:A1', 'A1'],
      ['app:a1', 'a1'],
    ];
    for (const [username, external] of names) {
      await sql`insert into users (username, password_hash, external_id, created_at, updated_at) values (${username}, ${hash}, ${external}, ${at}, ${at})`.execute(
        db,
      );
    }

    expect(await migrateToLatest(db)).toContain('0006_username_key');
    const storage = new Storage(db);
    const ids = Object.fromEntries((await storage.users.list(100)).map((user) => [user.username, user.id]));
    expect(await storage.users.caseCollisions()).toEqual([
      { id: ids.RTAlice, username: 'RTAlice', sameAs: { id: ids.rtalice, username: 'rtalice' } },
      { id: ids.FILE_OWNER, username: 'FILE_OWNER', sameAs: { id: ids['ﬁle_owner'], username: 'ﬁle_owner' } },
    ]);
    // Each keeps its account; another spelling finds the oldest.
    expect((await storage.users.findByUsername('RTAlice'))?.id).toBe(ids.RTAlice);
    expect((await storage.users.findByUsername('rtalice'))?.id).toBe(ids.rtalice);
    expect((await storage.users.findByUsername('RtAlIcE'))?.id).toBe(ids.rtalice);
    expect((await storage.users.findByUsername('file_owner'))?.id).toBe(ids['ﬁle_owner']);
    expect((await storage.users.findByUsername('Carol'))?.id).toBe(ids.carol);
    // The host's ids stay case-sensitive: no collision there.
    expect(await storage.users.externalIdOf((await storage.users.findExternal('A1'))!.id)).toBe('A1');
    expect(await storage.users.externalIdOf((await storage.users.findExternal('a1'))!.id)).toBe('a1');
    // From now on a name taken but for case is refused by the database itself.
    await expect(storage.users.create('CAROL', null)).rejects.toMatchObject({
      code: expect.stringMatching(/^(23505|SQLITE_CONSTRAINT_UNIQUE)$/),
    });

    // Operators are told, and can end a collision by renaming.
    const env = { DATABASE_URL: database.url };
    const migrate = cli(['migrate'], env);
    expect(migrate.status).toBe(0);
    expect(migrate.stderr).toContain(
      `user ${ids.RTAlice} "RTAlice" is the same name as user ${ids.rtalice} "rtalice" but for case`,
    );
    expect(cli(['users', 'rename', String(ids.RTAlice), 'RTALICE'], env).stderr).toContain('taken');
    expect(cli(['users', 'rename', String(ids.RTAlice), 'bad name!'], env).status).toBe(1);
    expect(cli(['users', 'rename', String(ids.RTAlice), 'rt_alice_2'], env).stdout).toContain('is now rt_alice_2');
    expect(
      cli(['users', 'collisions', '--json'], env)
        .stdout.trim()
        .split('\n')
        .map((line) => JSON.parse(line).username),
    ).toEqual(['FILE_OWNER']);
    expect((await storage.users.findByUsername('RT_Alice_2'))?.id).toBe(ids.RTAlice);
    // A held-back key is no name; when the name's holder goes, the held-back user takes its key.
    expect(await storage.users.findByUsername(`#${ids.FILE_OWNER}:file_owner`)).toBeUndefined();
    expect(await storage.users.delete(ids['ﬁle_owner']!)).toBe(true);
    expect(await storage.users.caseCollisions()).toEqual([]);
    await expect(storage.users.create('File_Owner', null)).rejects.toMatchObject({
      code: expect.stringMatching(/^(23505|SQLITE_CONSTRAINT_UNIQUE)$/),
    });
    expect((await storage.users.findByUsername('file_OWNER'))?.id).toBe(ids.FILE_OWNER);
    await db.destroy();
  });
});

describe.skipIf(!databaseKinds().includes('postgres'))('migration 0009 (refresh token ids) on postgres', () => {
  it('refreshes past 2^31 rows: the id is a bigint', async () => {
    const database = await freshDatabase('postgres');
    const db = openDatabase(database.url);
    try {
      await migrateToLatest(db);
      await sql`select setval(pg_get_serial_sequence('refresh_tokens', 'id'), 2147483650)`.execute(db);
      const storage = new Storage(db);
      const user = await storage.users.create('many_refreshes', null);
      const at = new Date(Date.now() + 60_000).toISOString();
      await storage.sessions.start(
        user.id,
        { id: '00000000-0000-4000-8000-000000000001', refreshTokenHash: 'a'.repeat(64), refreshExpiresAt: at },
        { event: 'user_created', userId: user.id },
        null,
      );
      await storage.sessions.addRefreshToken('00000000-0000-4000-8000-000000000001', 'b'.repeat(64), at);
      const ids = await db.selectFrom('refresh_tokens').select('id').execute();
      expect(ids.map((row) => Number(row.id)).every((id) => id > 2 ** 31)).toBe(true);
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});

describe.each(databaseKinds())('the schema on %s', (kind) => {
  it('indexes every foreign key by its column: deleting a user never reads a whole table to find what refers to it', async () => {
    // Both databases find the referring rows of a deleted user by the referring column (ON DELETE CASCADE / SET
    // NULL): with no index leading with it, by a read of the whole table at each deletion (migration 0026).
    const database = await freshDatabase(kind, { migrated: true });
    const db = openDatabase(database.url);
    try {
      let keys: Array<{ table: string; column: string; indexed: boolean }>;
      if (kind === 'postgres') {
        const rows = await sql<{ table: string; column: string; indexed: boolean }>`
          select c.conrelid::regclass::text as table, a.attname as column,
            exists (select 1 from pg_index i where i.indrelid = c.conrelid and i.indkey[0] = c.conkey[1]) as indexed
          from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
          where c.contype = 'f'`.execute(db);
        keys = rows.rows;
      } else {
        keys = [];
        const tables = await sql<{ name: string }>`
          select name from sqlite_master where type = 'table' and name not like 'sqlite_%'`.execute(db);
        for (const { name: table } of tables.rows) {
          const foreign = await sql<{ from: string }>`select * from pragma_foreign_key_list(${table})`.execute(db);
          const leading = new Set<string>();
          const indexes = await sql<{ name: string }>`select name from pragma_index_list(${table})`.execute(db);
          for (const { name } of indexes.rows) {
            const columns = await sql<{ seqno: number; name: string }>`
              select seqno, name from pragma_index_info(${name})`.execute(db);
            const first = columns.rows.find((column) => column.seqno === 0);
            if (first) leading.add(first.name);
          }
          for (const { from } of foreign.rows) keys.push({ table, column: from, indexed: leading.has(from) });
        }
      }
      expect(keys.length).toBeGreaterThanOrEqual(9);
      expect(keys.filter((key) => !key.indexed)).toEqual([]);
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});
