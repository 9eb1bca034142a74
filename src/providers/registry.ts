import type { Log } from '../lib/log.js';
import type { SecretBox } from '../auth/secret-box.js';
import { unknownProvider } from '../lib/errors.js';
import { CircuitBreaker, withCircuitBreaker } from './circuit-breaker.js';
import type { ProviderCallObserver, ProviderHttp } from './http.js';
import type { ProviderConfigs } from './index.js';
import type { Provider } from './types.js';

export interface RegistryOptions {
  timeoutMs: number;
  circuitBreaker: { threshold: number; cooldownMs: number };
  observe?: ProviderCallObserver;
}

/**
 * The enabled providers, each behind its circuit breaker with its own keep-alive pool: built once from
 * the configuration, for the server and the embedding plugin alike.
 */
export class ProviderRegistry {
  private readonly providers = new Map<string, Provider>();
  private readonly pools: ProviderHttp[] = [];
  private readonly breakers = new Map<string, CircuitBreaker>();
  /** The providers whose verified e-mails are evidence (SOCIAL_AUTH_<P>_EMAIL_TRUST=verified). */
  readonly emailTrusted: readonly string[];
  /** The enabled providers' names. */
  readonly names: readonly string[];

  constructor(configs: ProviderConfigs, options: RegistryOptions) {
    const emailTrusted: string[] = [];
    for (const enabled of configs) {
      const { provider, http } = enabled.create({ timeoutMs: options.timeoutMs, observe: options.observe });
      const breaker = new CircuitBreaker(options.circuitBreaker);
      this.breakers.set(enabled.name, breaker);
      this.providers.set(enabled.name, withCircuitBreaker(provider, breaker));
      this.pools.push(http);
      if (enabled.emailTrust === 'verified') emailTrusted.push(enabled.name);
    }
    this.emailTrusted = emailTrusted;
    this.names = [...this.providers.keys()];
  }

  /** The provider of that name, or 404 unknown_provider. */
  get(name: string): Provider {
    const provider = this.providers.get(name);
    if (!provider) throw unknownProvider(name);
    return provider;
  }

  /** Each enabled provider's circuit state (the console's dashboard). */
  circuits(): Array<{ provider: string; state: CircuitBreaker['state'] }> {
    return [...this.breakers].map(([provider, breaker]) => ({ provider, state: breaker.state }));
  }

  has(name: string): boolean {
    return this.providers.has(name);
  }

  /** Starts fetching what verification needs (keys, discovery) in the background. */
  warmUp(): void {
    for (const provider of this.providers.values()) provider.warmUp?.();
  }

  /**
   * Revokes the provider tokens kept for a removed link (Sign in with Apple's refresh token), so that
   * unlinking and account deletion also end the grant at the provider. A failure is logged, never thrown:
   * the link is already gone and must not come back.
   */
  async revokeKept(
    link: { provider: string; uid: string; sealedTokens: string | null } | undefined,
    secrets: SecretBox,
    log: Log,
  ): Promise<void> {
    if (!link?.sealedTokens || !this.providers.get(link.provider)?.revoke) return;
    const opened = secrets.open(link.sealedTokens, `${link.provider}:${link.uid}`);
    if (!opened)
      return log.warn({ provider: link.provider }, 'kept provider tokens could not be decrypted; not revoked');
    await this.revoke(link.provider, JSON.parse(opened) as Record<string, string>, log);
  }

  /** Ends a provider grant (see Provider.revoke); a failure is logged, never thrown. */
  async revoke(providerName: string, tokens: Record<string, string>, log: Log): Promise<void> {
    const provider = this.providers.get(providerName);
    if (!provider?.revoke) return;
    await provider
      .revoke(tokens)
      .catch((error: unknown) =>
        log.warn({ provider: providerName, reason: (error as Error).message }, 'revoking provider tokens failed'),
      );
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((pool) => pool.close()));
  }
}
