import type { Kysely } from 'kysely';
import type { Outbox, OutboxEvent } from './outbox.js';
import { prepared } from './prepared.js';
import { iso, now } from './rows.js';
import type { Database } from './schema.js';

export type AuditEventName =
  | 'user_created'
  | 'password_sign_in'
  | 'social_sign_in'
  | 'associated'
  | 'unlinked'
  | 'logout'
  | 'refresh_token_reused'
  | 'refused'
  /** On the owner's log: someone else tried to link the owner's account (with that client's IP). */
  | 'link_refused_other_user'
  /**
   * On the owner's log: a guest proved the owner's account and was offered to merge into it (a new phone: the
   * owner, most likely). Kept for the owner's history; no webhook (`user.merged` follows if the guest merges).
   */
  | 'merge_offered'
  | 'user_deleted'
  /** On the user's log: an unknown account with this user's verified e-mail tried to sign in; a link token was issued. */
  | 'link_required'
  /** A link token linked the account it was issued for (core/email-linking.ts). */
  | 'link_token_used'
  /** The provider renamed the account (Apple's sub after a team transfer): the link now has the new uid. */
  | 'uid_moved'
  /** On both users' logs: a guest merged into the owner of a social account it proved (detail: from → into). */
  | 'user_merged'
  /** The provider told us about the account (Facebook: the user removed our app); detail says what. */
  | 'provider_event'
  /** Staff or a service key ended every session of the user (actor and reason say who and why). */
  | 'sessions_revoked'
  /** Staff or a service key disabled the user (detail: how many sessions that ended), or enabled it again. */
  | 'user_disabled'
  | 'user_enabled'
  /** Staff or a service key changed the user's custom claims (detail: the names changed). */
  | 'claims_changed'
  /** Staff or a service key took a copy of the user's data (a data-access request). */
  | 'user_exported'
  /** Staff or a service key read the user's data (detail: what); kept as the user's access history. */
  | 'admin_read'
  /** A staff member signed in to the console, or was refused (detail: why). */
  | 'staff_signed_in'
  | 'staff_refused';

/** Who asked: recorded with every audit event. */
export interface Client {
  ip: string;
  userAgent: string;
}

/** Who acted on a user's behalf, and why (staff in the console, a service key): kept on the audit event. */
export interface ActedBy {
  actor: string;
  reason: string | null;
}

export interface AuditEntry {
  event: AuditEventName;
  userId?: number | null;
  provider?: string | null;
  uid?: string | null;
  /** A stable code or short reason; never a secret. */
  detail?: string | null;
  /** Who acted, when not the user: `staff:ID:NAME` or `key:NAME` (see core/admin.ts). */
  actor?: string | null;
  /** Why, in the staff member's or service's words. */
  reason?: string | null;
  /** Facts the event's webhook carries whole, beyond the row (whose detail is short text): merged into its data. */
  webhookData?: Record<string, unknown>;
}

export interface AuditEvent extends Required<Omit<AuditEntry, 'webhookData'>> {
  id: number;
  ip: string | null;
  userAgent: string | null;
  createdAt: string;
}

/** The audit_events row of an entry (also written by Sessions.start, in the sign-in's one statement). */
export function auditRow(entry: AuditEntry, client: Client | null, at = now()) {
  return {
    user_id: entry.userId ?? null,
    event: entry.event,
    provider: entry.provider ?? null,
    uid: entry.uid ?? null,
    detail: entry.detail?.slice(0, 255) ?? null,
    ip: client?.ip.slice(0, 64) || null,
    user_agent: client?.userAgent.slice(0, 256) || null,
    created_at: at,
    actor: entry.actor?.slice(0, 160) ?? null,
    reason: entry.reason?.slice(0, 500) ?? null,
  };
}

// Every link, refusal and sign-out writes one.
export const insertAuditEvent = prepared(
  (
    db,
    userId: number | null,
    event: AuditEventName,
    provider: string | null,
    uid: string | null,
    detail: string | null,
    ip: string | null,
    userAgent: string | null,
    at: string,
  ) =>
    db
      .insertInto('audit_events')
      .values({ user_id: userId, event, provider, uid, detail, ip, user_agent: userAgent, created_at: at }),
);

/**
 * The webhook event (store/outbox.ts) an audit event tells the app's backend, if any: changes and the refused
 * link attempt on a user's account. Written with it, so in the same transaction as the change.
 */
export function webhookEventOf(row: ReturnType<typeof auditRow>): OutboxEvent | undefined {
  const about = { user_id: row.user_id, provider: row.provider, uid: row.uid };
  switch (row.event) {
    case 'user_created':
      return { type: 'user.created', userId: row.user_id, data: { user_id: row.user_id, how: row.detail } };
    case 'user_deleted':
      return { type: 'user.deleted', userId: row.user_id, data: { user_id: row.user_id } };
    case 'associated':
      return { type: 'link.created', userId: row.user_id, data: about };
    case 'unlinked':
      return { type: 'link.removed', userId: row.user_id, data: { ...about, by: row.detail ?? 'user' } };
    case 'social_sign_in':
    case 'password_sign_in':
      return {
        type: 'sign_in',
        userId: row.user_id,
        data: {
          ...about,
          method: row.event === 'social_sign_in' ? 'social' : 'password',
          ip: row.ip,
          user_agent: row.user_agent,
        },
      };
    case 'logout':
    case 'refresh_token_reused':
      return {
        type: 'session.revoked',
        userId: row.user_id,
        data: { user_id: row.user_id, reason: row.event === 'logout' ? 'logout' : 'refresh_token_reused' },
      };
    case 'sessions_revoked':
      // An operator (its actor), or a provider that said the account must sign out again (Apple, Google RISC).
      return row.actor
        ? {
            type: 'session.revoked',
            userId: row.user_id,
            data: { user_id: row.user_id, reason: 'admin', actor: row.actor },
          }
        : {
            type: 'session.revoked',
            userId: row.user_id,
            data: { user_id: row.user_id, reason: 'provider', detail: row.detail },
          };
    case 'user_disabled':
    case 'user_enabled':
      // Who, not why: the operator's reason is internal (staff type what they suspect); the admin API's audit has it.
      return {
        type: row.event === 'user_disabled' ? 'user.disabled' : 'user.enabled',
        userId: row.user_id,
        data: { user_id: row.user_id, actor: row.actor },
      };
    case 'claims_changed':
      // The names changed (the entry's webhookData: whole, whatever they hold), not their values: the next access
      // token carries those (the admin API reads them).
      return { type: 'user.claims_changed', userId: row.user_id, data: { user_id: row.user_id, actor: row.actor } };
    case 'link_refused_other_user':
      return { type: 'link.refused', userId: row.user_id, data: { ...about, ip: row.ip, user_agent: row.user_agent } };
    case 'user_merged': {
      const [from, into] = (/^(\d+) → (\d+)/.exec(row.detail ?? '') ?? []).slice(1).map(Number);
      // Written on the owner's log (the guest's says the same): the app moves the guest's data to the owner.
      return row.user_id === into
        ? { type: 'user.merged', userId: into!, data: { from, into, provider: row.provider, uid: row.uid } }
        : undefined;
    }
    case 'provider_event':
      return { type: 'provider.event', userId: row.user_id, data: { ...about, kind: row.detail } };
    case 'uid_moved':
      return { type: 'provider.event', userId: row.user_id, data: { ...about, kind: 'uid_moved', detail: row.detail } };
    default:
      return undefined;
  }
}

/**
 * Writes the webhook event of an audit row (if it has one and webhooks are on) to the outbox, in the caller's
 * transaction: AuditLog.record's, and those of the statements that write their audit row themselves (Sessions.start,
 * Links.insertAssociated). `webhookData` is merged into the event's data; `last`: see Outbox.emit.
 */
export async function emitWebhookOf(
  outbox: Outbox,
  row: ReturnType<typeof auditRow>,
  { webhookData, last = false }: { webhookData?: Record<string, unknown>; last?: boolean } = {},
): Promise<void> {
  const event = outbox.enabled ? webhookEventOf(row) : undefined;
  if (event)
    await outbox.emit(webhookData ? { ...event, data: { ...event.data, ...webhookData } } : event, row.created_at, {
      last,
    });
}

/**
 * What the user may see of an event of its own history (/api/audit/, and the export a data-access request
 * hands over): the one place that decides. An operator's event (staff, a service key) shows what was done and
 * when, not the operator's address, device, name or internal reason.
 */
export function asOwnerSees(event: AuditEvent): AuditEvent {
  if (event.actor === null) return event;
  return { ...event, ip: null, userAgent: null, actor: null, reason: null };
}

/** Who did what, kept after the user is deleted: the user's own history and the operators'. */
export class AuditLog {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly outbox: Outbox,
  ) {}

  async record(entry: AuditEntry, client: Client | null): Promise<void> {
    const row = auditRow(entry, client);
    if (row.actor !== null || row.reason !== null) await this.db.insertInto('audit_events').values(row).execute();
    else
      await insertAuditEvent(
        this.db,
        row.user_id,
        row.event,
        row.provider,
        row.uid,
        row.detail,
        row.ip,
        row.user_agent,
        row.created_at,
      );
    await emitWebhookOf(this.outbox, row, { webhookData: entry.webhookData });
  }

  /** Newest first; `before` pages backwards by id. Without a user id: every user's events (operators). */
  async list(options: {
    userId?: number;
    before?: number;
    limit: number;
    asOwner?: boolean;
    withoutReads?: boolean;
  }): Promise<AuditEvent[]> {
    let query = this.db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(options.limit);
    // The user's own history: what was done, not who among the operators looked, nor from where they act.
    if (options.asOwner || options.withoutReads) query = query.where('event', '!=', 'admin_read');
    if (options.userId !== undefined) query = query.where('user_id', '=', options.userId);
    if (options.before !== undefined) query = query.where('id', '<', options.before);
    const rows = await query.execute();
    return rows.map((row) => {
      const event: AuditEvent = {
        // PostgreSQL's bigint arrives as text; every id stays below 2^53.
        id: Number(row.id),
        event: row.event as AuditEventName,
        userId: row.user_id,
        provider: row.provider,
        uid: row.uid,
        detail: row.detail,
        ip: row.ip,
        userAgent: row.user_agent,
        createdAt: iso(row.created_at),
        actor: row.actor,
        reason: row.reason,
      };
      return options.asOwner ? asOwnerSees(event) : event;
    });
  }
}
