import type { ColumnType, Generated } from 'kysely';

/**
 * Timestamps are written as ISO strings and read back as such (SQLite: as written; PostgreSQL through our pool:
 * rows.ts timestamptzReader), or as a Date (PostgreSQL's session zone not UTC, a host's own pool): iso() takes either.
 */
type Timestamp = ColumnType<Date | string, string, string>;
/** JSON is written as text; PostgreSQL (jsonb) reads it back parsed, SQLite as text. */
type Json = ColumnType<unknown, string, string>;

export interface UsersTable {
  id: Generated<number>;
  username: string;
  /**
   * usernameKey(username), unique: names differing only in case are one name. A host app's user (external_id)
   * has its username as key: the host's ids are case-sensitive.
   */
  username_key: string | null;
  password_hash: string | null;
  /** Embedded in another app: that app's id of the user (unique); null for our own users. */
  external_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  last_login_at: Timestamp | null;
  /** Disabled by an operator (core/admin.ts): no sign-in, no refresh, until enabled again. */
  disabled_at: ColumnType<Date | string | null, string | undefined, string | null>;
  disabled_reason: ColumnType<string | null, string | undefined, string | null>;
  /** Custom claims (core/claims.ts) as JSON text; null: none. */
  claims: ColumnType<string | null, string | null | undefined, string | null>;
}

/** One linked social account: python-social-auth's UserSocialAuth. (provider, uid) is unique. */
/** A nonce this server issued (POST /api/nonce/), by its SHA-256: used once, by one ID token. */
export interface NoncesTable {
  nonce_hash: string;
  expires_at: Timestamp;
  used_at: Timestamp | null;
  /** SHA-256 of the ID token that used it: that token's retry may present it again. */
  token_hash: string | null;
}

/** An ID token that signed in or linked, by its SHA-256, kept until it expires: no second use. */
export interface IdTokenUsesTable {
  token_hash: string;
  /** SHA-256 of the client (IP and user agent) that used it: only its own quick retry is let through. */
  client_hash: string;
  used_at: Timestamp;
  expires_at: Timestamp;
  /** How many times the same client's retry was let through (at most MAX_RETRIES). */
  retries: Generated<number>;
}

export interface SocialAssociationsTable {
  id: Generated<number>;
  user_id: number;
  provider: string;
  uid: string;
  extra_data: Json;
  /** Sealed (AES-256-GCM) JSON of provider tokens kept for revocation; never sent to clients. */
  provider_tokens: string | null;
  /** The e-mail the provider says it verified for this account (lower-cased), or null: see core/email-linking.ts. */
  verified_email: string | null;
  /** Set when the provider ended the account's sessions: its ID tokens issued before then no longer sign in. */
  sign_in_after: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/**
 * A proven social account waiting to be linked to the user whose verified e-mail it shares, once that user
 * signed in (POST /api/associate/link-token/). Single use, short-lived.
 */
export interface LinkTokensTable {
  token_hash: string;
  user_id: number;
  provider: string;
  uid: string;
  /** The proven identity (details, extra data) as JSON. */
  identity: string;
  /** Provider tokens to keep (Apple's refresh token), sealed as a link's are. */
  sealed_tokens: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
}

/**
 * Sign in with Apple team transfer (core/apple-transfer.ts): each Apple link's transfer identifier for the
 * recipient team (export, with the old team's key), then its new sub (import, with the new team's key).
 */
export interface AppleTransfersTable {
  /** The link's uid under the old team. */
  old_sub: string;
  /** The recipient team id. */
  target_team: string;
  transfer_sub: string | null;
  /** The uid under the new team, once imported. */
  new_sub: string | null;
  /** exported | imported | failed */
  status: string;
  /** Why the last attempt failed (Apple's error code), or null. */
  error: string | null;
  updated_at: Timestamp;
}

/** social-link import: the user each imported account (source, its id there) became. */
export interface ImportedUsersTable {
  source: string;
  source_id: string;
  /** null: imported, then deleted (never imported again). */
  user_id: number | null;
}

/** A guest's proven claim to another user's social account (core/guest-merge.ts): single use, short-lived. */
export interface MergeTokensTable {
  token_hash: string;
  guest_id: number;
  owner_id: number;
  provider: string;
  uid: string;
  created_at: Timestamp;
  expires_at: Timestamp;
}

/** A provider's request to delete what it shared of an account (Facebook's data-deletion callback), for its status page. */
export interface ProviderDeletionRequestsTable {
  confirmation_code: string;
  provider: string;
  uid: string;
  /** done: the link (and what it kept) is deleted, or there was none. */
  status: string;
  requested_at: Timestamp;
}

/** The provider callbacks already acted on (their own id), for a while: a replayed one does nothing. */
export interface ProviderCallbacksSeenTable {
  id: string;
  seen_at: Timestamp;
}

/** The transactional outbox of webhooks (store/outbox.ts): one row per event. */
export interface OutboxTable {
  id: Generated<number>;
  /** webhook-id: stable across retries (the receiver's idempotency key). */
  event_id: string;
  type: string;
  /** No foreign key: a user.deleted event outlives its user. */
  user_id: number | null;
  payload: string;
  created_at: Timestamp;
}

/** One delivery of an outbox event to one endpoint. */
export interface WebhookDeliveriesTable {
  id: Generated<number>;
  outbox_id: number;
  /** The event's user (outbox.user_id, migration 0023): the claim keeps each user's events in order by it. */
  user_id: number | null;
  endpoint: string;
  /** pending | delivered | failed */
  status: string;
  attempts: number;
  next_attempt_at: Timestamp;
  locked_until: Timestamp | null;
  last_error: string | null;
  delivered_at: Timestamp | null;
}

/** A sign-in session: one refresh-token family. Revoking it ends every token of the family. */
export interface SessionsTable {
  id: string;
  user_id: number;
  created_at: Timestamp;
  revoked_at: Timestamp | null;
  revoked_reason: string | null;
  /** The client that signed in (the console shows it). */
  ip: string | null;
  user_agent: string | null;
  /** The claims added for this sign-in (a blocking hook, a pipeline step) as JSON text; null: none. */
  claims: ColumnType<string | null, string | null | undefined, string | null>;
  /**
   * When the session ends or ended: its newest refresh token's expiry, moved at each refresh; its revocation's
   * moment once revoked. Null: a session from before migration 0027, or written by an instance not yet upgraded, not
   * yet swept (Sessions.purgeEnded fills it in).
   */
  expires_at: ColumnType<Date | string | null, string, string | null>;
}

/** Refresh tokens are opaque; only their SHA-256 is stored. `used_at` is set when rotated. */
export interface RefreshTokensTable {
  id: Generated<number>;
  session_id: string;
  token_hash: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
}

export interface AuditEventsTable {
  /** bigint on PostgreSQL (read as text there). */
  id: Generated<number | string>;
  /** No foreign key: the history outlives a deleted user. */
  user_id: number | null;
  event: string;
  provider: string | null;
  uid: string | null;
  detail: string | null;
  ip: string | null;
  user_agent: string | null;
  created_at: Timestamp;
  /** Who acted, when not the user: `staff:ID:NAME` or `key:NAME` (the admin API and console). */
  actor: string | null;
  /** Why, as the staff member or service gave it (required of the console's actions). */
  reason: string | null;
}

/** A key of the app's backend for the admin API (/admin/api/): only its SHA-256 is kept. */
export interface ServiceKeysTable {
  id: Generated<number>;
  name: string;
  key_hash: string;
  /** read, or read write */
  scopes: string;
  created_at: Timestamp;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

/** A support staff member of the console (/admin/): not an app user. */
export interface StaffTable {
  id: Generated<number>;
  username: string;
  password_hash: string;
  /** viewer | support | admin */
  role: string;
  /** The TOTP secret, sealed with the secret box; null until enrolment starts. */
  totp_secret: string | null;
  totp_enrolled_at: Timestamp | null;
  /** The last TOTP time step accepted: a code is used once. */
  last_totp_step: number | string | null;
  failed_logins: Generated<number>;
  locked_until: Timestamp | null;
  disabled_at: Timestamp | null;
  created_at: Timestamp;
}

/** A console session: the cookie's SHA-256; `stage` password (TOTP still to give), enrol, or signed_in. */
export interface StaffSessionsTable {
  id_hash: string;
  staff_id: number;
  stage: string;
  csrf_token: string;
  ip: string | null;
  created_at: Timestamp;
  last_seen_at: Timestamp;
  expires_at: Timestamp;
}

export interface Database {
  service_keys: ServiceKeysTable;
  staff: StaffTable;
  staff_sessions: StaffSessionsTable;
  audit_events: AuditEventsTable;
  users: UsersTable;
  nonces: NoncesTable;
  id_token_uses: IdTokenUsesTable;
  social_associations: SocialAssociationsTable;
  link_tokens: LinkTokensTable;
  apple_transfers: AppleTransfersTable;
  imported_users: ImportedUsersTable;
  outbox: OutboxTable;
  merge_tokens: MergeTokensTable;
  provider_deletion_requests: ProviderDeletionRequestsTable;
  provider_callbacks_seen: ProviderCallbacksSeenTable;
  webhook_deliveries: WebhookDeliveriesTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
}
