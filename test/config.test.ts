import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/config/settings.js';
import { generateSigningKeySet, parseSigningKeys } from '../src/auth/keys.js';

describe('configuration', () => {
  it('refuses a signing key set in which two keys share a kid (one would stop verifying)', async () => {
    const [first] = (JSON.parse(await generateSigningKeySet()) as { keys: Array<Record<string, string>> }).keys;
    const [second] = (JSON.parse(await generateSigningKeySet()) as { keys: Array<Record<string, string>> }).keys;
    const set = JSON.stringify({ keys: [first, { ...second, kid: first!.kid }] });
    await expect(parseSigningKeys(set, 'SOCIAL_LINK_SIGNING_KEYS')).rejects.toThrow(/used by two keys/);
    await expect(parseSigningKeys(set, 'SOCIAL_LINK_SIGNING_KEYS')).rejects.toBeInstanceOf(ConfigError);
  });

  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      databaseUrl: 'sqlite:./data/social-link.sqlite',
      host: '127.0.0.1',
      port: 8000,
      createUser: false,
      production: false,
      accessTokenTtlSeconds: 900,
    });
    expect(config.providers).toEqual([]);
  });

  it('enables a provider when its key and secret are set', () => {
    const config = loadConfig({ SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 'secret', SOCIAL_AUTH_TWITTER_KEY: 'k', SOCIAL_AUTH_TWITTER_SECRET: 's' });
    expect(config.providers.map((provider) => provider.name)).toEqual(['facebook', 'twitter']);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ SOCIAL_AUTH_CREATE_USER: 'maybe' }, 'SOCIAL_AUTH_CREATE_USER'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ SOCIAL_AUTH_FACEBOOK_KEY: 'id' }, 'SOCIAL_AUTH_FACEBOOK_SECRET'],
    [{ SOCIAL_AUTH_TWITTER_SECRET: 's' }, 'SOCIAL_AUTH_TWITTER_KEY'],
    [{ SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 's', SOCIAL_AUTH_FACEBOOK_API_URL: 'not a url' }, 'SOCIAL_AUTH_FACEBOOK_API_URL'],
    [{ SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 's', SOCIAL_AUTH_FACEBOOK_API_VERSION: 'latest' }, 'SOCIAL_AUTH_FACEBOOK_API_VERSION'],
    [{ NODE_ENV: 'production' }, 'SOCIAL_LINK_SIGNING_KEYS'],
  ])('refuses %o naming %s', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(variable);
  });
});
