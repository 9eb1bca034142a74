import { devSecretsDirFor, loadConfig } from '../config/config.js';
import { emulatedApps, emulatorOptionsFor, generateAppleKey, serverEnvFor } from '../config/dev.js';
import { devSecret } from '../auth/keys.js';
import { startEmulator } from '@social-link/emulator';
import { startServer } from '../server/server.js';
import { loadConfigFile } from './config-file.js';
import { ConfigError } from '../lib/settings.js';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { newTotpSecret } from '../auth/totp.js';
import { createServices } from '../core/services.js';
import { StaffAccounts } from '../core/staff.js';
import type { Config } from '../config/config.js';

/** Dev mode's console account (admin role), made once and kept in ./data/dev-staff.json with its TOTP secret. */
async function devStaff(config: Config): Promise<{ username: string; password: string; secret: string }> {
  const kept = JSON.parse(
    devSecret('./data/dev-staff.json', () =>
      JSON.stringify({
        username: 'dev-admin',
        password: randomBytes(12).toString('base64url'),
        secret: newTotpSecret(),
      }),
    ),
  ) as { username: string; password: string; secret: string };
  const services = createServices({ config, log: pino({ level: 'warn' }), devSecretsDir: devSecretsDirFor(config) });
  try {
    // Made, or reset to what ./data/dev-staff.json says (the database and the file may have parted).
    await new StaffAccounts(services).ensure(kept.username, kept.password, 'admin', kept.secret);
  } finally {
    await services.close();
  }
  return kept;
}

/**
 * `npm run dev`: the API on SQLite with the provider emulator beside it and every provider pointed at it.
 * Never in production: the emulator accepts tokens anyone can mint.
 */
async function main(): Promise<void> {
  if (process.env.NODE_ENV === 'production') {
    throw new ConfigError('dev mode wires providers to the local emulator and refuses to run with NODE_ENV=production');
  }
  const emulatorPort = Number(process.env.EMULATOR_PORT ?? 9000);
  const apps = emulatedApps(process.env, devSecret('./data/dev-apple-key.pem', generateAppleKey));
  const emulator = await startEmulator({ ...emulatorOptionsFor(apps), port: emulatorPort });
  const file = await loadConfigFile();
  // The console is on in dev mode (SOCIAL_LINK_ADMIN=false turns it off).
  // No balancer in front of a laptop: stop at once (SOCIAL_LINK_SHUTDOWN_GRACE_MS).
  const config = loadConfig({
    SOCIAL_LINK_ADMIN: 'true',
    SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0',
    ...file.settings,
    ...process.env,
    ...serverEnvFor(emulator.url, apps),
  });
  const app = await startServer({
    config,
    pipeline: file.pipeline,
    operatorErrors: file.errors,
    devSecretsDir: devSecretsDirFor(config),
    onClose: () => emulator.close(),
  });

  const api = `http://${config.host}:${config.port}`;
  // Only into a local SQLite database: never a known admin account in a shared one (DATABASE_URL=postgres://…).
  const local = config.databaseUrl.startsWith('sqlite:');
  const staff = config.admin.enabled && local ? await devStaff(config) : undefined;
  const consoleLines = staff
    ? `  Console       ${api}/admin/   staff ${staff.username} / ${staff.password} (role admin)
                TOTP secret ${staff.secret}: add it to an authenticator app, or print the code with
                npx tsx src/cli.ts staff code --secret ${staff.secret}
`
    : config.admin.enabled
      ? `  Console       ${api}/admin/   (no dev account on a shared database: npx tsx src/cli.ts staff create NAME --role admin)
`
      : '';
  const line = '!'.repeat(78);
  app.log.warn(`DEV MODE: providers point at the local emulator (${emulator.url}); never use this in production`);
  console.log(`
${line}
  social-link DEV MODE: providers are EMULATED, tokens are fake, keys live in ./data/
${line}
  API           ${api}
  API docs      ${api}/docs   (try every endpoint from the browser)
  Database      ${config.databaseUrl}
${consoleLines}  Emulator      ${emulator.url}   (control API: ${emulator.url}/_emulator)

  Mint a Facebook token for a test user:
    curl -s -X POST ${emulator.url}/_emulator/facebook/tokens -H 'content-type: application/json' -d '{}'
  Mint a Twitter token and secret:
    curl -s -X POST ${emulator.url}/_emulator/twitter/tokens -H 'content-type: application/json' -d '{}'
  Mint a Google ID token (likewise apple/id_tokens, facebook/limited_tokens, oidc/example/id_tokens, microsoft/id_tokens):
    curl -s -X POST ${emulator.url}/_emulator/google/id_tokens -H 'content-type: application/json' -d '{}'
  Providers: ${config.providers.map((provider) => provider.name).join(', ')}
  Then: POST ${api}/api/users/ (guest user), POST ${api}/api/associate/facebook/ with its access_token,
  and POST ${api}/api/auth/facebook/ with the same token to find the user again. See README.md.
${line}
`);
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `configuration error: ${error.message}` : error);
  process.exit(1);
});
