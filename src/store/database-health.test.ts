import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DatabaseHealth, isDatabaseUnavailable } from './database-health.js';

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

  it('PostgreSQL refusing connections is', async () => {
    const pool = new pg.Pool({ host: '127.0.0.1', port: 1, user: 'nobody', connectionTimeoutMillis: 2000 });
    const refused = await errorOf(() => pool.query('select 1'));
    await pool.end();
    expect(isDatabaseUnavailable(refused)).toBe(true);
  });

  it.skipIf(!process.env.TEST_DATABASE_URL)('PostgreSQL ending our backend (57P01, as a restart does) is; a bad query or a constraint is not', async () => {
    const victim = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    victim.on('error', () => {});
    await Promise.all([victim.connect(), admin.connect()]);
    try {
      const syntax = await errorOf(() => victim.query('selec 1'));
      expect((syntax as { code: string }).code).toBe('42601');
      expect(isDatabaseUnavailable(syntax)).toBe(false);
      const divided = await errorOf(() => victim.query('select 1 / 0'));
      expect((divided as { code: string }).code).toBe('22012');
      expect(isDatabaseUnavailable(divided)).toBe(false);

      const pid = (await victim.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const sleeping = errorOf(() => victim.query('select pg_sleep(10)'));
      await admin.query('select pg_terminate_backend($1)', [pid]);
      const ended = await sleeping;
      expect((ended as { code: string }).code).toBe('57P01');
      expect(isDatabaseUnavailable(ended)).toBe(true);
      const afterwards = await errorOf(() => victim.query('select 1'));
      expect(isDatabaseUnavailable(afterwards)).toBe(true);
    } finally {
      await admin.end();
      await victim.end().catch(() => {});
    }
  });

  it('errors that are no database fault are not', () => {
    expect(isDatabaseUnavailable(new Error('boom'))).toBe(false);
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
    for (let i = 0; i < 50; i++) health.fault(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
    expect(health.available).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.fields.reason).toBe('ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:5432');
    health.answered();
    health.answered();
    expect(health.available).toBe(true);
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toMatchObject({ message: 'database available again', fields: { answered_503: 50 } });
  });
});
