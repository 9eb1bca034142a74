import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { AbortedTransactionError, Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import type { Database } from '../src/store/schema.js';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, freshDatabase } from './helpers.js';

// Storage.transaction (src/store/transaction.ts) on a real database of each kind: each transaction gets a Kysely of its
// own, on the connection it holds, that refuses for good once the transaction has ended.

const at = '2026-01-01T00:00:00.000Z';
const addUser = (storage: Storage, name: string) =>
  storage.db
    .insertInto('users')
    .values({ username: name, username_key: name, password_hash: null, created_at: at, updated_at: at })
    .execute();
const usernames = async (db: Kysely<Database>) =>
  (await db.selectFrom('users').select('username').orderBy('id').execute()).map((row) => row.username);

describe.each(databaseKinds())('Storage.transaction on %s', (kind) => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let db: Kysely<Database>;
  beforeAll(async () => {
    database = await freshDatabase(kind, { migrated: true });
    db = openDatabase(database.url);
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });

  it('writes all or nothing', async () => {
    const storage = new Storage(db);
    await storage.transaction((trx) => addUser(trx, 'ann'));
    await expect(
      storage.transaction(async (trx) => {
        await addUser(trx, 'bob');
        throw new Error('given up');
      }),
    ).rejects.toThrow('given up');
    expect(await usernames(db)).toEqual(['ann']);
  });

  it('refuses a transaction inside a transaction, through any Kysely made from its own', async () => {
    await new Storage(db).transaction(async (trx) => {
      await expect(trx.transaction(async () => {})).rejects.toThrow('already inside a transaction');
      await expect(new Storage(trx.db.withoutPlugins()).transaction(async () => {})).rejects.toThrow(
        'already inside a transaction',
      );
      expect(() => trx.db.transaction()).toThrow('not supported');
      expect(() => trx.db.connection()).toThrow('not supported');
    });
  });

  it('a storage kept past its transaction refuses every statement, while the next transaction holds its connection too', async () => {
    const storage = new Storage(db);
    let kept!: Storage;
    await storage.transaction(async (trx) => void (kept = trx));
    const late = async () => {
      // The builder's statements and the prepared ones alike.
      await expect(addUser(kept, 'late')).rejects.toThrow('used after the transaction ended');
      await expect(kept.links.findWithUser('facebook', '1')).rejects.toThrow('used after the transaction ended');
    };
    await late();
    // The next transaction gets the same connection (SQLite has one; PostgreSQL's pool hands back the one just
    // released): the kept storage must not write into it.
    await storage.transaction(async (trx) => {
      await late();
      await addUser(trx, 'next');
    });
    expect(await usernames(db)).toContain('next');
    expect(await usernames(db)).not.toContain('late');
  });

  it('a statement the work leaves to be issued later is refused, even while the COMMIT is under way', async () => {
    const storage = new Storage(db);
    let late!: Promise<unknown>;
    await storage.transaction(async (trx) => {
      // Issued on the next turn of the event loop: on PostgreSQL while COMMIT awaits its answer (written after it, it
      // would run outside the transaction and be committed on its own). Its outcome is caught at once: it may come
      // before the transaction's.
      late = new Promise((resolve) => setImmediate(() => resolve(addUser(trx, 'after-commit')))).then(
        () => 'ran',
        (error: unknown) => error,
      );
    });
    expect(await late).toMatchObject({ message: "a transaction's storage was used after the transaction ended" });
    expect(await usernames(db)).not.toContain('after-commit');
  });

  describe.runIf(kind === 'postgres')('PostgreSQL only', () => {
    it('runs transactions side by side on two connections, each all or nothing', async () => {
      const storage = new Storage(db);
      let resume!: () => void;
      const paused = new Promise<void>((resolve) => (resume = resolve));
      const pids = new Set<number>();
      const pid = async (trx: Storage) =>
        pids.add((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx.db)).rows[0]!.pid);
      const [kept, rolledBack] = await Promise.allSettled([
        storage.transaction(async (trx) => {
          await pid(trx);
          await addUser(trx, 'carl');
          await paused;
        }),
        storage.transaction(async (trx) => {
          await pid(trx);
          await addUser(trx, 'dora');
          resume();
          throw new Error('rolled back');
        }),
      ]);
      expect(kept.status).toBe('fulfilled');
      expect(rolledBack).toMatchObject({ status: 'rejected', reason: new Error('rolled back') });
      expect(pids.size).toBe(2);
      expect(await usernames(db)).toContain('carl');
      expect(await usernames(db)).not.toContain('dora');
    });

    it('a transaction whose statement failed is not reported committed: PostgreSQL rolled it all back at COMMIT', async () => {
      // A step that catches a database error and goes on (an operator's pipeline step could): PostgreSQL has aborted
      // the transaction, and answers COMMIT with ROLLBACK.
      await expect(
        new Storage(db).transaction(async (trx) => {
          await addUser(trx, 'erin');
          await sql`select 1 / 0`.execute(trx.db).catch(() => {});
        }),
      ).rejects.toThrow(AbortedTransactionError);
      expect(await usernames(db)).not.toContain('erin');
    });

    it("reports the work's error when ROLLBACK fails too (the connection gone), and the pool serves the next", async () => {
      await expect(
        new Storage(db).transaction(async (trx) => {
          await sql`select pg_terminate_backend(pg_backend_pid())`.execute(trx.db);
        }),
      ).rejects.toThrow(/terminating connection due to administrator command/);
      await new Storage(db).transaction((trx) => addUser(trx, 'fred'));
      expect(await usernames(db)).toContain('fred');
    });

    it("drops the pool client whose COMMIT failed (its state unknown); the error is the COMMIT's", async () => {
      // A constraint checked at COMMIT (deferred) makes COMMIT fail on a healthy connection: dropped all the same.
      await sql`create table deferred_check (id int primary key, parent int references deferred_check (id)
        deferrable initially deferred)`.execute(db);
      const pidOf = async (trx: Storage) =>
        (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx.db)).rows[0]!.pid;
      let failed = 0;
      await expect(
        new Storage(db).transaction(async (trx) => {
          failed = await pidOf(trx);
          await sql`insert into deferred_check values (1, 99)`.execute(trx.db);
        }),
      ).rejects.toMatchObject({ code: '23503' });
      // The pool hands back the client released last, when it kept it: a new one here.
      const next = await new Storage(db).transaction(pidOf);
      expect(next).not.toBe(failed);
      const again = await new Storage(db).transaction(pidOf);
      expect(again).toBe(next);
    });

    it("a host's own PostgreSQL Kysely keeps its driver: Kysely's transaction(), all or nothing", async () => {
      const host = new Kysely<Database>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url, max: 2 }) }),
      });
      try {
        const storage = new Storage(host);
        await storage.transaction((trx) => addUser(trx, 'hosted'));
        await expect(
          storage.transaction(async (trx) => {
            expect(trx.db.isTransaction).toBe(true);
            await addUser(trx, 'hosted-rolled-back');
            throw new Error('given up');
          }),
        ).rejects.toThrow('given up');
        expect(await usernames(db)).toContain('hosted');
        expect(await usernames(db)).not.toContain('hosted-rolled-back');
      } finally {
        await host.destroy();
      }
    });

    it('leaves no connection inside a transaction after one given up before its first statement', async () => {
      // Its BEGIN, held back to go with the first statement (database.ts), goes with the ROLLBACK. Asked from a client
      // of its own: a statement on the pool would run on the very connection, and end what it looks for.
      await expect(new Storage(db).transaction(() => Promise.reject(new Error('given up')))).rejects.toThrow(
        'given up',
      );
      const observer = new pg.Client({ connectionString: database.url });
      await observer.connect();
      try {
        const { rows } = await observer.query<{ open: string }>(
          `select count(*) as open from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid() and state like 'idle in transaction%'`,
        );
        expect(rows).toEqual([{ open: '0' }]);
      } finally {
        await observer.end();
      }
    });
  });
});

describe('Storage.transaction on our own SQLite database', () => {
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

describe("Storage.transaction on a host's own SQLite Kysely (rollback journal, no busy wait)", () => {
  let dir: string;
  let file: string;
  let host: Kysely<Database>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'social-link-host-'));
    file = join(dir, 'host.sqlite');
    // As a host might open it: better-sqlite3's defaults (journal_mode=delete), and no wait for a busy lock.
    host = new Kysely<Database>({ dialect: new SqliteDialect({ database: new SQLite(file, { timeout: 0 }) }) });
    await migrateToLatest(host);
  });
  afterAll(async () => {
    await host?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports a BEGIN IMMEDIATE refused (another connection writing) and serves the next transaction', async () => {
    const writer = new SQLite(file);
    writer.exec('begin immediate');
    await expect(new Storage(host).transaction((trx) => addUser(trx, 'blocked'))).rejects.toThrow(/database is locked/);
    writer.exec('rollback');
    writer.close();
    await new Storage(host).transaction((trx) => addUser(trx, 'after-blocked'));
    expect(await usernames(host)).toEqual(['after-blocked']);
  });

  it('rolls back a transaction whose COMMIT was refused (a reader holds the file), so the connection goes back clean', async () => {
    // SQLite leaves the transaction open when COMMIT fails with SQLITE_BUSY (https://www.sqlite.org/lang_transaction.html).
    const reader = new SQLite(file);
    const reading = reader.prepare('select name from sqlite_master').iterate();
    reading.next(); // a read under way: its shared lock keeps COMMIT from the exclusive lock it needs
    await expect(new Storage(host).transaction((trx) => addUser(trx, 'not-committed'))).rejects.toThrow(
      /database is locked/,
    );
    reading.return?.();
    reader.close();
    await new Storage(host).transaction((trx) => addUser(trx, 'committed'));
    expect(await usernames(host)).toEqual(['after-blocked', 'committed']);
  });
});
