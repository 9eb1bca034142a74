import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { ProviderOutcome } from '../providers/http.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A provider callback route names its provider (routes/callbacks.ts): its answers are counted by provider and outcome. */
    providerCallback?: string;
  }
}

/**
 * How a provider callback ended: ok (verified, acted on or acknowledged), refused (not signed for us, too old, dated
 * in the future: invalid_token), invalid (malformed, or a signature not written as base64url writes it), rate_limited,
 * server_error.
 */
export type CallbackOutcome = 'ok' | 'refused' | 'invalid' | 'rate_limited' | 'server_error';

export function callbackOutcome(statusCode: number, errorCode: string | undefined): CallbackOutcome {
  if (statusCode < 400) return 'ok';
  if (statusCode === 429) return 'rate_limited';
  if (statusCode >= 500) return 'server_error';
  return errorCode === 'invalid_token' ? 'refused' : 'invalid';
}

/** Prometheus metrics of one app; a registry per app, so several apps can live in one process (tests). */
export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Histogram({
    name: 'social_link_http_request_duration_seconds',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly providerCalls = new Histogram({
    name: 'social_link_provider_request_duration_seconds',
    help: 'Calls to providers by provider and outcome',
    labelNames: ['provider', 'outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly socialOutcomes = new Counter({
    name: 'social_link_social_requests_total',
    help: 'Associate and auth requests by provider and result code',
    labelNames: ['action', 'provider', 'result'] as const,
    registers: [this.registry],
  });

  // Refused callbacks are counted here, not audited: a forger would write a row per call (hooks.ts).
  readonly providerCallbacks = new Counter({
    name: 'social_link_provider_callbacks_total',
    help: 'Provider callbacks (data deletion, deauthorize, Apple notifications, Google RISC) by provider and outcome',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'social_link_' });
  }

  /** Calls per provider since start, and how many failed for a reason of the provider's (not a refused token). */
  async providerCallCounts(): Promise<Array<{ provider: string; calls: number; failures: number }>> {
    const counts = new Map<string, { provider: string; calls: number; failures: number }>();
    for (const sample of (await this.providerCalls.get()).values) {
      if (!sample.metricName?.endsWith('_count')) continue;
      const provider = String(sample.labels.provider);
      const entry = counts.get(provider) ?? { provider, calls: 0, failures: 0 };
      entry.calls += sample.value;
      if (sample.labels.outcome !== 'ok' && sample.labels.outcome !== 'refused') entry.failures += sample.value;
      counts.set(provider, entry);
    }
    return [...counts.values()];
  }

  observeProviderCall = (provider: string, outcome: ProviderOutcome, seconds: number): void => {
    this.providerCalls.observe({ provider, outcome }, seconds);
  };
}
