import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/store/database.js';
import type { Database } from '../src/store/schema.js';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, freshDatabase } from './helpers.js';

// Storage.transaction on PostgreSQL (src/store/storage.ts): each pooled connection's Kysely made once, usable only
// while a transaction holds the connection. (SQLite's: src/store/storage.test.ts.)

const at = '2026-01-01T00:00:00.000Z';
const addUser = (storage: Storage, name: string) =>
  storage.db
    .insertInto('users')
    .values({ username: name, username_key: name, password_hash: null, created_at: at, updated_at: at })
    .execute();
const usernames = async (db: Kysely<Database>) =>
  (await db.selectFrom('users').select('username').orderBy('id').execute()).map((row) => row.username);

describe.skipIf(!databaseKinds().includes('postgres'))('Storage.transaction on PostgreSQL', () => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let db: Kysely<Database>;
  beforeAll(async () => {
    database = await freshDatabase('postgres', { migrated: true });
    db = openDatabase(database.url);
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });

  it('keeps one Kysely per pooled connection; each transaction is all or nothing, and they run side by side', async () => {
    const storage = new Storage(db);
    const bound = new Set<Kysely<Database>>();
    for (let run = 0; run < 2; run++) await storage.transaction(async (trx) => void bound.add(trx.db));
    // The pool hands back the connection just released: its Kysely, made once.
    expect(bound.size).toBe(1);
    expect(bound.has(db)).toBe(false);
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    const both = Promise.allSettled([
      storage.transaction(async (trx) => {
        bound.add(trx.db);
        await addUser(trx, 'carl');
        await paused;
      }),
      storage.transaction(async (trx) => {
        bound.add(trx.db);
        await addUser(trx, 'dora');
        resume();
        throw new Error('rolled back');
      }),
    ]);
    const [kept, rolledBack] = await both;
    expect(kept.status).toBe('fulfilled');
    expect(rolledBack).toMatchObject({ status: 'rejected', reason: new Error('rolled back') });
    // Two at once: two connections, each with its own Kysely.
    expect(bound.size).toBe(2);
    expect(await usernames(db)).toEqual(['carl']);
  });

  it('a storage kept past its transaction refuses to run a statement; a transaction inside one is refused', async () => {
    const storage = new Storage(db);
    let kept!: Storage;
    await storage.transaction(async (trx) => {
      kept = trx;
      await expect(trx.transaction(async () => {})).rejects.toThrow('already inside a transaction');
      await expect(trx.db.transaction().execute(async () => {})).rejects.toThrow('already inside a transaction');
    });
    // The builder's statements and the prepared ones alike: neither may land in the next transaction on that connection.
    await expect(addUser(kept, 'late')).rejects.toThrow('used after the transaction ended');
    await expect(kept.links.findWithUser('facebook', '1')).rejects.toThrow('used after the transaction ended');
    expect(await usernames(db)).not.toContain('late');
  });
});
