import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { Log } from '../lib/log.js';
import type { DeliveryOutcome } from '../core/webhooks.js';
import type { HookOutcome } from '../core/blocking-hooks.js';
import type { ProviderOutcome } from '../providers/http.js';
import { isDatabaseUnavailable } from '../store/database-health.js';
import type { OutboxBacklog } from '../store/outbox.js';
import type { Storage } from '../store/storage.js';

/** What a social route does with the provider's token: link it to the signed-in user, or sign in with it. */
export type SocialAction = 'associate' | 'auth';

/** Reads a route's provider name from its path parameters (compat.ts maps python-social-auth's backend names). */
export type ProviderOfParams = (params: Readonly<Record<string, string | undefined>>) => string | undefined;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A provider callback route names its provider (routes/callbacks.ts): its answers are counted by provider and outcome. */
    providerCallback?: string;
    /** An associate or auth route (routes/social.ts, compat.ts): each answer is counted by action, provider and result (hooks.ts). */
    socialRequest?: { action: SocialAction; provider: ProviderOfParams };
  }
  interface FastifyInstance {
    metrics: Metrics;
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

/**
 * The code of an error answer as the client got it (every error body is `{code, …}`, errors.ts): whatever raised it
 * (our catalogue, an operator's step, a validation or framework error, the rate limiter), the code is the one answered.
 */
export function answeredErrorCode(payload: unknown): string | undefined {
  if (typeof payload !== 'string') return undefined;
  try {
    const { code } = JSON.parse(payload) as { code?: unknown };
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/** How long a scrape waits for the outbox's figures before it answers the last ones read (a database away or slow). */
const OUTBOX_READ_TIMEOUT_MS = 2_000;

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

  // Counted in one place, by route config (hooks.ts); a provider name nobody configured is `unknown`, so that a
  // caller cannot add label values by making up names.
  readonly socialOutcomes = new Counter({
    name: 'social_link_social_requests_total',
    help: 'Associate and auth requests by action, provider and result (ok, or the error code answered)',
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

  readonly webhookDeliveries = new Counter({
    name: 'social_link_webhook_deliveries_total',
    help: 'Webhook delivery attempts by event type and outcome (delivered; failed, to be tried again; gave_up, no retry left)',
    labelNames: ['event', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly webhookDeliveryDuration = new Histogram({
    name: 'social_link_webhook_delivery_duration_seconds',
    help: 'Webhook delivery attempts by outcome: time from sending to the endpoint’s answer (or its failure)',
    labelNames: ['outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly blockingHookCalls = new Histogram({
    name: 'social_link_blocking_hook_duration_seconds',
    help: "Blocking hook calls (the app's backend asked during a sign-in or a link) by hook and outcome (allowed, refused, timeout, unavailable, malformed): time to its answer or its failure",
    labelNames: ['hook', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  // The outbox is the database's, not a process's: every `serve --workers` worker reads the same figures, so the
  // group answers the highest (the freshest backlog), not their sum.
  readonly outboxPending = new Gauge({
    name: 'social_link_webhook_outbox_pending',
    help: 'Webhook deliveries not yet made (an event counts once per endpoint), read from the database at each scrape',
    registers: [this.registry],
    aggregator: 'max',
    collect: async () => {
      const backlog = await this.readBacklog();
      if (backlog) this.outboxPending.set(backlog.pending);
    },
  });

  readonly outboxOldestAge = new Gauge({
    name: 'social_link_webhook_outbox_oldest_age_seconds',
    help: 'Age of the oldest webhook event not yet delivered (0 when none), read from the database at each scrape',
    registers: [this.registry],
    aggregator: 'max',
    collect: async () => {
      const backlog = await this.readBacklog();
      if (backlog)
        this.outboxOldestAge.set(
          backlog.oldestCreatedAt ? Math.max(0, (Date.now() - Date.parse(backlog.oldestCreatedAt)) / 1000) : 0,
        );
    },
  });

  private outbox: { storage: Storage; log: Log } | undefined;
  /** The read under way: both outbox gauges of one scrape share one query. */
  private backlogRead: Promise<OutboxBacklog | undefined> | undefined;

  /** The text /metrics answers: this app's figures, or (a `serve --workers` worker) the whole group's (shareWithPrimary). */
  exposition: () => Promise<string> = () => this.registry.metrics();

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

  observeBlockingHook = (hook: string, outcome: HookOutcome, seconds: number): void => {
    this.blockingHookCalls.observe({ hook, outcome }, seconds);
  };

  observeWebhookDelivery = (event: string, outcome: DeliveryOutcome, seconds: number): void => {
    this.webhookDeliveries.inc({ event, outcome });
    this.webhookDeliveryDuration.observe({ outcome }, seconds);
  };

  /** The outbox gauges read this storage's backlog at each scrape. */
  watchOutbox(storage: Storage, log: Log): void {
    this.outbox = { storage, log };
  }

  /**
   * The outbox's backlog, or undefined when it cannot be read now (the gauges then keep their last values): a
   * scrape never fails, nor waits long, for a database that is away.
   */
  private readBacklog(): Promise<OutboxBacklog | undefined> {
    const outbox = this.outbox;
    if (!outbox) return Promise.resolve(undefined);
    // One read at a time, kept until it settles: a slow one is not started again by every scrape meanwhile.
    this.backlogRead ??= outbox.storage.outbox
      .backlog()
      .catch((error: unknown) => {
        if (isDatabaseUnavailable(error)) outbox.storage.health.fault(error);
        else outbox.log.warn({ reason: (error as Error).message }, 'metrics: could not read the webhook outbox');
        return undefined;
      })
      .finally(() => (this.backlogRead = undefined));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>(
      (resolve) => (timer = setTimeout(() => resolve(undefined), OUTBOX_READ_TIMEOUT_MS)),
    );
    return Promise.race([this.backlogRead, late]).finally(() => clearTimeout(timer));
  }

  /**
   * In a `serve --workers` worker (server.ts), before it listens: the primary collects this app's figures over IPC
   * (gatherWorkersMetrics), and /metrics answers those of every worker, added up by the primary.
   */
  shareWithPrimary(): void {
    const asked = new Map<number, (answer: { text?: string; error?: string }) => void>();
    let nextId = 0;
    process.on('message', (message: unknown) => {
      if (!isMetricsMessage(message)) return;
      if (message.kind === 'collect') {
        this.registry.getMetricsAsJSON().then(
          (metrics) =>
            process.send?.(
              { type: METRICS_MESSAGE, kind: 'collected', id: message.id, metrics } satisfies MetricsMessage,
              ignoreSendError,
            ),
          (error: unknown) =>
            process.send?.(
              {
                type: METRICS_MESSAGE,
                kind: 'collected',
                id: message.id,
                error: (error as Error).message,
              } satisfies MetricsMessage,
              ignoreSendError,
            ),
        );
      } else if (message.kind === 'answer') asked.get(message.id)?.(message);
    });
    process.send?.({ type: METRICS_MESSAGE, kind: 'ready' } satisfies MetricsMessage, ignoreSendError);
    this.exposition = () =>
      new Promise<string>((resolve, reject) => {
        const id = nextId++;
        const settle = (answer: { text?: string; error?: string }) => {
          clearTimeout(timer);
          asked.delete(id);
          if (answer.text !== undefined) resolve(answer.text);
          else reject(new Error(`the metrics of the workers: ${answer.error ?? 'no answer'}`));
        };
        // The primary answers within COLLECT_TIMEOUT_MS (a worker that does not answer fails the scrape): more is a primary gone.
        const timer = setTimeout(() => settle({ error: 'the primary did not answer' }), 2 * COLLECT_TIMEOUT_MS);
        asked.set(id, settle);
        if (!process.send) return settle({ error: 'not a cluster worker' });
        process.send(
          { type: METRICS_MESSAGE, kind: 'ask', id } satisfies MetricsMessage,
          (error: Error | null) => error && settle({ error: error.message }),
        );
      });
  }
}

/** One worker's figures, as Registry.getMetricsAsJSON gives them (and AggregatorRegistry.aggregate takes them). */
type WorkerFigures = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

const METRICS_MESSAGE = 'social-link:metrics';

/**
 * Between a `serve --workers` primary and its workers: a worker says it is ready to be collected (its app is
 * built), asks for the group's figures and gets them as text; the primary collects each ready worker's figures.
 */
type MetricsMessage =
  | { type: typeof METRICS_MESSAGE; kind: 'ready' }
  | { type: typeof METRICS_MESSAGE; kind: 'ask'; id: number }
  | { type: typeof METRICS_MESSAGE; kind: 'answer'; id: number; text?: string; error?: string }
  | { type: typeof METRICS_MESSAGE; kind: 'collect'; id: number }
  | { type: typeof METRICS_MESSAGE; kind: 'collected'; id: number; metrics?: WorkerFigures; error?: string };

const isMetricsMessage = (message: unknown): message is MetricsMessage =>
  typeof message === 'object' && message !== null && (message as { type?: unknown }).type === METRICS_MESSAGE;

/** A peer that went away while we answered it: nothing to do (its exit is handled where it is seen). */
const ignoreSendError = () => {};

/** How long the primary waits for a worker's figures: a worker that does not answer fails the scrape rather than leave its counts out. */
const COLLECT_TIMEOUT_MS = 5_000;

/**
 * The primary of `serve --workers`: a worker asked for /metrics gets the figures of every worker, added up by
 * prom-client's cluster aggregation (AggregatorRegistry.aggregate: each metric by its `aggregator`, sum by default).
 * Our own messages rather than AggregatorRegistry.clusterMetrics(): that asks every connected worker, and one still
 * booting (its listener not yet there) drops the question, failing scrapes for 5 s after each start or restart;
 * here the primary asks only the workers that said they are ready, and one that exits during a scrape is left out.
 */
export function gatherWorkersMetrics(): void {
  const ready = new Set<Worker>();
  const collecting = new Map<number, { worker: Worker; done: (figures: WorkerFigures | Error) => void }>();
  let nextId = 0;

  const collectFrom = (worker: Worker) =>
    new Promise<WorkerFigures>((resolve, reject) => {
      const id = nextId++;
      const done = (figures: WorkerFigures | Error) => {
        clearTimeout(timer);
        collecting.delete(id);
        if (figures instanceof Error) reject(figures);
        else resolve(figures);
      };
      const timer = setTimeout(
        () => done(new Error(`worker ${worker.process.pid} did not send its metrics within ${COLLECT_TIMEOUT_MS} ms`)),
        COLLECT_TIMEOUT_MS,
      );
      collecting.set(id, { worker, done });
      // A worker whose channel just closed is exiting: its figures go with it.
      worker.send(
        { type: METRICS_MESSAGE, kind: 'collect', id } satisfies MetricsMessage,
        (error: Error | null) => error && done([]),
      );
    });

  const answer = (worker: Worker, id: number, reply: { text: string } | { error: string }) => {
    if (worker.isConnected())
      worker.send({ type: METRICS_MESSAGE, kind: 'answer', id, ...reply } satisfies MetricsMessage, ignoreSendError);
  };

  cluster.on('message', (worker, message: unknown) => {
    if (!isMetricsMessage(message)) return;
    if (message.kind === 'ready') ready.add(worker);
    else if (message.kind === 'collected') {
      // Only the worker asked answers for its id.
      const entry = collecting.get(message.id);
      if (entry?.worker === worker)
        entry.done(message.error !== undefined ? new Error(message.error) : (message.metrics ?? []));
    } else if (message.kind === 'ask') {
      const workers = [...ready].filter((each) => each.isConnected());
      Promise.all(workers.map(collectFrom))
        .then((figures) => AggregatorRegistry.aggregate(figures).metrics())
        .then(
          (text) => answer(worker, message.id, { text }),
          (error: unknown) => answer(worker, message.id, { error: (error as Error).message }),
        );
    }
  });
  cluster.on('exit', (worker) => {
    ready.delete(worker);
    for (const entry of collecting.values()) if (entry.worker === worker) entry.done([]);
  });
}
