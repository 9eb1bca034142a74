import { ConfigError, Settings, type Env } from '../lib/settings.js';
import { loadProviderConfigs, type ProviderConfigs } from '../providers/index.js';
import { SecretBox } from '../auth/secret-box.js';
import { clockToleranceOf } from '../providers/id-token.js';

/** A webhook receiver (core/webhooks.ts delivers to it). */
export interface WebhookEndpoint {
  url: string;
  /** `whsec_` + base64 (the Standard Webhooks secret format). */
  secret: string;
}

/** What a second use of an ID token meets (core/replay.ts says why). */
export interface ReplayPolicy {
  /** SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse, or allow (the default). */
  refuse: boolean;
  /** SOCIAL_AUTH_ID_TOKEN_RETRY_SECONDS: how long the same client's retry of the same token is let through. */
  retrySeconds: number;
}

/**
 * Where `serve`, dev mode and the embedding plugin keep the keys they generate outside production when none
 * are configured (owner-only files), so that a restart keeps sessions and sealed provider tokens (an Apple
 * grant that cannot be opened can never be revoked). In production nothing is generated but what seals
 * nothing: the keys that matter are required.
 */
export const devSecretsDirFor = (config: Pick<Config, 'production'>): string | undefined =>
  config.production ? undefined : './data';

export interface Config {
  production: boolean;
  databaseUrl: string;
  /** DATABASE_QUERY_TIMEOUT_MS (PostgreSQL): a query the server runs fails after this without an answer (503 database_unavailable). */
  databaseQueryTimeoutMs: number;
  host: string;
  port: number;
  /** Where apps reach the API (the OpenAPI document's server). */
  publicUrl: string;
  logLevel: string;
  /** May auth create a user on the first sign-in with an unknown social account? */
  createUser: boolean;
  /** A profile kept on a link is read again from the provider once older than this (providers with a separate profile call). */
  profileMaxAgeSeconds: number;
  /** SOCIAL_LINK_WEBHOOK_URL / _SECRET: where events are delivered (core/webhooks.ts); empty: none are written. */
  webhooks: WebhookEndpoint[];
  /** SOCIAL_LINK_HOOK_<NAME>_*: the app's backend, asked during a sign-in or a link (core/blocking-hooks.ts). */
  blockingHooks: BlockingHookConfig[];
  /** SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS: the first retry's delay; each next one doubles it. */
  webhookRetryBaseMs: number;
  /** SOCIAL_LINK_WEBHOOK_RETENTION_DAYS: events delivered everywhere are forgotten after this many days. */
  webhookRetentionDays: number;
  /** SOCIAL_LINK_SESSION_RETENTION_DAYS: sessions ended (expired, revoked) and refresh tokens expired are forgotten after this many days. */
  sessionRetentionDays: number;
  /** SOCIAL_LINK_COMPAT_PREFIX: where the original design's two routes are served for released apps (routes/compat.ts), or undefined. */
  compatPrefix: string | undefined;
  /** SOCIAL_AUTH_EMAIL_LINKING: may `auth` answer 409 link_required for an account whose verified e-mail a user has (core/email-linking.ts)? */
  emailLinking: boolean;
  /** What a second use of an ID token meets (core/replay.ts). */
  idTokenReplay: ReplayPolicy;
  /** `iss` and `aud` of our own access tokens. */
  tokenIssuer: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** Private JWK set (JSON) that signs our access tokens; see README "Signing keys". */
  signingKeys?: string;
  signingKeysFile?: string;
  /** Comma-separated base64 AES-256 keys that seal provider tokens at rest; newest first. */
  encryptionKeys?: string;
  providerTimeoutMs: number;
  /** SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS (the providers read it too): the skew tolerated on a signed callback's issued_at. */
  clockToleranceSeconds: number;
  /** Failed provider calls in a row that open a provider's circuit, and how long it stays open. */
  circuitBreaker: { threshold: number; cooldownMs: number };
  providers: ProviderConfigs;
  /** Origins allowed by CORS; empty = CORS off (mobile apps do not need it). */
  corsOrigins: string[];
  /** Trust X-Forwarded-For from this many proxies (or these addresses) in front of us. */
  trustProxy: boolean | number | string[];
  /** When set, /metrics requires it as a Bearer token. */
  metricsToken?: string;
  /** When set, /metrics is served on this port of its own (on metricsHost), not on the API's. */
  metricsPort?: number;
  metricsHost: string;
  /**
   * SOCIAL_LINK_SHUTDOWN_GRACE_MS: after SIGTERM, how long the server goes on answering (with /readyz 503, so
   * that balancers stop sending) before it stops accepting connections. README "Deploying behind a balancer".
   */
  shutdownGraceMs: number;
  /** SOCIAL_LINK_KEEP_ALIVE_TIMEOUT_MS: an idle keep-alive connection is closed after this; longer than any balancer's. */
  keepAliveTimeoutMs: number;
  /**
   * SOCIAL_LINK_ADMIN: the admin API (/admin/api/, service keys) and the staff console (/admin/); off by default.
   * A console session ends after `idleSeconds` without a request, and `lifetimeSeconds` after sign-in whatever.
   */
  admin: {
    enabled: boolean;
    idleSeconds: number;
    lifetimeSeconds: number;
    maxFailedLogins: number;
    lockoutSeconds: number;
    /** SOCIAL_LINK_ADMIN_PORT: when set, /admin/ and /admin/api/ are served on this port of their own (on `host`) only. */
    port?: number;
    /** SOCIAL_LINK_ADMIN_HOST: where that listener binds (default 127.0.0.1: inside the network, never beside the public API). */
    host: string;
  };
  rateLimit: {
    enabled: boolean;
    redisUrl?: string;
    redisPrefix: string;
    signInPerIpPerMinute: number;
    passwordPerIpPerMinute: number;
    linksPerUserPerMinute: number;
    callbacksPerIpPerMinute: number;
    /** RATE_LIMIT_ADMIN_API_PER_MINUTE: requests to /admin/api/ per service key (per client network without a valid key). */
    adminApiPerMinute: number;
    /** SOCIAL_LINK_INSTANCES: how many instances share the budgets; while Redis is away each keeps 1/N of them. */
    instances: number;
    /** RATE_LIMIT_FAIL_CLOSED: the budgets whose requests are refused (503) while Redis is away, instead of counted in memory. */
    failClosed: ReadonlySet<RateLimitName>;
  };
}

/** The budgets, as RATE_LIMIT_FAIL_CLOSED names them. */
export const RATE_LIMIT_NAMES = ['sign_in', 'password', 'links', 'callbacks', 'admin_api'] as const;
export type RateLimitName = (typeof RATE_LIMIT_NAMES)[number];

function failClosedOf(settings: Settings): ReadonlySet<RateLimitName> {
  const names = settings.list('RATE_LIMIT_FAIL_CLOSED');
  const unknown = names.filter((name) => !(RATE_LIMIT_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new ConfigError(
      `RATE_LIMIT_FAIL_CLOSED: unknown budget ${unknown.join(', ')} (the budgets: ${RATE_LIMIT_NAMES.join(', ')})`,
    );
  return new Set(names as RateLimitName[]);
}

export const DEFAULT_DATABASE_URL = 'sqlite:./data/social-link.sqlite';

/**
 * Reads and validates the configuration; throws ConfigError naming the bad variable. The server signs our
 * access tokens; the CLI and the embedded plugin (whose host starts its own sessions) sign none.
 */
export function loadConfig(
  env: Env = process.env,
  { role = 'server' }: { role?: 'server' | 'cli' | 'embedded' } = {},
): Config {
  const settings = new Settings(env);
  const databaseUrl = settings.string('DATABASE_URL', DEFAULT_DATABASE_URL);
  if (!/^(sqlite:|postgres:\/\/|postgresql:\/\/)/.test(databaseUrl)) {
    throw new ConfigError(`DATABASE_URL must start with sqlite: or postgres://, got "${databaseUrl}"`);
  }
  const config: Config = {
    production: env.NODE_ENV === 'production',
    databaseUrl,
    databaseQueryTimeoutMs: settings.int('DATABASE_QUERY_TIMEOUT_MS', 10_000, { min: 100, max: 600_000 }),
    host: settings.string('HOST', '127.0.0.1'),
    port: settings.int('PORT', 8000, { min: 0, max: 65535 }),
    publicUrl: settings.url('SOCIAL_LINK_PUBLIC_URL', defaultPublicUrl(settings)),
    logLevel: settings.string('LOG_LEVEL', 'info'),
    createUser: settings.bool('SOCIAL_AUTH_CREATE_USER', false),
    profileMaxAgeSeconds: settings.int('SOCIAL_AUTH_PROFILE_MAX_AGE', 86_400),
    emailLinking: settings.bool('SOCIAL_AUTH_EMAIL_LINKING', true),
    compatPrefix: compatPrefixOf(settings),
    webhooks: webhooksOf(settings),
    blockingHooks: blockingHooksOf(settings),
    webhookRetryBaseMs: settings.int('SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS', 5000, { min: 10, max: 3_600_000 }),
    webhookRetentionDays: settings.int('SOCIAL_LINK_WEBHOOK_RETENTION_DAYS', 7, { min: 1, max: 3650 }),
    sessionRetentionDays: settings.int('SOCIAL_LINK_SESSION_RETENTION_DAYS', 30, { min: 1, max: 3650 }),
    idTokenReplay: {
      refuse: replayRefused(settings),
      retrySeconds: settings.int('SOCIAL_AUTH_ID_TOKEN_RETRY_SECONDS', 10, { max: 60 }),
    },
    tokenIssuer: settings.string('SOCIAL_LINK_TOKEN_ISSUER', 'social-link'),
    accessTokenTtlSeconds: settings.int('SOCIAL_LINK_ACCESS_TOKEN_TTL', 900, { min: 30, max: 86_400 }),
    refreshTokenTtlSeconds: settings.int('SOCIAL_LINK_REFRESH_TOKEN_TTL', 30 * 86_400, { min: 60 }),
    signingKeys: settings.string('SOCIAL_LINK_SIGNING_KEYS'),
    signingKeysFile: settings.string('SOCIAL_LINK_SIGNING_KEYS_FILE'),
    encryptionKeys: settings.string('SOCIAL_LINK_ENCRYPTION_KEYS'),
    providerTimeoutMs: settings.int('SOCIAL_AUTH_PROVIDER_TIMEOUT_MS', 5000, { min: 100, max: 60_000 }),
    clockToleranceSeconds: clockToleranceOf(settings),
    circuitBreaker: {
      threshold: settings.int('SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD', 5, { min: 1, max: 1000 }),
      cooldownMs: settings.int('SOCIAL_AUTH_CIRCUIT_BREAKER_COOLDOWN_MS', 10_000, { min: 100, max: 600_000 }),
    },
    providers: loadProviderConfigs(settings),
    corsOrigins: settings.list('CORS_ORIGINS'),
    trustProxy: trustProxy(settings),
    metricsToken: settings.string('METRICS_TOKEN'),
    metricsPort:
      settings.string('METRICS_PORT') === undefined
        ? undefined
        : settings.int('METRICS_PORT', 0, { min: 1, max: 65535 }),
    metricsHost: settings.string('METRICS_HOST', '127.0.0.1'),
    // Long enough for a balancer checking /readyz every 2 s to see 3 failures, or for an orchestrator to
    // take the instance out of its endpoints; short of Kubernetes' and ECS's 30 s before they kill.
    shutdownGraceMs: settings.int('SOCIAL_LINK_SHUTDOWN_GRACE_MS', 15_000, { min: 0, max: 600_000 }),
    // Above the balancers' own idle timeouts (nginx's upstream keepalive_timeout 60 s, AWS ALB 60 s): the
    // balancer closes an idle connection first, so it never reuses one the server is closing.
    keepAliveTimeoutMs: settings.int('SOCIAL_LINK_KEEP_ALIVE_TIMEOUT_MS', 75_000, { min: 1_000, max: 3_600_000 }),
    admin: {
      enabled: settings.bool('SOCIAL_LINK_ADMIN', false),
      idleSeconds: settings.int('SOCIAL_LINK_ADMIN_IDLE_SECONDS', 15 * 60, { min: 1, max: 86_400 }),
      lifetimeSeconds: settings.int('SOCIAL_LINK_ADMIN_SESSION_SECONDS', 8 * 3600, { min: 1, max: 7 * 86_400 }),
      maxFailedLogins: settings.int('SOCIAL_LINK_ADMIN_MAX_FAILED_LOGINS', 5, { min: 1, max: 100 }),
      lockoutSeconds: settings.int('SOCIAL_LINK_ADMIN_LOCKOUT_SECONDS', 15 * 60, { min: 1, max: 86_400 }),
      port:
        settings.string('SOCIAL_LINK_ADMIN_PORT') === undefined
          ? undefined
          : settings.int('SOCIAL_LINK_ADMIN_PORT', 0, { min: 1, max: 65535 }),
      host: settings.string('SOCIAL_LINK_ADMIN_HOST', '127.0.0.1'),
    },
    rateLimit: {
      enabled: settings.bool('RATE_LIMIT_ENABLED', true),
      redisUrl: redisUrl(settings),
      redisPrefix: settings.string('RATE_LIMIT_REDIS_PREFIX', 'social-link:rate:'),
      signInPerIpPerMinute: settings.int('RATE_LIMIT_SIGN_IN_PER_MINUTE', 120, { min: 1 }),
      linksPerUserPerMinute: settings.int('RATE_LIMIT_LINKS_PER_MINUTE', 20, { min: 1 }),
      passwordPerIpPerMinute: settings.int('RATE_LIMIT_PASSWORD_PER_MINUTE', 10, { min: 1 }),
      // Providers deliver from few addresses, all their users' callbacks: generous.
      callbacksPerIpPerMinute: settings.int('RATE_LIMIT_CALLBACKS_PER_MINUTE', 600, { min: 1 }),
      // A backend's batch job reads many users in a row: generous, but a leaked key cannot dump the directory at full speed.
      adminApiPerMinute: settings.int('RATE_LIMIT_ADMIN_API_PER_MINUTE', 600, { min: 1 }),
      instances: settings.int('SOCIAL_LINK_INSTANCES', 1, { min: 1, max: 10_000 }),
      failClosed: failClosedOf(settings),
    },
  };
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(config.logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${levels.join(', ')}, got "${config.logLevel}"`);
  }
  if (role === 'server' && config.production && !config.signingKeys && !config.signingKeysFile) {
    throw new ConfigError(
      'SOCIAL_LINK_SIGNING_KEYS or SOCIAL_LINK_SIGNING_KEYS_FILE must be set in production ' +
        '(generate one with: social-link keys generate)',
    );
  }
  if (role === 'server' && config.production && config.admin.enabled && !config.publicUrl.startsWith('https://')) {
    throw new ConfigError(
      "SOCIAL_LINK_ADMIN=true in production needs SOCIAL_LINK_PUBLIC_URL=https://…: the console's session cookie is Secure (__Host-), and staff passwords and codes must not cross the network in the clear",
    );
  }
  if (role === 'server' && config.production && !config.metricsToken && config.metricsPort === undefined) {
    throw new ConfigError(
      'in production /metrics must not be public: set METRICS_TOKEN (a Bearer token), or METRICS_PORT to serve the metrics on a port of their own (on METRICS_HOST, default 127.0.0.1)',
    );
  }
  if (role === 'server' && config.production && config.admin.enabled && !config.encryptionKeys) {
    // Staff TOTP secrets are sealed with these keys: without them a per-process key would seal them, and after a
    // restart every correct code would be refused.
    throw new ConfigError(
      "SOCIAL_LINK_ADMIN=true in production needs SOCIAL_LINK_ENCRYPTION_KEYS: the staff's authenticator secrets are sealed with them (generate one with: openssl rand -base64 32)",
    );
  }
  if (config.admin.port !== undefined && config.admin.port === config.port) {
    throw new ConfigError("SOCIAL_LINK_ADMIN_PORT must differ from PORT: the console's listener is a port of its own");
  }
  if (config.production && settings.string('SOCIAL_AUTH_APPLE_TEAM_ID') && !config.encryptionKeys) {
    throw new ConfigError(
      'SOCIAL_LINK_ENCRYPTION_KEYS must be set in production to keep Sign in with Apple refresh tokens ' +
        '(generate one with: openssl rand -base64 32)',
    );
  }
  if (config.encryptionKeys) {
    SecretBox.fromSetting(config.encryptionKeys); // fail at start-up, naming the variable
    if (
      config.production &&
      config.encryptionKeys.split(',').some((key) => isDegenerate(Buffer.from(key.trim(), 'base64')))
    ) {
      throw new ConfigError(
        'SOCIAL_LINK_ENCRYPTION_KEYS: a key of one repeated byte (all zeros…) is a placeholder, not a secret; in production give random keys (openssl rand -base64 32)',
      );
    }
  }
  const placeholder = (secret: string) => isDegenerate(Buffer.from(secret.slice('whsec_'.length), 'base64'));
  if (config.production && config.webhooks.some((endpoint) => placeholder(endpoint.secret))) {
    throw new ConfigError(
      'SOCIAL_LINK_WEBHOOK_SECRET: a secret of one repeated byte (all zeros…) is a placeholder, not a secret; in production give a random one (whsec_$(openssl rand -base64 32))',
    );
  }
  const hook = config.production ? config.blockingHooks.find((candidate) => placeholder(candidate.secret)) : undefined;
  if (hook) {
    throw new ConfigError(
      `SOCIAL_LINK_HOOK_${hook.name.toUpperCase()}_SECRET (or SOCIAL_LINK_HOOK_SECRET): a secret of one repeated byte (all zeros…) is a placeholder, not a secret; in production give a random one (whsec_$(openssl rand -base64 32))`,
    );
  }
  return config;
}

/** A key of one byte repeated (32 zero bytes, a copied example): anyone can guess it. */
const isDegenerate = (key: Buffer) => key.length > 0 && key.every((byte) => byte === key[0]);

/** TRUST_PROXY: false (default), true, a hop count, or comma-separated addresses/CIDRs of the proxies. */
function trustProxy(settings: Settings): boolean | number | string[] {
  const raw = settings.string('TRUST_PROXY');
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  if (/^\d+$/.test(raw)) return Number(raw);
  return settings.list('TRUST_PROXY');
}

function redisUrl(settings: Settings): string | undefined {
  const url = settings.string('REDIS_URL');
  if (url !== undefined && !/^rediss?:\/\//.test(url))
    throw new ConfigError(`REDIS_URL must start with redis:// or rediss://, got "${url}"`);
  return url;
}

/**
 * SOCIAL_AUTH_ID_TOKEN_REPLAY: allow (default: an app's cached ID token signs in again until it expires, as Google's
 * silentSignIn, GoogleSignIn-iOS's restorePreviousSignIn and Facebook's AuthenticationToken.current hand it back) or
 * refuse (an ID token signs in once: for operators whose apps ask the SDK for a new token, with a nonce, every time).
 */
function replayRefused(settings: Settings): boolean {
  const value = settings.string('SOCIAL_AUTH_ID_TOKEN_REPLAY', 'allow');
  if (value !== 'refuse' && value !== 'allow')
    throw new ConfigError(`SOCIAL_AUTH_ID_TOKEN_REPLAY must be refuse or allow, got "${value}"`);
  return value === 'refuse';
}

/** Where this server listens, as a URL (a wildcard host is this machine). */
function defaultPublicUrl(settings: Settings): string {
  const host = settings.string('HOST', '127.0.0.1');
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${settings.string('PORT', '8000')}`;
}

/** "/myapp" (no trailing slash), or undefined when the compatibility routes are off. */
function compatPrefixOf(settings: Settings): string | undefined {
  const raw = settings.string('SOCIAL_LINK_COMPAT_PREFIX');
  if (!raw) return undefined;
  const prefix = raw.replace(/\/$/, '');
  if (prefix === '')
    throw new ConfigError(
      "SOCIAL_LINK_COMPAT_PREFIX: at the root, /api/associate/ and /api/auth/ are social-link's own routes (they answer what the original ones did, and more); give the prefix the released apps call, such as /myapp",
    );
  if (!/^\/[\w.-]+(\/[\w.-]+)*$/.test(prefix))
    throw new ConfigError(`SOCIAL_LINK_COMPAT_PREFIX must be a path such as /myapp, got "${prefix}"`);
  return prefix;
}

/** The blocking hooks, each where a sign-in or a link may be refused or given claims (core/blocking-hooks.ts). */
export const BLOCKING_HOOKS = ['before_user_created', 'before_link', 'before_sign_in'] as const;
export type BlockingHookName = (typeof BLOCKING_HOOKS)[number];

/** One blocking hook, as the operator configured it. */
export interface BlockingHookConfig {
  name: BlockingHookName;
  url: string;
  /** `whsec_` + base64 (Standard Webhooks): each call is signed with it. */
  secret: string;
  /** Its answer is awaited this long; then it has failed. */
  timeoutMs: number;
  /** A failed call (timeout, 5xx, malformed answer) lets the sign-in go on (open) or refuses it with 503 (closed). */
  failOpen: boolean;
}

/**
 * SOCIAL_LINK_HOOK_<NAME>_URL for each hook used; _SECRET (else SOCIAL_LINK_HOOK_SECRET, one for all); _TIMEOUT_MS
 * (else SOCIAL_LINK_HOOK_TIMEOUT_MS, 2000); _FAIL=closed (the default) or open.
 */
function blockingHooksOf(settings: Settings): BlockingHookConfig[] {
  const hooks: BlockingHookConfig[] = [];
  const defaultTimeout = settings.int('SOCIAL_LINK_HOOK_TIMEOUT_MS', 2000, { min: 50, max: 30_000 });
  for (const name of BLOCKING_HOOKS) {
    const prefix = `SOCIAL_LINK_HOOK_${name.toUpperCase()}`;
    if (!settings.string(`${prefix}_URL`)) continue;
    const secret = settings.string(`${prefix}_SECRET`) ?? settings.string('SOCIAL_LINK_HOOK_SECRET');
    if (!secret)
      throw new ConfigError(
        `${prefix}_URL needs a signing secret: ${prefix}_SECRET, or SOCIAL_LINK_HOOK_SECRET for all`,
      );
    checkStandardWebhooksSecret(`${prefix}_SECRET (or SOCIAL_LINK_HOOK_SECRET)`, secret);
    const fail = settings.string(`${prefix}_FAIL`, 'closed');
    if (fail !== 'closed' && fail !== 'open')
      throw new ConfigError(`${prefix}_FAIL must be closed (refuse while the hook fails) or open, got "${fail}"`);
    settings.url(`${prefix}_URL`, ''); // checked as a URL (https in production), then called as written
    hooks.push({
      name,
      url: settings.string(`${prefix}_URL`, ''),
      secret,
      timeoutMs: settings.int(`${prefix}_TIMEOUT_MS`, defaultTimeout, { min: 50, max: 30_000 }),
      failOpen: fail === 'open',
    });
  }
  return hooks;
}

/** A Standard Webhooks secret: whsec_ + base64 of at least 24 random bytes. */
function checkStandardWebhooksSecret(variable: string, secret: string): void {
  const key = /^whsec_([A-Za-z0-9+/]+=*)$/.exec(secret)?.[1];
  if (!key || Buffer.from(key, 'base64').length < 24) {
    throw new ConfigError(
      `${variable}: each secret is whsec_ + base64 of at least 24 random bytes (e.g. whsec_$(openssl rand -base64 32))`,
    );
  }
}

/** The endpoints: SOCIAL_LINK_WEBHOOK_URL (comma-separated) with SOCIAL_LINK_WEBHOOK_SECRET (one for all, or one each). */
function webhooksOf(settings: Settings): WebhookEndpoint[] {
  const urls = settings.list('SOCIAL_LINK_WEBHOOK_URL');
  if (urls.length === 0) return [];
  const secrets = settings.list('SOCIAL_LINK_WEBHOOK_SECRET');
  if (secrets.length !== 1 && secrets.length !== urls.length) {
    throw new ConfigError(
      'SOCIAL_LINK_WEBHOOK_SECRET must be one secret, or one per SOCIAL_LINK_WEBHOOK_URL, in the same order',
    );
  }
  for (const secret of secrets) checkStandardWebhooksSecret('SOCIAL_LINK_WEBHOOK_SECRET', secret);
  return urls.map((url, index) => ({
    url: new Settings({ NODE_ENV: settings.env.NODE_ENV, SOCIAL_LINK_WEBHOOK_URL: url }).url(
      'SOCIAL_LINK_WEBHOOK_URL',
      url,
    ),
    secret: secrets[secrets.length === 1 ? 0 : index]!,
  }));
}
