import type { ParseArgsConfig } from 'node:util';
import type { Kysely } from 'kysely';
import { devSecretsDirFor, loadConfig } from '../config/config.js';
import { Settings } from '../lib/settings.js';
import { openDatabase, requireMigrated, type Database } from '../store/database.js';
import { loadConfigFile } from './config-file.js';
import { pino } from 'pino';
import { createServices, type Services } from '../core/services.js';

/** A CLI command: its usage line, what it does, its options, and the work. */
export interface Command {
  usage: string;
  summary: string;
  options?: ParseArgsConfig['options'];
  /** Exit code, or -1 to keep running (servers) until a signal. */
  run(args: { positionals: string[]; values: Record<string, string | boolean | undefined> }): Promise<number>;
}

/**
 * The services (database, providers, secrets) for one command, closed after; provider warnings go to stderr. A
 * database not migrated yet is refused in one line.
 * `settings`: the settings they were made from (the configuration file's, then the environment's).
 */
export async function withServices<T>(work: (services: Services, settings: Settings) => Promise<T>): Promise<T> {
  const file = await loadConfigFile();
  const env = { ...file.settings, ...process.env };
  const config = loadConfig(env, { role: 'cli' });
  // Outside production, the key the server generated in ./data seals and opens here too (Apple grants moved by
  // `apple transfer`, staff TOTP secrets): never a key of this command's own that the server cannot open.
  const services = createServices({
    config,
    log: pino({ level: 'warn' }, pino.destination(2)),
    pipeline: file.pipeline,
    devSecretsDir: devSecretsDirFor(config),
  });
  try {
    await requireMigrated(services.storage.db);
    return await work(services, new Settings(env));
  } finally {
    await services.close();
  }
}

/** Opens the configured database for one command and closes it after. */
export async function withDatabase<T>(work: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  const file = await loadConfigFile();
  const db = openDatabase(loadConfig({ ...file.settings, ...process.env }).databaseUrl);
  try {
    return await work(db);
  } finally {
    await db.destroy();
  }
}
