#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { devSecretsDirFor, loadConfig } from './config/config.js';
import { migrateToLatest } from './store/database.js';
import { Storage } from './store/storage.js';
import { caseCollisionReport } from './store/username-key.js';
import { ConfigError } from './lib/settings.js';
import { withDatabase, type Command } from './cli/command.js';
import { loadConfigFile } from './cli/config-file.js';

// serve, openapi and keys load their modules when they run (import()): the other commands, started by scripts and
// tests, do not pay for the HTTP server's modules they never use. The commands of cli/*.ts load, all four modules,
// when one of them is named (or the usage is shown): `serve` never loads the importers, the console's or Apple's.
const commands: Record<string, Command> = {
  serve: {
    usage: 'serve [--workers N]',
    summary: 'apply pending migrations, then serve the API (configured by the environment; see README)',
    options: { workers: { type: 'string' } },
    async run({ values }) {
      const { serveWithWorkers, startServer } = await import('./server/server.js');
      const file = await loadConfigFile();
      const config = loadConfig({ ...file.settings, ...process.env });
      const workers = Number(values.workers ?? 1);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64)
        throw new ConfigError('--workers must be an integer from 1 to 64');
      if (workers === 1)
        await startServer({
          config,
          pipeline: file.pipeline,
          operatorErrors: file.errors,
          devSecretsDir: devSecretsDirFor(config),
        });
      else await serveWithWorkers(config, workers, file);
      return -1;
    },
  },
  migrate: {
    usage: 'migrate',
    summary: 'apply pending migrations and exit',
    run: () =>
      withDatabase(async (db) => {
        const applied = await migrateToLatest(db);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'the database is up to date');
        const collisions = caseCollisionReport(await new Storage(db).users.caseCollisions());
        if (collisions) console.warn(collisions);
        return 0;
      }),
  },
  openapi: {
    usage: 'openapi [--out FILE]',
    summary:
      "write the API's OpenAPI 3.1 document (as /openapi.json serves it, with this configuration's SOCIAL_LINK_PUBLIC_URL and errors) to FILE or stdout, for apps that generate their clients",
    options: { out: { type: 'string' } },
    async run({ values }) {
      const file = await loadConfigFile();
      const config = loadConfig({ ...file.settings, ...process.env }, { role: 'cli' });
      const { apiDocument } = await import('./server/api-document.js');
      const document = await apiDocument(config, file.errors);
      const text = `${JSON.stringify(document, null, 2)}\n`;
      if (typeof values.out === 'string') writeFileSync(values.out, text);
      else process.stdout.write(text);
      return 0;
    },
  },
  emulator: {
    usage: 'emulator [--port N]',
    summary: 'run the provider emulator on 127.0.0.1 (default port 9000) with the apps named by SOCIAL_AUTH_*',
    options: { port: { type: 'string' } },
    async run({ values }) {
      // Loaded here only: `serve` in production never loads the emulator.
      const { emulatedApps, emulatorOptionsFor, generateAppleKey } = await import('./config/dev.js');
      const { startEmulator } = await import('@social-link/emulator').catch(() => {
        throw new ConfigError(
          'the emulator is a development tool: install it with `npm install --save-dev @social-link/emulator` (in this repository: npm ci)',
        );
      });
      const emulator = await startEmulator({
        ...emulatorOptionsFor(emulatedApps(process.env, generateAppleKey())),
        port: Number(values.port ?? 9000),
        logger: true,
      });
      console.log(`provider emulator on ${emulator.url} (control API: ${emulator.url}/_emulator)`);
      return -1;
    },
  },
  keys: {
    usage:
      'keys generate | keys rotate [--keep N] | keys service create NAME --scopes read|write | keys service list | keys service revoke NAME',
    summary:
      'generate: print a new signing key set for SOCIAL_LINK_SIGNING_KEYS. rotate: print the configured set (SOCIAL_LINK_SIGNING_KEYS or _FILE) ' +
      'with a new signing key first and the newest N-1 old keys kept to verify tokens already issued (default N=2). ' +
      "service: the admin API's keys (shown once, kept hashed; last use recorded; revoked at once)",
    options: { keep: { type: 'string' }, scopes: { type: 'string' } },
    async run({ positionals, values }) {
      const { generateSigningKeySet, rotateSigningKeySet } = await import('./auth/keys.js');
      if (positionals[0] === 'service') {
        const { serviceKeysCommand } = await import('./cli/staff.js');
        return serviceKeysCommand(positionals.slice(1), typeof values.scopes === 'string' ? values.scopes : undefined);
      }
      if (positionals[0] === 'generate') {
        console.log(await generateSigningKeySet());
        return 0;
      }
      if (positionals[0] === 'rotate') {
        const config = loadConfig();
        const current = config.signingKeys ?? (config.signingKeysFile && readFileSync(config.signingKeysFile, 'utf8'));
        if (!current)
          throw new ConfigError(
            'keys rotate needs the current set in SOCIAL_LINK_SIGNING_KEYS or SOCIAL_LINK_SIGNING_KEYS_FILE',
          );
        console.log(await rotateSigningKeySet(current, Number(values.keep ?? 2)));
        return 0;
      }
      console.error(`usage: social-link ${commands.keys!.usage}`);
      return 1;
    },
  },
};

/** Every command: the ones above, then those of cli/*.ts (loaded now). */
async function allCommands(): Promise<Record<string, Command>> {
  const [{ adminCommands }, { appleCommand }, { staffCommand }, { importCommand }] = await Promise.all([
    import('./cli/admin.js'),
    import('./cli/apple.js'),
    import('./cli/staff.js'),
    import('./cli/import.js'),
  ]);
  return { ...commands, ...adminCommands, apple: appleCommand, staff: staffCommand, import: importCommand };
}

const usage = async () =>
  [
    "social-link: link social accounts to your app's users",
    '',
    'Usage: social-link <command> [options]     (social-link <command> --help for one command)',
    '',
    ...Object.values(await allCommands()).map((command) => `  ${command.usage}\n      ${command.summary}`),
  ].join('\n');

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    console.log(await usage());
    return name ? 0 : 1;
  }
  const known = Object.hasOwn(commands, name) ? commands : await allCommands();
  const command = Object.hasOwn(known, name) ? known[name] : undefined;
  if (!command) {
    console.error(`unknown command: ${name}\n\n${await usage()}`);
    return 1;
  }
  let args;
  try {
    args = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\nusage: social-link ${command.usage}`);
    return 1;
  }
  if (args.values.help) {
    console.log(`usage: social-link ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  return command.run(args);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit once stdout is flushed: into a pipe, Node writes asynchronously, and exiting at once would cut a
    // long answer (the API document, users list --json) short.
    if (code >= 0) process.stdout.write('', () => process.exit(code));
  },
  (error: unknown) => {
    console.error(error instanceof ConfigError ? `configuration error: ${error.message}` : error);
    process.exit(1);
  },
);
