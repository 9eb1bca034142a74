import type { StaffRole } from '../store/staff.js';
import type { ServiceScope } from '../store/service-keys.js';
import type { ActedBy, Association, AuditEvent, Client, User } from '../store/storage.js';
import type { SessionSummary, UserSearch, UserSummary } from '../store/directory.js';
import { storableText, type Accounts } from './accounts.js';
import { ApiError, apiError } from '../lib/errors.js';
import type { Services } from './services.js';
import { unlinkAccount } from './unlink.js';
import { checkedClaims, patchedClaims } from './claims.js';

/**
 * Who acts through the admin API (a service key) or the console (a staff member). Reading needs nothing more;
 * changing needs a write key or the support or admin role; removing a user's last way in needs a write key or
 * the admin role.
 */
export type Actor =
  | { kind: 'key'; id: number; name: string; scopes: ServiceScope[] }
  | { kind: 'staff'; id: number; name: string; role: StaffRole };

/** As the audit log names the actor: `key:NAME` or `staff:ID:NAME`. */
export const actorName = (actor: Actor) =>
  actor.kind === 'key' ? `key:${actor.name}` : `staff:${actor.id}:${actor.name}`;

export const mayChange = (actor: Actor) =>
  actor.kind === 'key' ? actor.scopes.includes('write') : actor.role !== 'viewer';
export const mayOverride = (actor: Actor) =>
  actor.kind === 'key' ? actor.scopes.includes('write') : actor.role === 'admin';

/** A link as operators see it: the provider's facts, never the tokens kept for it. */
export interface LinkView {
  id: number;
  userId: number;
  provider: string;
  uid: string;
  extraData: Record<string, unknown>;
  verifiedEmail: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface UserView {
  user: Omit<User, 'passwordHash'>;
  links: LinkView[];
  sessions: SessionSummary[];
}

const viewOf = ({ sealedTokens: _kept, ...link }: Association): LinkView => link;
const publicUser = ({ passwordHash: _hidden, ...user }: User) => user;

/** Ids are 32-bit integers (PostgreSQL's integer): a longer number is no user's. */
const MAX_ID = 2_147_483_647;

/** The user id a path or query names, or 404 user_not_found (never a database error for a too-large number). */
export function userIdOf(text: string): number {
  const id = /^[1-9]\d{0,9}$/.test(text) ? Number(text) : NaN;
  if (!(id <= MAX_ID)) throw apiError('user_not_found');
  return id;
}

/** The longest reason kept (audit_events.reason). */
const REASON_MAX = 500;

/**
 * Characters that show nothing: spaces of every kind, format and control characters (zero-width space, joiners,
 * bidi marks), other default-ignorable ones, combining marks alone, and the blank look-alikes (Hangul fillers,
 * braille blank). A reason made of them only is no reason.
 */
const INVISIBLE =
  /[\p{White_Space}\p{Default_Ignorable_Code_Point}\p{Cc}\p{Cf}\p{Cs}\p{M}\u115F\u1160\u2800\u3164\uFFA0]/gu;
const saysSomething = (reason: string | undefined): reason is string =>
  !!reason && reason.replace(INVISIBLE, '') !== '';

/**
 * A real day, YYYY-MM-DD, that both databases hold: not 2024-02-30, not year 0000 (PostgreSQL has none, and
 * refuses it with an error rather than finding nothing).
 */
export function isDay(value: unknown): value is string {
  const match = typeof value === 'string' ? /^(\d{4})-(\d\d)-(\d\d)$/.exec(value) : null;
  if (!match) return false;
  const [year, month, day] = match.slice(1).map(Number) as [number, number, number];
  const date = new Date(Date.UTC(2000, month - 1, day));
  date.setUTCFullYear(year);
  return year >= 1 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** The columns' lengths (social_associations, audit_events): longer is no link, and must not reach a refusal's audit row. */
const PROVIDER_MAX = 64;
const UID_MAX = 255;

/**
 * What operators do for a user, by the admin API and the console alike: find, read, unlink, end sessions,
 * delete, export. Changes go through the same use cases the app's own requests use (unlink.ts,
 * Accounts.delete), each audited with its actor and reason.
 */
export class Admin {
  constructor(
    private readonly services: Services,
    private readonly accounts: Accounts,
  ) {}

  /** The admin API's budget of requests a minute per service key (RATE_LIMIT_ADMIN_API_PER_MINUTE); undefined: rate limits are off. */
  get apiRequestsPerMinute(): number | undefined {
    const { rateLimit } = this.services.config;
    return rateLimit.enabled ? rateLimit.adminApiPerMinute : undefined;
  }

  /** A search, audited with what was looked for (who looked up whom is part of a user's access history). */
  async search(
    actor: Actor,
    search: UserSearch,
    client: Client,
  ): Promise<{ users: UserSummary[]; next: string | undefined }> {
    for (const [name, value] of [
      ['created_from', search.createdFrom],
      ['created_to', search.createdTo],
    ] as const) {
      if (value !== undefined && !isDay(value))
        throw apiError('invalid_request', { about: `${name}: not a real day (YYYY-MM-DD, year 0001 to 9999)` });
    }
    const page = await this.services.storage.directory.searchUsers(search);
    const what = Object.entries({
      q: search.q,
      provider: search.provider,
      from: search.createdFrom,
      to: search.createdTo,
    })
      .filter(([, value]) => value)
      .map(([key, value]) => `${key}=${value}`);
    await this.audited(actor, { event: 'admin_read', userId: null, detail: ['search', ...what].join(' ') }, client);
    return page;
  }

  /** The user, its links and active sessions; the read is kept in the user's audit log (who looked). */
  async user(actor: Actor, userId: number, client: Client): Promise<UserView> {
    const { storage } = this.services;
    const user = await storage.users.findById(userId);
    if (!user) throw apiError('user_not_found');
    const [links, sessions] = await Promise.all([
      storage.links.ofUser(userId),
      storage.directory.activeSessions(userId),
    ]);
    await this.audited(actor, { event: 'admin_read', userId, detail: 'user' }, client);
    return { user: publicUser(user), links: links.map(viewOf), sessions };
  }

  async findUserByUsername(username: string): Promise<number | undefined> {
    return (await this.services.storage.users.findByUsername(username))?.id;
  }

  /** The link of this social account, or 404. */
  async link(provider: string, uid: string): Promise<LinkView> {
    const link = await this.services.storage.links.find(provider, uid);
    if (!link) throw apiError('association_not_found');
    return viewOf(link);
  }

  /** The user's audit log, newest first; without the operators' own reads unless asked. 404 for no such user. */
  async audit(userId: number, page: { before?: number; limit: number; withReads?: boolean }): Promise<AuditEvent[]> {
    const { storage } = this.services;
    const [user, events] = await Promise.all([
      storage.users.findById(userId),
      storage.audit.list({ userId, before: page.before, limit: page.limit, withoutReads: !page.withReads }),
    ]);
    // A deleted user's log outlives it: 404 only when there is neither.
    if (!user && events.length === 0 && page.before === undefined) throw apiError('user_not_found');
    return events;
  }

  /**
   * Unlinks one of the user's accounts. The last way in of a user without a password stays unless `force`,
   * which only an admin (or a write key) may use.
   */
  async unlink(
    actor: Actor,
    userId: number,
    provider: string,
    uid: string,
    client: Client,
    reason: string | undefined,
    force = false,
  ): Promise<void> {
    // Checked before anything is written: a refusal's audit row keeps the provider and uid, in columns of these lengths.
    if (!provider || [...provider].length > PROVIDER_MAX || !storableText(provider))
      throw apiError('invalid_request', { about: `provider: 1 to ${PROVIDER_MAX} characters` });
    if (!uid || [...uid].length > UID_MAX || !storableText(uid))
      throw apiError('invalid_request', { about: `uid: 1 to ${UID_MAX} characters` });
    const by = await this.changeBy(actor, userId, client, reason);
    try {
      if (force && !mayOverride(actor))
        throw apiError('forbidden', { about: 'only an admin removes the last way to sign in' });
      await unlinkAccount(this.services, userId, provider, uid, {
        client,
        hasOtherWayIn: (user) => user.hasPassword || force,
        detail: 'admin',
        by,
      });
    } catch (error) {
      // A refused unlink (the last way in, no such link, not allowed to force) is kept too, with who tried and why.
      if (error instanceof ApiError)
        await this.services.storage.audit.record(
          { event: 'refused', userId, provider, uid, detail: error.code, ...by },
          client,
        );
      throw error;
    }
  }

  /** Ends one session of the user (the lost phone's), keeping the others. */
  async revokeSession(
    actor: Actor,
    userId: number,
    sessionId: string,
    client: Client,
    reason: string | undefined,
  ): Promise<void> {
    const by = await this.changeBy(actor, userId, client, reason);
    await this.services.storage.transaction(async (trx) => {
      if (!(await trx.users.hold(userId))) throw apiError('user_not_found');
      if (!(await trx.sessions.revokeOfUser(userId, sessionId, 'admin'))) throw apiError('session_not_found');
      await trx.audit.record({ event: 'sessions_revoked', userId, detail: '1 session', ...by }, client);
    });
  }

  /** Ends every session of the user (its refresh tokens stop working; access tokens at their next check). How many. */
  async revokeSessions(actor: Actor, userId: number, client: Client, reason: string | undefined): Promise<number> {
    const by = await this.changeBy(actor, userId, client, reason);
    return this.services.storage.transaction(async (trx) => {
      if (!(await trx.users.hold(userId))) throw apiError('user_not_found');
      const count = await trx.sessions.revokeAllOfUser(userId, 'admin');
      await trx.audit.record({ event: 'sessions_revoked', userId, detail: `${count} sessions`, ...by }, client);
      return count;
    });
  }

  /**
   * Disables the user: it opens no session (sign-in and refresh answer 403 user_disabled) and every session it
   * has ends, at once. Enabling lets it sign in again (its ended sessions stay ended). Either one done already
   * changes nothing and tells no one. The user, as it is now.
   */
  async setDisabled(
    actor: Actor,
    userId: number,
    disabled: boolean,
    client: Client,
    reason: string | undefined,
  ): Promise<Omit<User, 'passwordHash'>> {
    const by = await this.changeBy(actor, userId, client, reason);
    return this.services.storage.transaction(async (trx) => {
      // Locked: a sign-in of this user (which holds its row) ends before, or starts after and sees it disabled.
      if (!(await trx.users.lock(userId))) throw apiError('user_not_found');
      if (await trx.users.setDisabled(userId, disabled ? { reason: by.reason! } : null)) {
        const ended = disabled ? await trx.sessions.revokeAllOfUser(userId, 'user_disabled') : 0;
        await trx.audit.record(
          {
            event: disabled ? 'user_disabled' : 'user_enabled',
            userId,
            detail: disabled ? `${ended} sessions ended` : null,
            ...by,
          },
          client,
        );
      }
      return publicUser((await trx.users.findById(userId))!);
    });
  }

  /**
   * Sets the user's custom claims (claims.ts): `replace` them all, or `patch` some (RFC 7396: null removes one).
   * The user's next access token carries them, a refresh included. Audited with the names changed (webhook
   * user.claims_changed); a change that changes nothing writes nothing. The user, as it is now.
   */
  async setClaims(
    actor: Actor,
    userId: number,
    change: { replace: unknown } | { patch: unknown },
    client: Client,
    reason: string | undefined,
  ): Promise<Omit<User, 'passwordHash'>> {
    const by = await this.changeBy(actor, userId, client, reason);
    const given = checkedClaims('replace' in change ? change.replace : change.patch);
    return this.services.storage.transaction(async (trx) => {
      const user = await trx.users.lock(userId);
      if (!user) throw apiError('user_not_found');
      const next = checkedClaims('replace' in change ? given : patchedClaims(user.claims, given));
      const changed = [...new Set([...Object.keys(user.claims), ...Object.keys(next)])].filter(
        (name) => JSON.stringify(user.claims[name]) !== JSON.stringify(next[name]),
      );
      if (changed.length === 0) return publicUser(user);
      await trx.users.setClaims(userId, next);
      // The audit row's detail is short text (cut at 255 characters); the webhook carries the names whole.
      await trx.audit.record(
        { event: 'claims_changed', userId, detail: JSON.stringify(changed), webhookData: { changed }, ...by },
        client,
      );
      return publicUser({ ...user, claims: next });
    });
  }

  /** Deletes the user as its own deletion does (links, sessions; kept provider grants revoked). */
  async deleteUser(actor: Actor, userId: number, client: Client, reason: string | undefined): Promise<void> {
    const by = await this.changeBy(actor, userId, client, reason);
    await this.accounts.delete(userId, client, 'admin', by).catch((error: unknown) => {
      // Accounts.delete speaks to the user itself ("your session has ended"); here the user is just not there.
      throw error instanceof ApiError && error.code === 'invalid_access_token' ? apiError('user_not_found') : error;
    });
  }

  /**
   * Everything kept about the user, for a data-access request; audited with its reason. A staff action (support
   * or admin: a viewer sees and searches only); any service key may, as it may read the same.
   */
  async exportUser(
    actor: Actor,
    userId: number,
    client: Client,
    reason: string | undefined,
  ): Promise<Record<string, unknown>> {
    const by = await this.changeBy(actor, userId, client, reason, actor.kind === 'staff');
    const { storage } = this.services;
    const user = await storage.users.findById(userId);
    if (!user) throw apiError('user_not_found');
    const [links, sessions, events] = await Promise.all([
      storage.links.ofUser(userId),
      storage.directory.activeSessions(userId),
      this.wholeAudit(userId),
    ]);
    await storage.audit.record({ event: 'user_exported', userId, ...by }, client);
    return {
      exported_at: new Date().toISOString(),
      user: {
        id: user.id,
        username: user.username,
        has_password: user.hasPassword,
        date_joined: user.createdAt,
        last_login: user.lastLoginAt,
        disabled_at: user.disabledAt,
        claims: user.claims,
      },
      links: links.map((link) => ({
        provider: link.provider,
        uid: link.uid,
        extra_data: link.extraData,
        verified_email: link.verifiedEmail,
        created_at: link.createdAt,
        updated_at: link.updatedAt,
      })),
      sessions: sessions.map((session) => ({
        created_at: session.createdAt,
        last_used_at: session.lastUsedAt,
        ip: session.ip,
        user_agent: session.userAgent,
      })),
      // What the user's own history shows (store/audit.ts decides): operators' reads, addresses, devices and reasons stay ours.
      audit: events.map((event) => ({
        id: event.id,
        event: event.event,
        provider: event.provider,
        uid: event.uid,
        detail: event.detail,
        ip: event.ip,
        user_agent: event.userAgent,
        created_at: event.createdAt,
      })),
    };
  }

  /** Links per provider, sign-ins per provider per day and refusals by reason (last `days` days), provider health. */
  async dashboard(
    days: number,
    providerCalls: () => Promise<Array<{ provider: string; calls: number; failures: number }>>,
  ) {
    const { storage, providers } = this.services;
    const since = new Date(Date.now() - days * 86_400_000).toISOString().slice(0, 10);
    const [links, signIns, refusals, calls] = await Promise.all([
      storage.directory.linksPerProvider(),
      storage.directory.eventsPerDay(['social_sign_in'], since, 'provider'),
      storage.directory.eventsPerDay(['refused', 'link_refused_other_user'], since, 'detail'),
      providerCalls(),
    ]);
    const health = providers.circuits().map(({ provider, state }) => {
      const counted = calls.find((entry) => entry.provider === provider);
      return {
        provider,
        circuit: state,
        calls: counted?.calls ?? 0,
        errorRate: counted && counted.calls > 0 ? counted.failures / counted.calls : 0,
      };
    });
    return { since, links, signIns, refusals, health };
  }

  /** Records a read of the admin API (every call is audited with the key's name). */
  audited(
    actor: Actor,
    entry: { event: 'admin_read'; userId?: number | null; detail: string },
    client: Client,
  ): Promise<void> {
    return this.services.storage.audit.record({ ...entry, actor: actorName(actor) }, client);
  }

  /** The user's whole history as the user sees it (/api/audit/), newest first, page by page: a data-access request leaves none of it out. */
  private async wholeAudit(userId: number): Promise<AuditEvent[]> {
    const events: AuditEvent[] = [];
    for (;;) {
      const page = await this.services.storage.audit.list({
        userId,
        before: events.at(-1)?.id,
        limit: 1000,
        asOwner: true,
      });
      events.push(...page);
      if (page.length < 1000) return events;
    }
  }

  /** Who acts and why, for a change: refused (and the refusal audited) to a reader, and without a reason. */
  private async changeBy(
    actor: Actor,
    userId: number,
    client: Client,
    reason: string | undefined,
    change = true,
  ): Promise<ActedBy> {
    const refusal =
      change && !mayChange(actor)
        ? apiError('forbidden', {
            about:
              actor.kind === 'key' ? 'this service key may only read (scope write needed)' : 'a viewer may only read',
          })
        : !saysSomething(reason)
          ? apiError('reason_required')
          : undefined;
    if (refusal) {
      await this.services.storage.audit.record(
        { event: 'refused', userId, detail: refusal.code, actor: actorName(actor) },
        client,
      );
      throw refusal;
    }
    // By characters, not UTF-16 units: a cut never splits one in two.
    return { actor: actorName(actor), reason: [...reason!.trim()].slice(0, REASON_MAX).join('') };
  }
}
