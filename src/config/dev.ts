import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { JWK } from 'jose';
import type { Env } from '../lib/settings.js';
import type { EmulatorOptions } from '@social-link/emulator';

/**
 * The apps the emulator knows and the server is configured with, for dev mode, `social-link emulator`
 * and tests. Values come from the environment when set (so the emulator matches a server configured
 * by hand), else from fake dev credentials that are only ever sent to loopback.
 */
export interface EmulatedApps {
  facebook: { appId: string; appSecret: string };
  twitter: { consumerKey: string; consumerSecret: string };
  google: { clientIds: string[] };
  apple: { clientIds: string[]; teamId: string; keyId: string; privateKeyPem: string; publicJwk: JWK };
  line: { channelId: string; channelSecret: string };
  github: { clientId: string; clientSecret: string };
  /** One generic OpenID Connect issuer, served by the emulator at /oidc/<name>. */
  oidc: { name: string; clientIds: string[] };
  /** Microsoft's multi-tenant endpoint (…/common/v2.0), as the `oidc:microsoft` provider. */
  microsoft: { clientIds: string[] };
}

const list = (value: string | undefined, fallback: string[]) =>
  value
    ? value
        .split(',')
        .map((item) => item.trim())
        .filter(Boolean)
    : fallback;

/** A new Sign in with Apple key (what Apple lets you download as a .p8 file), as PKCS#8 PEM. */
export function generateAppleKey(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
}

export function emulatedApps(env: Env, applePrivateKeyPem: string): EmulatedApps {
  const privateKeyPem = env.SOCIAL_AUTH_APPLE_PRIVATE_KEY?.replace(/\\n/g, '\n') ?? applePrivateKeyPem;
  const publicJwk = createPublicKey(createPrivateKey(privateKeyPem)).export({ format: 'jwk' }) as JWK;
  return {
    facebook: {
      appId: env.SOCIAL_AUTH_FACEBOOK_KEY ?? 'dev-facebook-app-id',
      appSecret: env.SOCIAL_AUTH_FACEBOOK_SECRET ?? 'dev-facebook-app-secret',
    },
    twitter: {
      consumerKey: env.SOCIAL_AUTH_TWITTER_KEY ?? 'dev-twitter-consumer-key',
      consumerSecret: env.SOCIAL_AUTH_TWITTER_SECRET ?? 'dev-twitter-consumer-secret',
    },
    // Google's backend guide: the server checks the web ("server") client id, which the native apps ask their ID tokens for.
    google: { clientIds: list(env.SOCIAL_AUTH_GOOGLE_KEY, ['dev-web.apps.googleusercontent.com']) },
    apple: {
      clientIds: list(env.SOCIAL_AUTH_APPLE_KEY, ['com.example.sociallink']),
      teamId: env.SOCIAL_AUTH_APPLE_TEAM_ID ?? 'DEVTEAM123',
      keyId: env.SOCIAL_AUTH_APPLE_KEY_ID ?? 'DEVKEY1234',
      privateKeyPem,
      publicJwk,
    },
    line: {
      channelId: env.SOCIAL_AUTH_LINE_KEY ?? '1234567890',
      channelSecret: env.SOCIAL_AUTH_LINE_SECRET ?? 'dev-line-channel-secret',
    },
    github: {
      clientId: env.SOCIAL_AUTH_GITHUB_KEY ?? 'dev-github-client-id',
      clientSecret: env.SOCIAL_AUTH_GITHUB_SECRET ?? 'dev-github-client-secret',
    },
    oidc: { name: 'example', clientIds: list(env.SOCIAL_AUTH_OIDC_EXAMPLE_KEY, ['dev-oidc-client']) },
    microsoft: { clientIds: list(env.SOCIAL_AUTH_OIDC_MICROSOFT_KEY, ['00000000-0000-4000-8000-00000000dev1']) },
  };
}

export function emulatorOptionsFor(apps: EmulatedApps): EmulatorOptions {
  return {
    facebook: { apps: { [apps.facebook.appId]: apps.facebook.appSecret } },
    twitter: { consumers: { [apps.twitter.consumerKey]: apps.twitter.consumerSecret } },
    google: { clientIds: apps.google.clientIds },
    apple: {
      clientIds: apps.apple.clientIds,
      teamId: apps.apple.teamId,
      keys: { [apps.apple.keyId]: apps.apple.publicJwk },
    },
    line: { channels: { [apps.line.channelId]: apps.line.channelSecret } },
    github: { apps: { [apps.github.clientId]: apps.github.clientSecret } },
    oidc: { [apps.oidc.name]: { clientIds: apps.oidc.clientIds } },
    microsoft: { clientIds: apps.microsoft.clientIds },
  };
}

/** Settings that enable every provider and point it at the emulator listening at `emulatorUrl`. */
export function serverEnvFor(emulatorUrl: string, apps: EmulatedApps): Env {
  return {
    SOCIAL_AUTH_FACEBOOK_KEY: apps.facebook.appId,
    SOCIAL_AUTH_FACEBOOK_SECRET: apps.facebook.appSecret,
    SOCIAL_AUTH_FACEBOOK_API_URL: `${emulatorUrl}/facebook`,
    SOCIAL_AUTH_FACEBOOK_LIMITED_JWKS_URL: `${emulatorUrl}/facebook-limited/.well-known/oauth/openid/jwks/`,
    SOCIAL_AUTH_TWITTER_KEY: apps.twitter.consumerKey,
    SOCIAL_AUTH_TWITTER_SECRET: apps.twitter.consumerSecret,
    SOCIAL_AUTH_TWITTER_API_URL: `${emulatorUrl}/twitter`,
    SOCIAL_AUTH_GOOGLE_KEY: apps.google.clientIds.join(','),
    SOCIAL_AUTH_GOOGLE_JWKS_URL: `${emulatorUrl}/google/oauth2/v3/certs`,
    SOCIAL_AUTH_GOOGLE_TOKENINFO_URL: `${emulatorUrl}/google/tokeninfo`,
    SOCIAL_AUTH_APPLE_KEY: apps.apple.clientIds.join(','),
    SOCIAL_AUTH_APPLE_JWKS_URL: `${emulatorUrl}/apple/auth/keys`,
    SOCIAL_AUTH_APPLE_API_URL: `${emulatorUrl}/apple`,
    SOCIAL_AUTH_APPLE_TEAM_ID: apps.apple.teamId,
    SOCIAL_AUTH_APPLE_KEY_ID: apps.apple.keyId,
    SOCIAL_AUTH_APPLE_PRIVATE_KEY: apps.apple.privateKeyPem,
    SOCIAL_AUTH_LINE_KEY: apps.line.channelId,
    SOCIAL_AUTH_LINE_API_URL: `${emulatorUrl}/line`,
    SOCIAL_AUTH_GITHUB_KEY: apps.github.clientId,
    SOCIAL_AUTH_GITHUB_SECRET: apps.github.clientSecret,
    SOCIAL_AUTH_GITHUB_API_URL: `${emulatorUrl}/github`,
    [`SOCIAL_AUTH_OIDC_${apps.oidc.name.toUpperCase()}_ISSUER`]: `${emulatorUrl}/oidc/${apps.oidc.name}`,
    [`SOCIAL_AUTH_OIDC_${apps.oidc.name.toUpperCase()}_KEY`]: apps.oidc.clientIds.join(','),
    SOCIAL_AUTH_OIDC_MICROSOFT_ISSUER: `${emulatorUrl}/microsoft/common/v2.0`,
    SOCIAL_AUTH_OIDC_MICROSOFT_KEY: apps.microsoft.clientIds.join(','),
  };
}
