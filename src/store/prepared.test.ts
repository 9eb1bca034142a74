import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase } from './database.js';
import { prepared } from './prepared.js';

describe('prepared()', () => {
  it("runs the SQL compiled once with each call's values, in their places", async () => {
    const db = openDatabase('sqlite::memory:');
    await migrateToLatest(db);
    let built = 0;
    const insert = prepared((kdb, username: string, key: string, at: string) => {
      built++;
      return kdb
        .insertInto('users')
        .values({ username, username_key: key, password_hash: null, created_at: at, updated_at: at });
    });
    const byKey = prepared((kdb, key: string) =>
      kdb.selectFrom('users').select(['username', 'created_at']).where('username_key', '=', key),
    );
    await insert(db, 'Ann', 'ann', '2026-01-01T00:00:00.000Z');
    await insert(db, 'Bob', 'bob', '2026-01-02T00:00:00.000Z');
    expect(built).toBe(1);
    expect((await byKey(db, 'bob')).rows).toEqual([{ username: 'Bob', created_at: '2026-01-02T00:00:00.000Z' }]);
    expect((await byKey(db, 'nobody')).rows).toEqual([]);
    await db.destroy();
  });

  it('refuses a query that does not take an argument as a parameter', async () => {
    const db = openDatabase('sqlite::memory:');
    const inlined = prepared((kdb, name: string) =>
      kdb
        .selectFrom('users')
        .select('id')
        .where(sql.raw(`username = '${name}'`) as never),
    );
    await expect(inlined(db, 'x')).rejects.toThrow(/not a parameter/);
    await db.destroy();
  });

  it('refuses a query that drops an argument while it uses another twice', async () => {
    const db = openDatabase('sqlite::memory:');
    await migrateToLatest(db);
    // Two parameters for two arguments, but both are `at`: `username` was forgotten.
    const forgotten = prepared((kdb, _username: string, at: string) =>
      kdb
        .insertInto('users')
        .values({ username: 'fixed', username_key: 'fixed', password_hash: null, created_at: at, updated_at: at }),
    );
    await expect(forgotten(db, 'Ann', '2026-01-01T00:00:00.000Z')).rejects.toThrow(/not a parameter/);
    await db.destroy();
  });
});
