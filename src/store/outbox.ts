import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { idAmong, plannedEachRun } from './database.js';
import { isPostgres } from './migrations.js';
import { prepared } from './prepared.js';
import { now } from './rows.js';
import type { Database } from './schema.js';

/**
 * The transactional outbox of webhooks (core/webhooks.ts): an event is written in the transaction of the change
 * it tells (with the audit event of that change), one delivery row per configured endpoint; the dispatcher
 * delivers them afterwards. So an event exists if and only if its change committed.
 */
export interface OutboxEvent {
  type: WebhookEventType;
  userId: number | null;
  data: Record<string, unknown>;
}

/** The outbox gauge counts pending deliveries up to this many (a scrape's query stays cheap whatever the backlog). */
export const BACKLOG_COUNT_CAP = 100_000;

/** The catalogue of webhook events (README "Webhooks"). */
export type WebhookEventType =
  | 'user.created'
  | 'user.deleted'
  | 'link.created'
  | 'link.removed'
  | 'sign_in'
  | 'link.refused'
  | 'session.revoked'
  | 'user.merged'
  | 'user.disabled'
  | 'user.enabled'
  | 'user.claims_changed'
  | 'provider.event';

export interface Delivery {
  id: number;
  eventId: string;
  type: string;
  userId: number | null;
  /** The JSON body sent: {type, timestamp, data}. */
  payload: string;
  createdAt: string;
  endpoint: string;
  attempts: number;
}

/** The deliveries still to make (Outbox.backlog). */
export interface OutboxBacklog {
  pending: number;
  /** When the oldest event still pending was written; undefined when none is. */
  oldestCreatedAt: string | undefined;
}

/** How long a claimed delivery is reserved for the instance that claimed it. */
const CLAIM_SECONDS = 60;

/**
 * The ids of the deliveries `claim` takes (exported for the test that reads its query plans). It walks the endpoint's
 * pending deliveries oldest first (webhook_deliveries_claim_idx, which holds every column it filters on; PostgreSQL
 * may walk webhook_deliveries_pending_idx instead, as its statistics say) until `limit`
 * qualify: due, not claimed by another, and no older one of the same user pending (one probe of
 * webhook_deliveries_user_order_idx). Healthy, the walk stops after about `limit` rows whatever the backlog; while the
 * endpoint fails, its waiting deliveries are skipped one index entry each. 'pending' is a literal, not a parameter:
 * both databases use a partial index only when the query's own text implies its condition. SQLite is told the index
 * to walk (it keeps no statistics unless ANALYZE is run, and would choose another).
 */
export function claimable(endpoint: string, at: string, limit: number, postgres: boolean) {
  return sql<{ id: number }>`
    select d.id from webhook_deliveries d ${postgres ? sql`` : sql`indexed by webhook_deliveries_claim_idx`}
    where d.status = 'pending' and d.endpoint = ${endpoint} and d.next_attempt_at <= ${at}
      and (d.locked_until is null or d.locked_until <= ${at})
      and (d.user_id is null or not exists (
        select 1 from webhook_deliveries e
        where e.status = 'pending' and e.endpoint = d.endpoint and e.user_id = d.user_id and e.outbox_id < d.outbox_id))
    order by d.outbox_id limit ${limit} ${postgres ? sql`for update of d skip locked` : sql``}`;
}

/**
 * Gives the endpoint's pending deliveries that carry no user their event's user (exported for the test that reads its
 * plan). They are found through webhook_deliveries_userless_idx (migration 0025), which holds only them: no walk of
 * the backlog at each claim. SQLite is told that index (it keeps no statistics unless ANALYZE is run).
 */
export function userlessDeliveries(endpoint: string, postgres: boolean) {
  return sql`
    update webhook_deliveries set user_id = (select o.user_id from outbox o where o.id = webhook_deliveries.outbox_id)
    where ${idAmong(
      postgres,
      sql`
        select d.id from webhook_deliveries d ${postgres ? sql`` : sql`indexed by webhook_deliveries_userless_idx`}
        join outbox o on o.id = d.outbox_id
        where d.status = 'pending' and d.user_id is null and d.endpoint = ${endpoint} and o.user_id is not null`,
    )}`;
}

// PostgreSQL: the event and a pending delivery per endpoint in one statement (the endpoints as one array parameter).
const emitPostgres = prepared(
  (db, eventId: string, type: string, userId: number | null, payload: string, at: string, endpoints: string[]) =>
    db
      .with('event', (cte) =>
        cte
          .insertInto('outbox')
          .values({ event_id: eventId, type, user_id: userId, payload, created_at: at })
          .returning('id'),
      )
      .insertInto('webhook_deliveries')
      .columns(['outbox_id', 'user_id', 'endpoint', 'status', 'attempts', 'next_attempt_at'])
      .expression((eb) =>
        eb
          .selectFrom('event')
          .select([
            'event.id',
            sql<number | null>`${userId}::integer`.as('user_id'),
            sql<string>`unnest(${endpoints}::text[])`.as('endpoint'),
            sql<string>`'pending'`.as('status'),
            sql<number>`0`.as('attempts'),
            sql<string>`${at}::timestamptz`.as('next_attempt_at'),
          ]),
      ),
);

export class Outbox {
  constructor(
    private readonly db: Kysely<Database>,
    /** The configured endpoints' URLs: none, no event is written. */
    private readonly endpoints: readonly string[],
  ) {}

  get enabled(): boolean {
    return this.endpoints.length > 0;
  }

  /**
   * Writes the event and its deliveries (in the caller's transaction). On PostgreSQL one statement; `last`: the
   * transaction's last write (a sign-in's), held and written with its COMMIT (prepared.ts `later`).
   */
  async emit(event: OutboxEvent, at = now(), { last = false } = {}): Promise<void> {
    if (this.endpoints.length === 0) return;
    const eventId = `msg_${randomBytes(16).toString('base64url')}`;
    const payload = JSON.stringify({ type: event.type, timestamp: at, data: event.data });
    if (isPostgres(this.db)) {
      const values = [eventId, event.type, event.userId, payload, at, this.endpoints as string[]] as const;
      await (last ? emitPostgres.later(this.db, ...values) : emitPostgres(this.db, ...values));
      return;
    }
    const row = await this.db
      .insertInto('outbox')
      .values({ event_id: eventId, type: event.type, user_id: event.userId, payload, created_at: at })
      .returning('id')
      .executeTakeFirstOrThrow();
    await this.db
      .insertInto('webhook_deliveries')
      .values(
        this.endpoints.map((endpoint) => ({
          outbox_id: row.id,
          user_id: event.userId,
          endpoint,
          status: 'pending',
          attempts: 0,
          next_attempt_at: at,
          locked_until: null,
          last_error: null,
          delivered_at: null,
        })),
      )
      .execute();
  }

  /**
   * Claims up to `limit` deliveries due to this endpoint, oldest first, at most one per user at a time and never
   * one of a user while an older one of that user is still pending (per-user order). Several instances share the
   * work: a claimed row is reserved for CLAIM_SECONDS (PostgreSQL: FOR UPDATE SKIP LOCKED).
   * How it reads its indexes: `claimable` (test/outbox-claim.test.ts reads both databases' plans).
   */
  async claim(endpoint: string, limit: number): Promise<Delivery[]> {
    const at = now();
    const until = new Date(Date.now() + CLAIM_SECONDS * 1000).toISOString();
    const postgres = isPostgres(this.db);
    // Deliveries written without their user (before migration 0023, or by an instance not yet upgraded during a
    // rolling deploy) get it from their event first: else they would be neither kept in order nor keep others waiting.
    await plannedEachRun(this.db, userlessDeliveries(endpoint, postgres).compile(this.db));
    const result = await plannedEachRun(
      this.db,
      sql<{ id: number }>`
        update webhook_deliveries set locked_until = ${until}
        where ${idAmong(postgres, claimable(endpoint, at, limit, postgres))}
        returning id`.compile(this.db),
    );
    const ids = result.rows.map((row) => row.id);
    if (ids.length === 0) return [];
    const { rows } = await plannedEachRun(
      this.db,
      this.db
        .selectFrom('webhook_deliveries as d')
        .innerJoin('outbox as o', 'o.id', 'd.outbox_id')
        .select(['d.id', 'o.event_id', 'o.type', 'o.user_id', 'o.payload', 'o.created_at', 'd.endpoint', 'd.attempts'])
        .where('d.id', 'in', ids)
        .orderBy('d.outbox_id')
        .compile(),
    );
    return rows.map((row) => ({
      id: row.id,
      eventId: row.event_id,
      type: row.type,
      userId: row.user_id,
      payload: row.payload,
      createdAt: new Date(row.created_at).toISOString(),
      endpoint: row.endpoint,
      attempts: row.attempts,
    }));
  }

  /** These deliveries were answered 2xx: one statement for a round's (a write each was most of a delivery's cost). */
  async delivered(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await plannedEachRun(
      this.db,
      this.db
        .updateTable('webhook_deliveries')
        .set({ status: 'delivered', delivered_at: now(), locked_until: null, last_error: null })
        .where('id', 'in', ids)
        .compile(),
    );
  }

  /** A failed attempt: tried again at `retryAt`, or given up (failed) when there is none. */
  async attemptFailed(id: number, attempts: number, error: string, retryAt: string | undefined): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({
        attempts,
        last_error: error.slice(0, 500),
        locked_until: null,
        ...(retryAt ? { next_attempt_at: retryAt } : { status: 'failed' }),
      })
      .where('id', '=', id)
      .execute();
  }

  /** Deliveries still pending to endpoints no longer configured: given up (the CLI lists them; replay sends them to nobody). */
  async abandonUnconfigured(): Promise<number> {
    let query = this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'failed', last_error: 'endpoint no longer configured', locked_until: null })
      .where('status', '=', 'pending');
    if (this.endpoints.length > 0) query = query.where('endpoint', 'not in', [...this.endpoints]);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /**
   * What waits to be delivered to the configured endpoints (the metrics, at every scrape): how many deliveries (an
   * event counts once per endpoint; counted up to BACKLOG_COUNT_CAP, more reads as one past it), and when the oldest
   * of their events was written. Both read webhook_deliveries_pending_idx (migration 0021): the pending rows only,
   * the oldest first (outbox ids grow with time), so neither cost grows with a large backlog.
   */
  async backlog(): Promise<OutboxBacklog> {
    if (this.endpoints.length === 0) return { pending: 0, oldestCreatedAt: undefined };
    const endpoints = [...this.endpoints];
    const pendingRows = this.db
      .selectFrom('webhook_deliveries')
      .where('status', '=', 'pending')
      .where('endpoint', 'in', endpoints);
    const {
      rows: [counted],
    } = await plannedEachRun(
      this.db,
      this.db
        .selectFrom(
          pendingRows
            .select(sql.lit(1).as('one'))
            .limit(BACKLOG_COUNT_CAP + 1)
            .as('capped'),
        )
        .select((eb) => eb.fn.countAll().as('pending'))
        .compile(),
    );
    const {
      rows: [oldest],
    } = await plannedEachRun(
      this.db,
      this.db
        .selectFrom('outbox')
        .select('created_at')
        .where(
          'id',
          '=',
          pendingRows.select((eb) => eb.fn.min('outbox_id').as('first')),
        )
        .compile(),
    );
    return {
      pending: Number(counted!.pending),
      oldestCreatedAt: oldest ? new Date(oldest.created_at).toISOString() : undefined,
    };
  }

  /**
   * Forgets events delivered to every endpoint and older than `before` (at most `limit` per call, so that a sweep
   * never holds the table long); their deliveries go with them. Failed and pending ones stay (to replay).
   */
  async purgeDelivered(before: string, limit = 1000): Promise<number> {
    const query = this.db.deleteFrom('outbox').where('id', 'in', (eb) =>
      eb
        .selectFrom('outbox as o')
        .select('o.id')
        .where('o.created_at', '<', before)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('webhook_deliveries as d')
                .select('d.id')
                .whereRef('d.outbox_id', '=', 'o.id')
                .where('d.status', '!=', 'delivered'),
            ),
          ),
        )
        .limit(limit),
    );
    const result = await plannedEachRun(this.db, query.compile());
    return Number(result.numAffectedRows ?? 0);
  }

  /** Deliveries by state, newest first (the CLI). */
  async list(filter: { status?: string; limit: number }) {
    let query = this.db
      .selectFrom('webhook_deliveries as d')
      .innerJoin('outbox as o', 'o.id', 'd.outbox_id')
      .select([
        'o.event_id',
        'o.type',
        'o.user_id',
        'o.created_at',
        'd.endpoint',
        'd.status',
        'd.attempts',
        'd.next_attempt_at',
        'd.last_error',
        'd.delivered_at',
      ])
      .orderBy('d.id', 'desc')
      .limit(filter.limit);
    if (filter.status) query = query.where('d.status', '=', filter.status);
    return query.execute();
  }

  /** Delivers again: one event (by its id), or every failed delivery. Answers how many. */
  async replay(which: { eventId: string } | 'failed'): Promise<number> {
    let query = this.db.updateTable('webhook_deliveries').set({
      status: 'pending',
      attempts: 0,
      next_attempt_at: now(),
      locked_until: null,
      last_error: null,
      delivered_at: null,
    });
    query =
      which === 'failed'
        ? query.where('status', '=', 'failed')
        : query.where(
            'outbox_id',
            'in',
            this.db.selectFrom('outbox').select('id').where('event_id', '=', which.eventId),
          );
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }
}
