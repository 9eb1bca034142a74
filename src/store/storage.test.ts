import type { Kysely } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { migrateToLatest, openDatabase } from './database.js';
import type { Database } from './schema.js';
import { Storage } from './storage.js';

const at = '2026-01-01T00:00:00.000Z';
const addUser = (storage: Storage, name: string) =>
  storage.db
    .insertInto('users')
    .values({ username: name, username_key: name, password_hash: null, created_at: at, updated_at: at })
    .execute();
const usernames = async (db: Kysely<Database>) =>
  (await db.selectFrom('users').select('username').orderBy('id').execute()).map((row) => row.username);

describe('Storage.transaction on SQLite', () => {
  it("holds the driver's lock for the whole transaction: another transaction and a plain query wait for it", async () => {
    const db = openDatabase('sqlite::memory:');
    await migrateToLatest(db);
    const storage = new Storage(db);
    const order: string[] = [];
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    const first = storage.transaction(async (trx) => {
      await addUser(trx, 'ann');
      order.push('first wrote');
      await paused;
      order.push('first ends');
    });
    await vi.waitFor(() => expect(order).toEqual(['first wrote']));
    const second = storage.transaction(async (trx) => {
      order.push(`second sees ${(await usernames(trx.db)).join(',')}`);
    });
    const plain = usernames(db).then((names) => order.push(`plain sees ${names.join(',')}`));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(order).toEqual(['first wrote']);
    resume();
    await Promise.all([first, second, plain]);
    expect(order.slice(0, 2)).toEqual(['first wrote', 'first ends']);
    expect(order.slice(2).sort()).toEqual(['plain sees ann', 'second sees ann']);
    await db.destroy();
  });
});
