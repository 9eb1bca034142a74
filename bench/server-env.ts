// The environment of social-link under load: production mode, no rate limits (one client address sends
// everything), ID tokens reusable, warnings only, the given keys, and the emulated providers' settings.
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
    // The bench stops its servers with SIGTERM: no balancer to drain for.
    SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0',
    SOCIAL_LINK_SIGNING_KEYS: options.signingKeys,
    SOCIAL_LINK_ENCRYPTION_KEYS: randomBytes(32).toString('base64'),
    METRICS_TOKEN: randomBytes(16).toString('hex'),
    // The load cycles through a pool of ID tokens, each signing in many times: case 2 measures verifying
    // them. Refusing replays (the default) adds one insert to each ID-token sign-in's transaction.
    SOCIAL_AUTH_ID_TOKEN_REPLAY: 'allow',
  };
  for (const [key, value] of Object.entries(serverEnvFor(options.emulatorUrl, options.apps)))
    if (value !== undefined) settings[key] = value;
  return settings;
}
