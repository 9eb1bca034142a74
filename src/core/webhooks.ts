import { Webhook } from 'standardwebhooks';
import { isDatabaseUnavailable } from '../store/database-health.js';
import type { Storage } from '../store/storage.js';
import type { Delivery } from '../store/outbox.js';
import type { Log } from '../lib/log.js';
import { SignedPoster } from '../lib/signed-post.js';
import type { WebhookEndpoint } from '../config/config.js';

/**
 * Delivers the outbox's events (store/outbox.ts) to the configured endpoints, signed as the Standard Webhooks
 * specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256 with the endpoint's
 * `whsec_` secret, by the spec's own library). At least once: an event is retried with exponential back-off
 * (from `retryBaseMs`, at most 6 hours apart) until its endpoint answers 2xx, for up to 3 days; its
 * `webhook-id` stays the same, so the receiver can drop duplicates. A user's events arrive in order: one is
 * sent only once the ones before it were delivered or given up. Every server instance runs a dispatcher; they
 * share the work through the database.
 */
export type { WebhookEndpoint } from '../config/config.js';

/** How an attempt ended: delivered (2xx), failed (to be tried again), gave_up (failed, and no retry is left). */
export type DeliveryOutcome = 'delivered' | 'failed' | 'gave_up';

/** Told of every attempt once its outcome is recorded (the metrics): the event's type, the outcome, the attempt's seconds. */
export type DeliveryObserver = (event: string, outcome: DeliveryOutcome, seconds: number) => void;

export interface DispatcherOptions {
  intervalMs?: number;
  timeoutMs?: number;
  retryBaseMs?: number;
  giveUpAfterMs?: number;
  observe?: DeliveryObserver;
}

const MAX_DELAY_MS = 6 * 3_600_000;
const BATCH = 50;
/**
 * Claims per endpoint and tick, so that one busy endpoint does not hold the others back for long. A tick that ends with
 * an endpoint's rounds used up is followed by the next at once, not at the next interval: else no endpoint could be
 * sent more than MAX_ROUNDS × BATCH (1,000) events a second, fewer than a busy server signs in.
 */
const MAX_ROUNDS = 20;

export class WebhookDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** The next tick, when one is to follow at once (MAX_ROUNDS). */
  private next: NodeJS.Immediate | undefined;
  private readonly signers: Map<string, Webhook>;
  private readonly options: Required<Omit<DispatcherOptions, 'observe'>>;
  private readonly observe: DeliveryObserver;
  private readonly poster = new SignedPoster();
  /**
   * An endpoint whose last round failed every attempt is not claimed from again until the earliest of those retries
   * is due: a receiver that is down gets no new event meanwhile (each would fail too), and the claim does not walk its
   * growing backlog every second (store/outbox.ts `claimable`).
   */
  private readonly pausedUntil = new Map<string, number>();

  constructor(
    private readonly storage: Storage,
    private readonly endpoints: readonly WebhookEndpoint[],
    private readonly log: Log,
    options: DispatcherOptions = {},
  ) {
    this.signers = new Map(endpoints.map((endpoint) => [endpoint.url, new Webhook(endpoint.secret)]));
    const { observe = () => {}, ...timing } = options;
    this.options = { intervalMs: 1000, timeoutMs: 10_000, retryBaseMs: 5000, giveUpAfterMs: 3 * 86_400_000, ...timing };
    this.observe = observe;
  }

  start(): void {
    if (this.timer) return;
    // Events of an endpoint removed from the configuration: given up, visible as failed.
    void this.storage.outbox.abandonUnconfigured().then(
      (count) =>
        count > 0 &&
        this.log.warn(
          { count },
          'webhooks: deliveries to endpoints no longer configured are given up (social-link webhooks list --status failed)',
        ),
      (error: unknown) =>
        this.log.warn({ reason: (error as Error).message }, 'webhooks: could not check for removed endpoints'),
    );
    if (this.endpoints.length === 0) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs).unref();
  }

  /** Stops, after the round under way (its deliveries are recorded before the database closes). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearImmediate(this.next);
    await this.running;
    await this.poster.close();
  }

  /** One round: every endpoint's due deliveries. */
  tick(): Promise<void> {
    if (this.stopped) return this.running ?? Promise.resolve();
    // Ended in a later turn (`then`), never before it is recorded as running: a round with nothing to do (every
    // endpoint resting) ends without waiting, and once left itself recorded as running for ever.
    const ended = (busy: boolean) => {
      this.running = undefined;
      if (busy && this.timer && !this.stopped) this.next = setImmediate(() => void this.tick());
    };
    this.running ??= this.deliverDue().then(ended, (error: unknown) => {
      this.log.warn({ reason: String(error) }, 'webhooks: a delivery round failed');
      ended(false);
    });
    return this.running;
  }

  /** Every endpoint's due deliveries; answers whether one had more due than a tick takes (MAX_ROUNDS). */
  private async deliverDue(): Promise<boolean> {
    let busy = false;
    try {
      for (const endpoint of this.endpoints) {
        if ((this.pausedUntil.get(endpoint.url) ?? 0) > Date.now()) continue;
        this.pausedUntil.delete(endpoint.url);
        // Again while there is work: a user's next event is due as soon as the one before it is delivered.
        let round = 0;
        for (; round < MAX_ROUNDS; round++) {
          const due = await this.storage.transaction((trx) => trx.outbox.claim(endpoint.url, BATCH));
          if (due.length === 0) break;
          // Every attempt ends before the round is recorded (a failure that could not be recorded included).
          const attempts = await Promise.allSettled(due.map((delivery) => this.attempt(endpoint, delivery)));
          const outcomes = attempts.map((attempt) => (attempt.status === 'fulfilled' ? attempt.value : undefined));
          const took = outcomes.map((outcome) => (outcome && 'seconds' in outcome ? outcome.seconds : undefined));
          // The round's deliveries recorded in one statement, then counted (as failures are, once recorded).
          await this.storage.outbox.delivered(due.filter((_, i) => took[i] !== undefined).map(({ id }) => id));
          due.forEach((delivery, i) => took[i] !== undefined && this.observe(delivery.type, 'delivered', took[i]));
          const unrecorded = attempts.find((attempt) => attempt.status === 'rejected');
          if (unrecorded) throw unrecorded.reason;
          if (took.some((seconds) => seconds !== undefined)) continue;
          // Nothing delivered: the endpoint rests until the first of these retries is due.
          const retries = outcomes.flatMap((outcome) =>
            outcome && 'retryAt' in outcome && outcome.retryAt !== undefined ? [outcome.retryAt] : [],
          );
          if (retries.length > 0) {
            const until = Math.min(...retries);
            this.pausedUntil.set(endpoint.url, until);
            this.log.warn(
              { endpoint: endpoint.url, failed: due.length, until: new Date(until).toISOString() },
              'webhooks: every attempt of a round failed; no new attempt to this endpoint until its first retry is due',
            );
          }
          break;
        }
        // Every round delivered something, and there may be more.
        if (round === MAX_ROUNDS) busy = true;
      }
    } catch (error) {
      // The database away: said once by DatabaseHealth, not every second by this loop.
      if (isDatabaseUnavailable(error)) this.storage.health.fault(error);
      else this.log.warn({ reason: (error as Error).message }, 'webhooks: a delivery round failed');
      return false;
    }
    return busy;
  }

  /**
   * One attempt: the seconds it took when the endpoint answered 2xx; a failure is recorded (and counted) here, and
   * answers when it is tried again (undefined: given up).
   */
  private async attempt(
    endpoint: WebhookEndpoint,
    delivery: Delivery,
  ): Promise<{ seconds: number } | { retryAt: number | undefined }> {
    const sentAt = new Date();
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    let failure: string;
    try {
      const message = { id: delivery.eventId, at: sentAt, body: delivery.payload };
      const signer = this.signers.get(endpoint.url)!;
      const response = await this.poster.post(endpoint.url, message, signer, this.options.timeoutMs);
      await response.body.dump();
      if (response.statusCode >= 200 && response.statusCode < 300) return { seconds: seconds() };
      failure = `HTTP ${response.statusCode}`;
    } catch (error) {
      // A connection refused on a dual-stack host is an AggregateError with no message: its code says it.
      const { code, message } = error as { code?: unknown; message?: string };
      failure = message || (typeof code === 'string' ? code : 'the request failed');
    }
    const took = seconds();
    const attempts = delivery.attempts + 1;
    const delay = Math.min(this.options.retryBaseMs * 2 ** (attempts - 1), MAX_DELAY_MS);
    const retryAt =
      Date.now() + delay - Date.parse(delivery.createdAt) <= this.options.giveUpAfterMs
        ? Date.now() + delay
        : undefined;
    if (retryAt === undefined)
      this.log.warn(
        { event: delivery.eventId, endpoint: endpoint.url, reason: failure },
        'webhooks: given up after 3 days (social-link webhooks replay)',
      );
    await this.storage.outbox.attemptFailed(
      delivery.id,
      attempts,
      failure,
      retryAt === undefined ? undefined : new Date(retryAt).toISOString(),
    );
    // Counted once recorded: an outcome the database did not take is tried again (and counted then).
    this.observe(delivery.type, retryAt === undefined ? 'gave_up' : 'failed', took);
    return { retryAt };
  }
}
