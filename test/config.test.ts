import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/lib/settings.js';
import { generateSigningKeySet, parseSigningKeys } from '../src/auth/keys.js';

describe('configuration', () => {
  it('SOCIAL_LINK_COMPAT_PREFIX: off by default, a path such as /myapp, never the root (where /api/ is ours)', () => {
    expect(loadConfig({}).compatPrefix).toBeUndefined();
    expect(loadConfig({ SOCIAL_LINK_COMPAT_PREFIX: '/myapp/' }).compatPrefix).toBe('/myapp');
    expect(loadConfig({ SOCIAL_LINK_COMPAT_PREFIX: '/v1/myapp' }).compatPrefix).toBe('/v1/myapp');
    expect(() => loadConfig({ SOCIAL_LINK_COMPAT_PREFIX: '/' })).toThrow(/at the root/);
    expect(() => loadConfig({ SOCIAL_LINK_COMPAT_PREFIX: 'myapp' })).toThrow(
      /SOCIAL_LINK_COMPAT_PREFIX must be a path/,
    );
    expect(() => loadConfig({ SOCIAL_LINK_COMPAT_PREFIX: '/my app' })).toThrow(
      /SOCIAL_LINK_COMPAT_PREFIX must be a path/,
    );
  });

  const production = { NODE_ENV: 'production', SOCIAL_LINK_SIGNING_KEYS: '{"keys":[]}', METRICS_TOKEN: 'scrape-me' };

  it('in production refuses a provider, key or discovery URL over plain http but on loopback', () => {
    const facebook = { SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 'secret' };
    expect(() =>
      loadConfig({ ...production, ...facebook, SOCIAL_AUTH_FACEBOOK_API_URL: 'http://graph.example.com' }),
    ).toThrow(/SOCIAL_AUTH_FACEBOOK_API_URL must be an https URL in production/);
    expect(() =>
      loadConfig({
        ...production,
        SOCIAL_AUTH_GOOGLE_KEY: 'web',
        SOCIAL_AUTH_GOOGLE_JWKS_URL: 'http://keys.example.com/certs',
      }),
    ).toThrow(/SOCIAL_AUTH_GOOGLE_JWKS_URL/);
    expect(() =>
      loadConfig({
        ...production,
        SOCIAL_AUTH_OIDC_ACME_ISSUER: 'http://login.acme.example',
        SOCIAL_AUTH_OIDC_ACME_KEY: 'c',
      }),
    ).toThrow(/SOCIAL_AUTH_OIDC_ACME_ISSUER/);
    for (const local of ['http://127.0.0.1:9000/facebook', 'http://localhost:9000', 'http://[::1]:9000']) {
      expect(loadConfig({ ...production, ...facebook, SOCIAL_AUTH_FACEBOOK_API_URL: local }).providers).toHaveLength(1);
    }
    expect(
      loadConfig({ ...facebook, SOCIAL_AUTH_FACEBOOK_API_URL: 'http://graph.example.com' }).providers,
    ).toHaveLength(1); // outside production
  });

  it('in production refuses public metrics: METRICS_TOKEN, or METRICS_PORT on a port of their own', () => {
    const { METRICS_TOKEN: _token, ...open } = production;
    expect(() => loadConfig(open)).toThrow(/\/metrics must not be public/);
    expect(loadConfig({ ...open, METRICS_PORT: '9464' })).toMatchObject({
      metricsPort: 9464,
      metricsHost: '127.0.0.1',
    });
    expect(loadConfig(production).metricsToken).toBe('scrape-me');
  });

  const randomKey = 'q1Jd0Ywv0d1xC7bQn2oN0TqzH2z3dbg5zC0rj1O3X0U=';

  it('in production the console needs an https public URL (its cookie is Secure); admin settings are bounded', () => {
    expect(() =>
      loadConfig({ ...production, SOCIAL_LINK_ADMIN: 'true', SOCIAL_LINK_ENCRYPTION_KEYS: randomKey }),
    ).toThrow(/SOCIAL_LINK_ADMIN=true in production needs SOCIAL_LINK_PUBLIC_URL=https/);
    expect(
      loadConfig({
        ...production,
        SOCIAL_LINK_ADMIN: 'true',
        SOCIAL_LINK_PUBLIC_URL: 'https://auth.example.com',
        SOCIAL_LINK_ENCRYPTION_KEYS: randomKey,
      }).admin,
    ).toEqual({
      enabled: true,
      idleSeconds: 900,
      lifetimeSeconds: 28_800,
      maxFailedLogins: 5,
      lockoutSeconds: 900,
      port: undefined,
      host: '127.0.0.1',
    });
    expect(loadConfig({}).admin.enabled).toBe(false);
    expect(() => loadConfig({ SOCIAL_LINK_ADMIN_IDLE_SECONDS: '0' })).toThrow(/SOCIAL_LINK_ADMIN_IDLE_SECONDS/);
  });

  it('in production the console needs SOCIAL_LINK_ENCRYPTION_KEYS: staff TOTP secrets sealed with a per-process key would open no more after a restart', () => {
    const withConsole = {
      ...production,
      SOCIAL_LINK_ADMIN: 'true',
      SOCIAL_LINK_PUBLIC_URL: 'https://auth.example.com',
    };
    expect(() => loadConfig(withConsole)).toThrow(ConfigError);
    expect(() => loadConfig(withConsole)).toThrow(
      /SOCIAL_LINK_ADMIN=true in production needs SOCIAL_LINK_ENCRYPTION_KEYS/,
    );
    expect(loadConfig({ ...withConsole, SOCIAL_LINK_ENCRYPTION_KEYS: randomKey }).admin.enabled).toBe(true);
    // The CLI (staff create, which seals nothing without a secret) and development are not refused.
    expect(loadConfig(withConsole, { role: 'cli' }).admin.enabled).toBe(true);
    expect(loadConfig({ SOCIAL_LINK_ADMIN: 'true' }).admin.enabled).toBe(true);
  });

  it('in production refuses placeholder secrets: an encryption key, a webhook or blocking hook secret of one repeated byte', () => {
    const zeros = Buffer.alloc(32).toString('base64');
    const repeated = Buffer.alloc(32, 0x41).toString('base64');
    for (const keys of [zeros, repeated, `${randomKey},${zeros}`]) {
      expect(() => loadConfig({ ...production, SOCIAL_LINK_ENCRYPTION_KEYS: keys })).toThrow(ConfigError);
      expect(() => loadConfig({ ...production, SOCIAL_LINK_ENCRYPTION_KEYS: keys })).toThrow(
        /SOCIAL_LINK_ENCRYPTION_KEYS: a key of one repeated byte/,
      );
    }
    expect(loadConfig({ ...production, SOCIAL_LINK_ENCRYPTION_KEYS: randomKey }).encryptionKeys).toBe(randomKey);
    const hook = { SOCIAL_LINK_WEBHOOK_URL: 'https://backend.example.com/hooks' };
    for (const secret of [`whsec_${zeros}`, `whsec_${Buffer.alloc(24, 7).toString('base64')}`]) {
      expect(() => loadConfig({ ...production, ...hook, SOCIAL_LINK_WEBHOOK_SECRET: secret })).toThrow(
        /SOCIAL_LINK_WEBHOOK_SECRET: a secret of one repeated byte/,
      );
      // Outside production (tests, development) a fixed secret is fine.
      expect(loadConfig({ ...hook, SOCIAL_LINK_WEBHOOK_SECRET: secret }).webhooks).toHaveLength(1);
    }
    expect(
      loadConfig({ ...production, ...hook, SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${randomKey}` }).webhooks,
    ).toHaveLength(1);
    expect(loadConfig({ SOCIAL_LINK_ENCRYPTION_KEYS: zeros }).encryptionKeys).toBe(zeros);
    // A blocking hook's secret too, shared or its own.
    const blocking = { SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'https://backend.example.com/before-sign-in' };
    for (const variable of ['SOCIAL_LINK_HOOK_SECRET', 'SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_SECRET']) {
      expect(() => loadConfig({ ...production, ...blocking, [variable]: `whsec_${zeros}` })).toThrow(
        /SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_SECRET \(or SOCIAL_LINK_HOOK_SECRET\): a secret of one repeated byte/,
      );
      expect(loadConfig({ ...blocking, [variable]: `whsec_${zeros}` }).blockingHooks).toHaveLength(1);
    }
    expect(
      loadConfig({ ...production, ...blocking, SOCIAL_LINK_HOOK_SECRET: `whsec_${randomKey}` }).blockingHooks,
    ).toHaveLength(1);
  });

  it('SOCIAL_LINK_ADMIN_PORT / _HOST (the console on a listener of its own) and RATE_LIMIT_ADMIN_API_PER_MINUTE', () => {
    expect(loadConfig({}).admin).toMatchObject({ port: undefined, host: '127.0.0.1' });
    expect(loadConfig({ SOCIAL_LINK_ADMIN_PORT: '8001', SOCIAL_LINK_ADMIN_HOST: '10.0.0.5' }).admin).toMatchObject({
      port: 8001,
      host: '10.0.0.5',
    });
    expect(() => loadConfig({ SOCIAL_LINK_ADMIN_PORT: '70000' })).toThrow(/SOCIAL_LINK_ADMIN_PORT/);
    expect(() => loadConfig({ SOCIAL_LINK_ADMIN_PORT: '8000' })).toThrow(
      /SOCIAL_LINK_ADMIN_PORT must differ from PORT/,
    );
    expect(loadConfig({}).rateLimit.adminApiPerMinute).toBe(600);
    expect(loadConfig({ RATE_LIMIT_ADMIN_API_PER_MINUTE: '30' }).rateLimit.adminApiPerMinute).toBe(30);
    expect(() => loadConfig({ RATE_LIMIT_ADMIN_API_PER_MINUTE: '0' })).toThrow(/RATE_LIMIT_ADMIN_API_PER_MINUTE/);
  });

  it('refuses a signing key set in which two keys share a kid (one would stop verifying)', async () => {
    const [first] = (JSON.parse(await generateSigningKeySet()) as { keys: Array<Record<string, string>> }).keys;
    const [second] = (JSON.parse(await generateSigningKeySet()) as { keys: Array<Record<string, string>> }).keys;
    const set = JSON.stringify({ keys: [first, { ...second, kid: first!.kid }] });
    await expect(parseSigningKeys(set, 'SOCIAL_LINK_SIGNING_KEYS')).rejects.toThrow(/used by two keys/);
    await expect(parseSigningKeys(set, 'SOCIAL_LINK_SIGNING_KEYS')).rejects.toBeInstanceOf(ConfigError);
  });

  const hookSecret = `whsec_${Buffer.from('a blocking hook secret of 32 bytes').toString('base64')}`;

  it('SOCIAL_LINK_HOOK_<NAME>_URL: a blocking hook each, its own secret or the shared one, its timeout (2000 ms by default), closed unless open; https in production', () => {
    expect(loadConfig({}).blockingHooks).toEqual([]);
    const own = `whsec_${Buffer.from('the before_link hook has its own').toString('base64')}`;
    expect(
      loadConfig({
        SOCIAL_LINK_HOOK_SECRET: hookSecret,
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'http://127.0.0.1:9/sign-in',
        SOCIAL_LINK_HOOK_BEFORE_LINK_URL: 'http://127.0.0.1:9/link',
        SOCIAL_LINK_HOOK_BEFORE_LINK_SECRET: own,
        SOCIAL_LINK_HOOK_BEFORE_LINK_TIMEOUT_MS: '300',
        SOCIAL_LINK_HOOK_BEFORE_LINK_FAIL: 'open',
      }).blockingHooks,
    ).toEqual([
      { name: 'before_link', url: 'http://127.0.0.1:9/link', secret: own, timeoutMs: 300, failOpen: true },
      {
        name: 'before_sign_in',
        url: 'http://127.0.0.1:9/sign-in',
        secret: hookSecret,
        timeoutMs: 2000,
        failOpen: false,
      },
    ]);
    expect(
      loadConfig({
        SOCIAL_LINK_HOOK_SECRET: hookSecret,
        SOCIAL_LINK_HOOK_TIMEOUT_MS: '700',
        SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_URL: 'http://127.0.0.1:9/created',
        SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_FAIL: 'closed',
      }).blockingHooks,
    ).toEqual([
      {
        name: 'before_user_created',
        url: 'http://127.0.0.1:9/created',
        secret: hookSecret,
        timeoutMs: 700,
        failOpen: false,
      },
    ]);
    const hook = (url: string) => ({
      ...production,
      SOCIAL_LINK_HOOK_SECRET: hookSecret,
      SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: url,
    });
    expect(() => loadConfig(hook('http://backend.example.com/hooks/sign-in'))).toThrow(
      /SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL must be an https URL in production/,
    );
    expect(loadConfig(hook('https://backend.example.com/hooks/sign-in')).blockingHooks).toHaveLength(1);
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
    const config = loadConfig({
      SOCIAL_AUTH_FACEBOOK_KEY: 'id',
      SOCIAL_AUTH_FACEBOOK_SECRET: 'secret',
      SOCIAL_AUTH_TWITTER_KEY: 'k',
      SOCIAL_AUTH_TWITTER_SECRET: 's',
    });
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
    [
      { SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 's', SOCIAL_AUTH_FACEBOOK_API_URL: 'not a url' },
      'SOCIAL_AUTH_FACEBOOK_API_URL',
    ],
    [
      { SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 's', SOCIAL_AUTH_FACEBOOK_API_VERSION: 'latest' },
      'SOCIAL_AUTH_FACEBOOK_API_VERSION',
    ],
    [{ NODE_ENV: 'production' }, 'SOCIAL_LINK_SIGNING_KEYS'],
    // A blocking hook without a secret, with one that is not whsec_ + 24 bytes, failing neither closed nor open.
    [{ SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'http://127.0.0.1:9/h' }, 'SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_SECRET'],
    [
      { SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_URL: 'http://127.0.0.1:9/h' },
      'SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_SECRET',
    ],
    [
      { SOCIAL_LINK_HOOK_BEFORE_LINK_URL: 'http://127.0.0.1:9/h', SOCIAL_LINK_HOOK_BEFORE_LINK_SECRET: 'not-whsec' },
      'SOCIAL_LINK_HOOK_BEFORE_LINK_SECRET',
    ],
    [
      { SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'http://127.0.0.1:9/h', SOCIAL_LINK_HOOK_SECRET: 'whsec_c2hvcnQ=' },
      'SOCIAL_LINK_HOOK_SECRET',
    ],
    [
      {
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'http://127.0.0.1:9/h',
        SOCIAL_LINK_HOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_FAIL: 'maybe',
      },
      'SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_FAIL',
    ],
    [
      {
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'not a url',
        SOCIAL_LINK_HOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
      },
      'SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL',
    ],
    [
      {
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'http://127.0.0.1:9/h',
        SOCIAL_LINK_HOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
        SOCIAL_LINK_HOOK_TIMEOUT_MS: '10',
      },
      'SOCIAL_LINK_HOOK_TIMEOUT_MS',
    ],
    [
      {
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: 'http://127.0.0.1:9/h',
        SOCIAL_LINK_HOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
        SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_TIMEOUT_MS: 'soon',
      },
      'SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_TIMEOUT_MS',
    ],
  ])('refuses %o naming %s', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(variable);
  });
});
