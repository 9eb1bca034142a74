#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { loadConfig } from './config.js';
import { openDatabase, migrateToLatest } from './db/index.js';
import { generateSigningKeySet } from './auth/keys.js';
import { serveWithWorkers, startServer } from './server.js';
import { ConfigError } from './settings.js';
import { emulatedApps, emulatorOptionsFor, generateAppleKey } from './dev-settings.js';
import { startEmulator } from './emulator/index.js';

const usage = `social-link: link social accounts to your app's users

Usage: social-link <command> [options]

Commands:
  serve [--workers N]   apply pending migrations, then serve the API with N processes sharing the port
                        (default 1; configured by the environment, see README)
  migrate               apply pending migrations and exit
  emulator [--port N]   run the provider emulator on 127.0.0.1 (default port 9000)
  keys generate         print a new signing key set for SOCIAL_LINK_SIGNING_KEYS
  help                  show this help`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { port: { type: 'string' }, workers: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, sub] = positionals;
  if (values.help || !command || command === 'help') {
    console.log(usage);
    return command || values.help ? 0 : 1;
  }
  switch (command) {
    case 'serve': {
      const config = loadConfig();
      const workers = Number(values.workers ?? 1);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ConfigError('--workers must be an integer from 1 to 64');
      if (workers === 1) await startServer({ config });
      else await serveWithWorkers(config, workers);
      return -1; // keeps running until a signal
    }
    case 'migrate': {
      const db = openDatabase(loadConfig().databaseUrl);
      try {
        const applied = await migrateToLatest(db);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'the database is up to date');
      } finally {
        await db.destroy();
      }
      return 0;
    }
    case 'emulator': {
      const port = Number(values.port ?? 9000);
      const emulator = await startEmulator({ ...emulatorOptionsFor(emulatedApps(process.env, generateAppleKey())), port, logger: true });
      console.log(`provider emulator on ${emulator.url} (control API: ${emulator.url}/_emulator)`);
      return -1;
    }
    case 'keys':
      if (sub === 'generate') {
        console.log(await generateSigningKeySet());
        return 0;
      }
      break;
  }
  console.error(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    console.error(error instanceof ConfigError ? `configuration error: ${error.message}` : error);
    process.exit(1);
  },
);
