/** Every emulated provider; `oidc` covers every generic OpenID Connect issuer under /oidc/:name. */
export const PROVIDERS = ['facebook', 'twitter', 'google', 'apple', 'line', 'github', 'oidc'] as const;
export type Provider = (typeof PROVIDERS)[number];

export const FAULT_MODES = [
  'none',
  'error_500',
  'garbage',
  'reset',
  'hang',
  'rate_limited',
  'app_access_denied',
] as const;
export type FaultMode = (typeof FAULT_MODES)[number];

/** The providers that document an answer for these modes (the others have none to imitate). */
export const DOCUMENTED_FAULTS: Partial<Record<FaultMode, readonly Provider[]>> = {
  rate_limited: ['facebook', 'twitter', 'line', 'github'],
  app_access_denied: ['twitter', 'line'],
};

export interface FaultSettings {
  latency_ms: number;
  /**
   * Each answer waits latency_ms plus or minus up to this much, uniformly (the mean stays latency_ms). A real provider's
   * latency varies; a fixed one makes a closed-loop load generator's requests come back together, in waves.
   */
  latency_jitter_ms?: number;
  mode: FaultMode;
  /** rate_limited on facebook: the Graph error code (4 application, 17 user, 32 page, 613 custom, 80001… business). Default 4. */
  code?: number;
  /** rate_limited on github: a secondary rate limit (429 with Retry-After) instead of the primary one (403, remaining 0). */
  secondary?: boolean;
  /**
   * Facebook only: whether Graph checks the appsecret_proof parameter ('verify', the default: a wrong one is refused),
   * ignores it, or requires it on user-token calls (the app's "Require App Secret" setting).
   */
  appsecret_proof?: 'verify' | 'ignore' | 'require';
  /** The mode applies to this many more requests only, then goes back to none (absent: until cleared). */
  count?: number;
}

export interface IssuedToken {
  provider: Provider;
  /** Facebook app id or Twitter consumer key the token was issued to. */
  clientId: string;
  userId: string;
  scopes: string[];
  issuedAtMs: number;
  /** null: never expires (Twitter's OAuth 1.0a tokens by default). */
  expiresAtMs: number | null;
  /** Twitter's oauth_token_secret. */
  secret?: string;
  /** When the user ended the grant (removed the app, changed the password): POST /_emulator/tokens/revoke. */
  revokedAtMs?: number;
}

export interface FacebookUser {
  id: string;
  name: string;
  first_name: string;
  last_name: string;
  email: string;
}

export interface TwitterUser {
  id: string;
  screen_name: string;
  name: string;
  email: string;
  createdAtMs: number;
}

/** Registered clients per provider: Facebook app id -> app secret, Twitter consumer key -> consumer secret. */
export type ClientSecrets = Record<'facebook' | 'twitter', Record<string, string>>;

function defaultFaults(): Record<Provider, FaultSettings> {
  const faults = Object.fromEntries(PROVIDERS.map((provider) => [provider, { latency_ms: 0, mode: 'none' }])) as Record<
    Provider,
    FaultSettings
  >;
  faults.facebook.appsecret_proof = 'verify';
  return faults;
}

function zeroCounts(): Record<Provider, number> {
  return Object.fromEntries(PROVIDERS.map((provider) => [provider, 0])) as Record<Provider, number>;
}

export class EmulatorState {
  readonly clients: Record<'facebook' | 'twitter', Map<string, string>>;
  readonly tokens = new Map<string, IssuedToken>();
  readonly facebookUsers = new Map<string, FacebookUser>();
  readonly twitterUsers = new Map<string, TwitterUser>();
  /** OAuth 1.0a nonce key -> when it was first seen (ms), to refuse replays. */
  readonly seenNonces = new Map<string, number>();
  faults = defaultFaults();
  /** Providers that keep state of their own (in their own module) register how to clear it on reset. */
  readonly onReset: Array<() => void> = [];
  requestCounts = zeroCounts();

  constructor(private readonly configuredClients: ClientSecrets) {
    this.clients = {
      facebook: new Map(Object.entries(configuredClients.facebook)),
      twitter: new Map(Object.entries(configuredClients.twitter)),
    };
  }

  isExpired(token: IssuedToken, nowMs = Date.now()): boolean {
    return token.expiresAtMs !== null && token.expiresAtMs <= nowMs;
  }

  /** Neither expired nor revoked. */
  isLive(token: IssuedToken): boolean {
    return !this.isExpired(token) && token.revokedAtMs === undefined;
  }

  clearFaults(): void {
    this.faults = defaultFaults();
  }

  /** Back to a fresh start; clients registered on the fly by the control API are forgotten too. */
  reset(): void {
    for (const provider of ['facebook', 'twitter'] as const) {
      this.clients[provider] = new Map(Object.entries(this.configuredClients[provider]));
    }
    this.tokens.clear();
    this.facebookUsers.clear();
    this.twitterUsers.clear();
    this.seenNonces.clear();
    this.clearFaults();
    this.requestCounts = zeroCounts();
    for (const resetProvider of this.onReset) resetProvider();
  }
}
