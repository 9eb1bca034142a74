import { Kysely, sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { migrateToLatest, openDatabase } from './database.js';
import { prepared } from './prepared.js';
import { Storage } from './storage.js';

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

  it("inside a SQLite transaction, runs on the connection the transaction holds: Kysely's answer, its rollback", async () => {
    const db = openDatabase('sqlite::memory:');
    await migrateToLatest(db);
    const storage = new Storage(db);
    const insert = prepared((kdb, username: string, key: string) =>
      kdb
        .insertInto('users')
        .values({ username, username_key: key, password_hash: null, created_at: 'x', updated_at: 'x' }),
    );
    const byKey = prepared((kdb, key: string) =>
      kdb.selectFrom('users').select('username').where('username_key', '=', key),
    );
    const throughKysely = await insert(db, 'Ann', 'ann');
    const viaKysely = vi.spyOn(Kysely.prototype, 'executeQuery');
    const inside = await storage.transaction(async (trx) => ({
      inserted: await insert(trx.db, 'Bob', 'bob'),
      read: await byKey(trx.db, 'bob'),
    }));
    expect(viaKysely).not.toHaveBeenCalled();
    viaKysely.mockRestore();
    expect(inside.inserted).toEqual({ ...throughKysely, insertId: throughKysely.insertId! + 1n });
    expect(inside.read.rows).toEqual([{ username: 'Bob' }]);
    // A failing transaction takes back what ran on its connection.
    await expect(
      storage.transaction(async (trx) => {
        await insert(trx.db, 'Cy', 'cy');
        throw new Error('step failed');
      }),
    ).rejects.toThrow('step failed');
    expect((await byKey(db, 'cy')).rows).toEqual([]);
    // Once it has ended, its Kysely refuses: a prepared statement no longer runs on the connection, nor through Kysely.
    let kept: Storage | undefined;
    await storage.transaction(async (trx) => {
      kept = trx;
    });
    await expect(byKey(kept!.db, 'bob')).rejects.toThrow('used after the transaction ended');
    await db.destroy();
  });
});
