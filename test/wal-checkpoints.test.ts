import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, sql, type Generated } from 'kysely';
import type { Database } from '../src/store/database.js';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/store/database.js';
import { BUILT_CLI } from './helpers.js';
import { CheckpointedSqliteDialect, WalCheckpoints } from '../src/store/wal-checkpoints.js';

// A server's SQLite connection leaves its WAL checkpoints to a thread of its own (src/store/wal-checkpoints.ts): no
// commit waits on the disk, and the log still starts over once it is long.

const dir = mkdtempSync(join(tmpdir(), 'wal-checkpoints-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Rows {
  rows: { id: Generated<number>; body: Buffer };
}

const PAGE = 4096;
const walPages = (path: string) => Math.round(statSync(`${path}-wal`).size / (PAGE + 24));

/** A WAL database with one table, through the checkpointed dialect. */
function open(name: string) {
  const path = join(dir, `${name}.sqlite`);
  const sqlite = new SQLite(path);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.exec('create table rows (id integer primary key, body blob not null)');
  const thread: { checkpoints?: WalCheckpoints } = {};
  const db = new Kysely<Rows>({
    dialect: new CheckpointedSqliteDialect(
      { database: sqlite },
      () => (thread.checkpoints = new WalCheckpoints(sqlite, path)),
    ),
  });
  return { path, sqlite, thread, db };
}

/** `commits` write transactions of a page or so each, with the event loop's turns between them, as a server's. */
async function write(db: Kysely<Rows>, commits: number): Promise<void> {
  for (let i = 0; i < commits; i++) {
    await db.transaction().execute((trx) =>
      trx
        .insertInto('rows')
        .values({ body: Buffer.alloc(3000, i) })
        .execute(),
    );
    if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('SQLite checkpoints in a thread', () => {
  it('keep the log short while the connection never checkpoints itself below 10,000 pages', async () => {
    const { path, sqlite, thread, db } = open('short-log');
    // The thread starts with the first query.
    expect(thread.checkpoints).toBeUndefined();
    expect(sqlite.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    // 12,000 commits of a page or more: left to the connection, the log would grow to 10,000 pages.
    await write(db, 12_000);
    expect(sqlite.pragma('wal_autocheckpoint', { simple: true })).toBe(10_000);
    expect(thread.checkpoints!.stats.failure).toBeUndefined();
    expect(thread.checkpoints!.stats.restarts).toBeGreaterThan(0);
    // It started over: its high-water mark is the thread's threshold (1,000 pages) plus what came meanwhile.
    expect(walPages(path)).toBeLessThan(5000);
    expect(
      (
        await db
          .selectFrom('rows')
          .select(sql<number>`count(*)`.as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    ).toBe(12_000);
    await db.destroy();
  });

  it("while another connection's reader holds old frames, pauses back off (one per 1,000 more pages), then restart", async () => {
    const { path, thread, db } = open('held-reader');
    await write(db, 10);
    const reader = new SQLite(path);
    reader.exec('begin');
    reader.prepare('select count(*) from rows').get();
    const framesBefore = walPages(path);
    // A steady load for 1.5 s: the thread's tick (every 50 ms) comes some 30 times.
    for (const until = Date.now() + 1500; Date.now() < until;) {
      await write(db, 10);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const grown = walPages(path) - framesBefore;
    const stats = thread.checkpoints!.stats;
    // Nothing can be copied past the reader's snapshot: a pause at each 50 ms tick would hold every query for nothing.
    expect(stats.restarts).toBe(0);
    expect(stats.partialPauses).toBeLessThanOrEqual(Math.ceil(grown / 1000) + 1);
    reader.exec('commit');
    reader.close();
    await write(db, 4000);
    expect(stats.restarts).toBeGreaterThan(0);
    await db.destroy();
  });

  it('lose nothing: every commit is in the database file after close, which is whole', async () => {
    const { path, db } = open('durable');
    await write(db, 3000);
    await db.destroy();
    // The thread's connection closed first: the last one to close (the server's) folds the log in and removes it.
    expect(existsSync(`${path}-wal`)).toBe(false);
    const again = new SQLite(path, { readonly: true });
    expect(again.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(again.prepare('select count(*) from rows').pluck().get()).toBe(3000);
    again.close();
  });

  it('a thread that fails hands the checkpoints back to the connection (SQLite default), and queries go on', async () => {
    const path = join(dir, 'fallback.sqlite');
    const sqlite = new SQLite(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.exec('create table rows (id integer primary key, body blob not null)');
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on('warning', onWarning);
    // The thread opens a file that is not there (fileMustExist): it fails at once.
    let checkpoints: WalCheckpoints | undefined;
    const db = new Kysely<Rows>({
      dialect: new CheckpointedSqliteDialect(
        { database: sqlite },
        () => (checkpoints = new WalCheckpoints(sqlite, join(dir, 'missing', 'nothing.sqlite'))),
      ),
    });
    await write(db, 1);
    await expect.poll(() => checkpoints?.stats.failure, { timeout: 10_000 }).toBeDefined();
    expect(sqlite.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    await write(db, 3000);
    expect(walPages(path)).toBeLessThan(1500);
    await db.destroy();
    process.off('warning', onWarning);
    expect(warnings.join('\n')).toMatch(/checkpoint thread stopped/);
  });

  it("openDatabase gives a server's connection (checkpointThread) its thread, ended by destroy()", async () => {
    const threshold = async (db: Kysely<Database>) =>
      (await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(db)).rows[0]!.wal_autocheckpoint;
    const path = join(dir, 'server.sqlite');
    const db = openDatabase(`sqlite:${path}`, { checkpointThread: true });
    await sql`create table rows (id integer primary key)`.execute(db);
    expect(await threshold(db)).toBe(10_000);
    await db.destroy();
    expect(existsSync(`${path}-wal`)).toBe(false);
    // Without it (the CLI, migrations), no thread: the connection keeps SQLite's default.
    const plain = openDatabase(`sqlite:${join(dir, 'cli.sqlite')}`);
    expect(await threshold(plain)).toBe(1000);
    await plain.destroy();
  });

  it('a process that closes its database last waits for the thread to close its connection (built server code)', () => {
    const path = join(dir, 'process.sqlite');
    // Nothing else keeps this process's event loop busy while destroy() waits for the thread.
    const script = `
      const { openDatabase } = await import(${JSON.stringify(new URL('../dist/store/database.js', `file://${BUILT_CLI}`).href)});
      const { sql } = await import('kysely');
      const db = openDatabase(${JSON.stringify(`sqlite:${path}`)}, { checkpointThread: true });
      await sql\`create table rows (id integer primary key)\`.execute(db);
      await db.destroy();
      console.log('closed');`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('closed');
    expect(existsSync(`${path}-wal`)).toBe(false);
  });
});
