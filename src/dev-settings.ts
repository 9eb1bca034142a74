import type { Env } from './settings.js';
import type { EmulatorOptions } from './emulator/index.js';

/** The app credentials dev mode gives the emulator and the server: fake, and only ever sent to loopback. */
export const DEV_CREDENTIALS = {
  facebook: { key: 'dev-facebook-app-id', secret: 'dev-facebook-app-secret' },
  twitter: { key: 'dev-twitter-consumer-key', secret: 'dev-twitter-consumer-secret' },
};

/** The emulator's registered apps: those named by the environment, else the dev credentials. */
export function emulatorOptionsFromEnv(env: Env): EmulatorOptions {
  const facebook = { key: env.SOCIAL_AUTH_FACEBOOK_KEY ?? DEV_CREDENTIALS.facebook.key, secret: env.SOCIAL_AUTH_FACEBOOK_SECRET ?? DEV_CREDENTIALS.facebook.secret };
  const twitter = { key: env.SOCIAL_AUTH_TWITTER_KEY ?? DEV_CREDENTIALS.twitter.key, secret: env.SOCIAL_AUTH_TWITTER_SECRET ?? DEV_CREDENTIALS.twitter.secret };
  return {
    facebook: { apps: { [facebook.key]: facebook.secret } },
    twitter: { consumers: { [twitter.key]: twitter.secret } },
  };
}

/** Settings that point every provider at the emulator. */
export function providerEnvFor(emulatorUrl: string, env: Env): Env {
  const options = emulatorOptionsFromEnv(env);
  const [facebookKey, facebookSecret] = Object.entries(options.facebook!.apps)[0]!;
  const [twitterKey, twitterSecret] = Object.entries(options.twitter!.consumers)[0]!;
  return {
    SOCIAL_AUTH_FACEBOOK_KEY: facebookKey,
    SOCIAL_AUTH_FACEBOOK_SECRET: facebookSecret,
    SOCIAL_AUTH_FACEBOOK_API_URL: `${emulatorUrl}/facebook`,
    SOCIAL_AUTH_TWITTER_KEY: twitterKey,
    SOCIAL_AUTH_TWITTER_SECRET: twitterSecret,
    SOCIAL_AUTH_TWITTER_API_URL: `${emulatorUrl}/twitter`,
  };
}
