import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateSocialLink } from '../src/embed.js';
import { openDatabase } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';

describe("upgrading the embedding plugin from its earlier table in the host's database", () => {
  const dir = mkdtempSync(join(tmpdir(), 'embed-legacy-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("copies every link, with the host's user ids, once however often it runs", async () => {
    const host = new Kysely<any>({ dialect: new SqliteDialect({ database: new SQLite(join(dir, 'host.sqlite')) }) }); // eslint-disable-line @typescript-eslint/no-explicit-any
    await host.schema
      .createTable('social_link_associations')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('provider', 'text')
      .addColumn('uid', 'text')
      .addColumn('user_id', 'text')
      .addColumn('extra_data', 'text')
      .addColumn('provider_tokens', 'text')
      .addColumn('created_at', 'text')
      .execute();
    await host
      .insertInto('social_link_associations')
      .values([
        {
          provider: 'facebook',
          uid: '10150000000000001',
          user_id: 'm_ada',
          extra_data: '{"name":"Ada"}',
          provider_tokens: null,
          created_at: '2026-01-01T00:00:00.000Z',
        },
        {
          provider: 'google',
          uid: '1234',
          user_id: 'm_ada',
          extra_data: '{}',
          provider_tokens: null,
          created_at: '2026-01-01T00:00:00.000Z',
        },
        {
          provider: 'twitter',
          uid: '6253282',
          user_id: 'm_bob',
          extra_data: '{}',
          provider_tokens: null,
          created_at: '2026-01-01T00:00:00.000Z',
        },
      ])
      .execute();
    const database = `sqlite:${join(dir, 'social-link.sqlite')}`;
    await migrateSocialLink(database, { legacyFrom: host });
    await migrateSocialLink(database, { legacyFrom: host });
    await host.destroy();

    const db = openDatabase(database);
    const storage = new Storage(db);
    const facebook = await storage.links.findWithUser('facebook', '10150000000000001');
    expect(facebook?.association.extraData).toEqual({ name: 'Ada' });
    expect(await storage.users.externalIdOf(facebook!.user.id)).toBe('m_ada');
    expect((await storage.links.ofUser(facebook!.user.id)).map((link) => link.provider)).toEqual([
      'facebook',
      'google',
    ]);
    expect(await storage.users.externalIdOf((await storage.links.find('twitter', '6253282'))!.userId)).toBe('m_bob');
    expect(await storage.links.list({ limit: 100 })).toHaveLength(3);
    await db.destroy();
  });
});
