import { describe, expect, it } from 'vitest';
import { ProviderUnavailableError, providerRateLimited, providerRefusedApp, InvalidTokenError } from '../lib/errors.js';
import { CircuitBreaker, withCircuitBreaker } from './circuit-breaker.js';
import type { Provider } from './types.js';

/** A provider whose next verifications fail (or succeed) as scripted. */
function scripted(outcomes: Array<Error | 'ok'>): Provider & { calls: number } {
  const provider = {
    name: 'scripted',
    calls: 0,
    async verify() {
      const outcome = outcomes[provider.calls++] ?? 'ok';
      if (outcome !== 'ok') throw outcome;
      return { uid: '1', details: {}, extraData: {} };
    },
  };
  return provider;
}

const outage = () => new ProviderUnavailableError('scripted', 'down');

describe('CircuitBreaker', () => {
  it('opens after `threshold` outages in a row: then 503 without calling the provider', async () => {
    const provider = scripted([outage(), outage(), outage()]);
    const guarded = withCircuitBreaker(provider, new CircuitBreaker({ threshold: 3, cooldownMs: 60_000 }));
    for (let i = 0; i < 3; i++) await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 502 });
    await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 503, code: 'provider_unavailable' });
    expect(provider.calls).toBe(3);
  });

  it('never counts a refused token, a rate limit or a refusal of our app: the provider answered', async () => {
    const refusals = [
      new InvalidTokenError('no'),
      providerRateLimited('scripted', 'HTTP 429'),
      providerRefusedApp('scripted', 'HTTP 403', 'fix it'),
    ];
    const provider = scripted([...refusals, ...refusals, ...refusals]);
    const guarded = withCircuitBreaker(provider, new CircuitBreaker({ threshold: 2, cooldownMs: 60_000 }));
    for (let i = 0; i < 9; i++) await expect(guarded.verify({})).rejects.toBeInstanceOf(Error);
    await expect(guarded.verify({})).resolves.toMatchObject({ uid: '1' });
    expect(provider.calls).toBe(10);
  });

  it('after the cool-down lets one trial through: a success closes it, a failure opens it again', async () => {
    const provider = scripted([outage(), outage(), 'ok', 'ok']);
    const guarded = withCircuitBreaker(provider, new CircuitBreaker({ threshold: 1, cooldownMs: 20 }));
    await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 502 });
    await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 503 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 502 }); // the trial failed: open again
    await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 503 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await expect(guarded.verify({})).resolves.toMatchObject({ uid: '1' });
    await expect(guarded.verify({})).resolves.toMatchObject({ uid: '1' }); // closed
  });

  it('counts a failed profile read as the provider failing', async () => {
    const breaker = new CircuitBreaker({ threshold: 1, cooldownMs: 60_000 });
    const provider: Provider = {
      name: 'lazy',
      verify: async () => ({ uid: '1', details: {}, extraData: {}, loadProfile: async () => Promise.reject(outage()) }),
    };
    const guarded = withCircuitBreaker(provider, breaker);
    const identity = await guarded.verify({});
    await expect(identity.loadProfile!()).rejects.toMatchObject({ statusCode: 502 });
    await expect(guarded.verify({})).rejects.toMatchObject({ statusCode: 503 });
  });
});
