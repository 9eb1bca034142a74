import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrateToLatest, openDatabase } from '../src/store/database.js';

// Once per `vitest run` (vitest.config.ts globalSetup): one database of each kind with every migration applied,
// which startStack copies for each server (test/helpers.ts freshDatabase(kind, { migrated: true })) instead of
// migrating a new one each time. The migrations themselves are tested from an empty database (test/migrations.test.ts,
// test/cli.test.ts); every server still runs migrateToLatest at start, on a copy where nothing is pending.

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated SQLite file: copied for each test server. */
    migratedSqlite?: string;
    /** A migrated PostgreSQL database on TEST_DATABASE_URL's server: the TEMPLATE of each test server's database. */
    migratedPostgres?: string;
  }
}

/** Templates of runs that were killed before their teardown: dropped once this old. */
const STALE_TEMPLATE_SECONDS = 24 * 3600;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'social-link-template-'));
  const file = join(dir, 'migrated.sqlite');
  const sqlite = openDatabase(`sqlite:${file}`);
  await migrateToLatest(sqlite).finally(() => sqlite.destroy());
  project.provide('migratedSqlite', file);

  const adminUrl = process.env.TEST_DATABASE_URL;
  let template: string | undefined;
  if (adminUrl) {
    const now = Math.floor(Date.now() / 1000);
    template = `social_link_template_${now}_${randomBytes(4).toString('hex')}`;
    await withAdmin(adminUrl, async (admin) => {
      const stale = await admin.query<{ datname: string }>(
        `SELECT datname FROM pg_database WHERE datname LIKE 'social\\_link\\_template\\_%'`,
      );
      for (const { datname } of stale.rows) {
        const created = Number(/^social_link_template_(\d+)_/.exec(datname)?.[1]);
        if (created < now - STALE_TEMPLATE_SECONDS)
          await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
      }
      await admin.query(`CREATE DATABASE ${template}`);
    });
    const url = new URL(adminUrl);
    url.pathname = `/${template}`;
    const postgres = openDatabase(url.toString());
    try {
      await migrateToLatest(postgres).finally(() => postgres.destroy());
    } catch (error) {
      // No teardown runs when setup fails: the half-made template goes now, not in a day.
      await withAdmin(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`));
      throw error;
    }
    // A copy needs the template to have no connection: none may start from now on (nor autovacuum's, but for wraparound).
    await withAdmin(adminUrl, (admin) => admin.query(`ALTER DATABASE ${template} WITH ALLOW_CONNECTIONS false`));
    project.provide('migratedPostgres', template);
  }

  return async () => {
    rmSync(dir, { recursive: true, force: true });
    if (adminUrl && template)
      await withAdmin(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`));
  };
}

async function withAdmin<T>(adminUrl: string, work: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}
