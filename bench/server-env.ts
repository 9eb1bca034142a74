// The environment of social-link under load: production mode, no rate limits (one client address sends
// everything), warnings only, the given keys, and the emulated providers' settings.
import { randomBytes } from 'node:crypto';
import { serverEnvFor, type emulatedApps } from '../src/config/dev.js';

export function benchServerEnv(options: {
  databaseUrl: string;
  emulatorUrl: string;
  apps: ReturnType<typeof emulatedApps>;
  signingKeys: string;
}): Record<string, string> {
  const settings: Record<string, string> = {
    NODE_ENV: 'production',
    DATABASE_URL: options.databaseUrl,
    RATE_LIMIT_ENABLED: 'false',
    LOG_LEVEL: 'warn',
    SOCIAL_LINK_SIGNING_KEYS: options.signingKeys,
    SOCIAL_LINK_ENCRYPTION_KEYS: randomBytes(32).toString('base64'),
  };
  for (const [key, value] of Object.entries(serverEnvFor(options.emulatorUrl, options.apps))) if (value !== undefined) settings[key] = value;
  return settings;
}
