import { ProviderUnavailableError } from '../lib/errors.js';
import type { Provider } from './types.js';

/**
 * One provider's circuit breaker. After `threshold` verifications in a row failed because the provider
 * was down (an outage: see ProviderFailure), it opens: requests answer 503 at once for `cooldownMs`, instead of piling up while
 * each waits for a timeout. Then it lets one trial through (half-open): a success closes it, a failure
 * opens it again. It counts whole verifications, not HTTP calls, since one sign-in may make several.
 */
export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;
  private trialInFlight = false;

  constructor(private readonly options: { threshold: number; cooldownMs: number }) {}

  /** May a call go out now? (In half-open state, only the first caller gets a yes.) */
  allow(): boolean {
    if (this.failures < this.options.threshold) return true;
    if (Date.now() < this.openUntil || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  /** closed: calls go out; open: refused until the cool-down ends; half-open: one trial may go out. */
  get state(): 'closed' | 'open' | 'half-open' {
    if (this.failures < this.options.threshold) return 'closed';
    return Date.now() < this.openUntil ? 'open' : 'half-open';
  }

  succeeded(): void {
    this.failures = 0;
    this.trialInFlight = false;
  }

  failed(): void {
    this.failures += 1;
    this.trialInFlight = false;
    if (this.failures >= this.options.threshold) this.openUntil = Date.now() + this.options.cooldownMs;
  }
}

/** The provider with its verifications (and revocations) behind the breaker. */
export function withCircuitBreaker(provider: Provider, breaker: CircuitBreaker): Provider {
  const guard = async <T>(work: () => Promise<T>): Promise<T> => {
    if (!breaker.allow()) {
      throw new ProviderUnavailableError(provider.name, 'failed repeatedly just now; not called for a few seconds', {
        status: 503,
      });
    }
    try {
      const result = await work();
      breaker.succeeded();
      return result;
    } catch (error) {
      // Only an outage counts. A refused token is the provider working fine; so is a rate limit or a refusal
      // of our app, which may be one user's limit (Graph 17, X 88) and must not close the provider to all.
      if (error instanceof ProviderUnavailableError && error.failure === 'outage') breaker.failed();
      else breaker.succeeded();
      throw error;
    }
  };
  return {
    name: provider.name,
    verify: (input, options) =>
      guard(async () => {
        const identity = await provider.verify(input, options);
        const { loadProfile } = identity;
        return loadProfile ? { ...identity, loadProfile: () => guard(loadProfile) } : identity;
      }),
    warmUp: provider.warmUp && (() => provider.warmUp!()),
    revoke: provider.revoke && ((tokens) => guard(() => provider.revoke!(tokens))),
    // Local (no call to the provider): nothing for the breaker to count.
    verifySignedRequest:
      provider.verifySignedRequest && ((signedRequest) => provider.verifySignedRequest!(signedRequest)),
    verifyNotification:
      provider.verifyNotification && ((payload) => guard(() => provider.verifyNotification!(payload))),
    verifySecurityEvent: provider.verifySecurityEvent && ((token) => guard(() => provider.verifySecurityEvent!(token))),
  };
}
