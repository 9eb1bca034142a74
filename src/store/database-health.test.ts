import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { openDatabase } from './database.js';
import { DatabaseHealth, fromDatabase, isDatabaseUnavailable } from './database-health.js';

/** The error a thunk throws (or rejects with). */
async function errorOf(work: () => unknown): Promise<unknown> {
  try {
    await work();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

describe('isDatabaseUnavailable: real errors of the drivers', () => {
  it('SQLite: locked by another connection beyond busy_timeout is; a constraint is not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'social-link-health-'));
    const holder = new SQLite(join(dir, 'db.sqlite'));
    const other = new SQLite(join(dir, 'db.sqlite'));
    try {
      holder.exec('create table t (id integer primary key)');
      other.pragma('busy_timeout = 0');
      holder.exec('begin immediate');
      const busy = await errorOf(() => other.exec('insert into t values (1)'));
      expect((busy as { code: string }).code).toBe('SQLITE_BUSY');
      expect(isDatabaseUnavailable(busy)).toBe(true);
      holder.exec('insert into t values (1); commit');
      const unique = await errorOf(() => other.exec('insert into t values (1)'));
      expect((unique as { code: string }).code).toBe('SQLITE_CONSTRAINT_PRIMARYKEY');
      expect(isDatabaseUnavailable(unique)).toBe(false);
    } finally {
      holder.close();
      other.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("PostgreSQL refusing connections is, through our pool (its errors are marked as the database's)", async () => {
    const db = openDatabase('postgres://nobody@127.0.0.1:1/none');
    const refused = await errorOf(() => sql`select 1`.execute(db));
    await db.destroy();
    expect(isDatabaseUnavailable(refused)).toBe(true);
  });

  it.skipIf(!process.env.TEST_DATABASE_URL)(
    'PostgreSQL ending our backend (57P01, as a restart does) is; a bad query or a constraint is not',
    async () => {
      const db = openDatabase(process.env.TEST_DATABASE_URL!);
      const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
      await admin.connect();
      try {
        const syntax = await errorOf(() => sql`selec 1`.execute(db));
        expect((syntax as { code: string }).code).toBe('42601');
        expect(isDatabaseUnavailable(syntax)).toBe(false);
        const divided = await errorOf(() => sql`select 1 / 0`.execute(db));
        expect((divided as { code: string }).code).toBe('22012');
        expect(isDatabaseUnavailable(divided)).toBe(false);

        // One connection held in a transaction, its backend ended meanwhile.
        const ended = await errorOf(() =>
          db.transaction().execute(async (trx) => {
            const { pid } = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!;
            await admin.query('select pg_terminate_backend($1)', [pid]);
            await sql`select pg_sleep(0.1)`.execute(trx);
          }),
        );
        expect(isDatabaseUnavailable(ended)).toBe(true);
        // The pool replaced the broken connection.
        expect((await sql<{ one: number }>`select 1 as one`.execute(db)).rows[0]!.one).toBe(1);
      } finally {
        await admin.end();
        await db.destroy();
      }
    },
  );

  it("errors that are no database fault are not: a network error from elsewhere (a phone hanging up mid-upload, a pipeline step's fetch) included", () => {
    expect(isDatabaseUnavailable(new Error('boom'))).toBe(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))).toBe(false);
    expect(
      isDatabaseUnavailable(
        new TypeError('fetch failed', {
          cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        }),
      ),
    ).toBe(false);
    expect(
      isDatabaseUnavailable(fromDatabase(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))),
    ).toBe(true);
    expect(isDatabaseUnavailable(fromDatabase(new TypeError('Query values must be an array')))).toBe(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
    expect(isDatabaseUnavailable('ECONNREFUSED')).toBe(false);
  });
});

describe('DatabaseHealth', () => {
  it('warns once when an outage starts and once when it ends, with the count of requests refused', () => {
    const warnings: Array<{ fields: Record<string, unknown>; message: string }> = [];
    const health = new DatabaseHealth({ warn: (fields, message) => warnings.push({ fields, message }) });
    health.answered();
    expect(warnings).toEqual([]);
    for (let i = 0; i < 50; i++)
      health.fault(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }), true);
    health.fault(new Error('a readiness check'));
    expect(health.available).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.fields.reason).toBe('ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:5432');
    health.answered();
    health.answered();
    expect(health.available).toBe(true);
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toMatchObject({ message: 'database available again', fields: { answered_503: 50 } });
    // Flapping (a saturated pool that comes and goes): one warning a minute at most, and no recovery line for an outage not warned of.
    health.fault(new Error('again'), true);
    health.answered();
    expect(warnings).toHaveLength(2);
  });
});
