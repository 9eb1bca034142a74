import { isPostgres } from './migrations.js';
import type { Outbox } from './outbox.js';
import { prepared } from './prepared.js';
import { sql, type Kysely, type QueryCreator, type Selectable } from 'kysely';
import { auditRow, emitWebhookOf, insertAuditEvent, type Client } from './audit.js';
import { iso, LINK_COLUMNS, now, qualified, toUser, USER_COLUMNS, type User } from './rows.js';
import type { Database } from './schema.js';

/** A linked social account: python-social-auth's UserSocialAuth. */
export interface Association {
  id: number;
  userId: number;
  provider: string;
  uid: string;
  extraData: Record<string, unknown>;
  /** Sealed provider tokens, or null. */
  sealedTokens: string | null;
  /** The e-mail the provider says it verified (lower-cased), or null. */
  verifiedEmail: string | null;
  /** When the provider ended the account's sessions: an ID token issued before then does not sign in. Null: never. */
  signInAfter: string | null;
  createdAt: string;
  updatedAt: string;
}

function toAssociation(row: Selectable<Database['social_associations']>): Association {
  const extra = typeof row.extra_data === 'string' ? (JSON.parse(row.extra_data) as unknown) : row.extra_data;
  return {
    id: row.id,
    userId: row.user_id,
    provider: row.provider,
    uid: row.uid,
    extraData: (extra ?? {}) as Record<string, unknown>,
    sealedTokens: row.provider_tokens,
    verifiedEmail: row.verified_email,
    signInAfter: row.sign_in_after === null ? null : iso(row.sign_in_after),
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

/** The social accounts linked to users; (provider, uid) is unique. */
// Every sign-in runs these: compiled once (prepared.ts).
const findLink = prepared((db, provider: string, uid: string) =>
  db.selectFrom('social_associations').select(LINK_COLUMNS).where('provider', '=', provider).where('uid', '=', uid),
);
const linkWithUser = (db: Kysely<Database>, provider: string, uid: string) =>
  db
    .selectFrom('social_associations as link')
    .innerJoin('users', 'users.id', 'link.user_id')
    .select(qualified('link', LINK_COLUMNS))
    .select([
      'users.username as user_username',
      'users.password_hash as user_password_hash',
      'users.created_at as user_created_at',
      'users.updated_at as user_updated_at',
      'users.last_login_at as user_last_login_at',
      'users.disabled_at as user_disabled_at',
      'users.disabled_reason as user_disabled_reason',
      'users.claims as user_claims',
    ])
    .where('link.provider', '=', provider)
    .where('link.uid', '=', uid);
const findLinkWithUser = prepared(linkWithUser);
// The same, the user's row held (PostgreSQL: a key-share lock, as Users.hold), then the link's: an auth's read in its
// transaction. The link is read in the statement's snapshot, taken before it waited for a row: an unlink that committed
// meanwhile deleted it, and a deleted row cannot be locked (PostgreSQL then leaves the joined row out). Key shares do
// not wait for each other, nor for a write of the link's facts (another sign-in's, Links.writeSignInFacts). The user
// stays first (PostgreSQL locks in this order): an unlink holds the user, then deletes the link; a sign-in holding the
// link while it waits for the user would deadlock with it.
const holdLinkWithUser = prepared((db, provider: string, uid: string) => {
  const query = linkWithUser(db, provider, uid);
  return isPostgres(db) ? query.forKeyShare(['users', 'link']) : query;
});
type LinkWithUserRow = Awaited<ReturnType<typeof findLinkWithUser>>['rows'][number];

function linkAndUserOf(row: LinkWithUserRow | undefined): { association: Association; user: User } | undefined {
  if (!row) return undefined;
  const user = toUser({
    id: row.user_id,
    username: row.user_username,
    password_hash: row.user_password_hash,
    created_at: row.user_created_at,
    updated_at: row.user_updated_at,
    last_login_at: row.user_last_login_at,
    disabled_at: row.user_disabled_at,
    disabled_reason: row.user_disabled_reason,
    claims: row.user_claims,
  });
  return { association: toAssociation(row), user };
}

// The user's row held (PostgreSQL: a key-share lock, as Users.hold) and the account's link read, whoever's it is, in
// one round trip: an associate holds the signed-in user (an auth holds the link's owner with holdLinkWithUser).
const holdUserWithLink = prepared((db, userId: number, provider: string, uid: string) => {
  const query = db
    .selectFrom('users')
    .leftJoin('social_associations as link', (join) => join.on('link.provider', '=', provider).on('link.uid', '=', uid))
    .select(qualified('users', USER_COLUMNS))
    .select([
      'link.id as link_id',
      'link.user_id as link_user_id',
      'link.provider as link_provider',
      'link.uid as link_uid',
      'link.extra_data as link_extra_data',
      'link.provider_tokens as link_provider_tokens',
      'link.verified_email as link_verified_email',
      'link.sign_in_after as link_sign_in_after',
      'link.created_at as link_created_at',
      'link.updated_at as link_updated_at',
    ])
    .where('users.id', '=', userId);
  return isPostgres(db) ? query.forKeyShare('users') : query;
});

/** The link's insert, doing nothing when (provider, uid) is linked already: alone, or a CTE of insertAssociated. */
function linkInsert(
  db: QueryCreator<Database>,
  ...[userId, provider, uid, extraData, sealedTokens, verifiedEmail, at]: LinkValues
) {
  return db
    .insertInto('social_associations')
    .values({
      user_id: userId,
      provider,
      uid,
      extra_data: extraData,
      provider_tokens: sealedTokens,
      verified_email: verifiedEmail,
      created_at: at,
      updated_at: at,
    })
    .onConflict((conflict) => conflict.columns(['provider', 'uid']).doNothing())
    .returning(LINK_COLUMNS);
}
type LinkValues = [
  userId: number,
  provider: string,
  uid: string,
  extraData: string,
  sealedTokens: string | null,
  verifiedEmail: string | null,
  at: string,
];

// Every link runs it.
const insertLink = prepared((db, ...values: LinkValues) => linkInsert(db, ...values));

// PostgreSQL, a user's own link (the pipeline's associateUser): the link and its 'associated' audit event in one
// statement, the event written only when the link was (a link made first by another transaction writes neither).
const insertAssociated = prepared((db, ...[ip, userAgent, ...values]: [string | null, string | null, ...LinkValues]) =>
  db
    .with('link', (cte) => linkInsert(cte, ...values))
    .with('event', (cte) =>
      cte
        .insertInto('audit_events')
        .columns(['user_id', 'event', 'provider', 'uid', 'ip', 'user_agent', 'created_at'])
        .expression((eb) =>
          eb
            .selectFrom('link')
            .select([
              'link.user_id',
              sql<string>`'associated'`.as('event'),
              'link.provider',
              'link.uid',
              sql<string | null>`cast(${ip} as varchar)`.as('ip'),
              sql<string | null>`cast(${userAgent} as varchar)`.as('user_agent'),
              'link.created_at',
            ]),
        ),
    )
    .selectFrom('link')
    .select(LINK_COLUMNS),
);

// PostgreSQL, a sign-in's facts (Links.writeSignInFacts): tokens kept unless new ones are given, the verified e-mail
// unless `setEmail`; skipped while another transaction writes the link.
const writeFactsUnlessBeingWritten = prepared(
  (
    db,
    id: number,
    extraData: string,
    at: string,
    sealedTokens: string | null,
    setEmail: boolean,
    verifiedEmail: string | null,
  ) =>
    db
      .updateTable('social_associations')
      .set({
        extra_data: extraData,
        updated_at: at,
        provider_tokens: sql<string | null>`coalesce(${sealedTokens}, provider_tokens)`,
        verified_email: sql<
          string | null
        >`case when ${setEmail}::boolean then ${verifiedEmail} else verified_email end`,
      })
      .where('id', 'in', (eb) =>
        eb.selectFrom('social_associations').select('id').where('id', '=', id).forNoKeyUpdate().skipLocked(),
      ),
);

export class Links {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly outbox: Outbox,
  ) {}

  async find(provider: string, uid: string): Promise<Association | undefined> {
    const row = (await findLink(this.db, provider, uid)).rows[0];
    return row && toAssociation(row);
  }

  /**
   * Reads the link and, on PostgreSQL, locks its row until the transaction ends, for a change a sign-in must see (a
   * provider ending the account's sessions): a sign-in waiting meanwhile then reads the changed row, not its snapshot's.
   * Take its user's row first (Users.lock), as a sign-in does (Links.holdWithUser): one order, no deadlock.
   */
  async lock(provider: string, uid: string): Promise<Association | undefined> {
    const query = this.db
      .selectFrom('social_associations')
      .select(LINK_COLUMNS)
      .where('provider', '=', provider)
      .where('uid', '=', uid);
    const row = await (isPostgres(this.db) ? query.forUpdate() : query).executeTakeFirst();
    return row && toAssociation(row);
  }

  /** The link of this social account and its user, in one query. */
  async findWithUser(provider: string, uid: string): Promise<{ association: Association; user: User } | undefined> {
    return linkAndUserOf((await findLinkWithUser(this.db, provider, uid)).rows[0]);
  }

  /**
   * The link of this social account and its user, the user's row and the link's held until the transaction ends
   * (PostgreSQL: key-share locks, as Users.hold), in one statement: an auth's read of the account (every sign-in asks
   * this). A user deleted, or a link removed, while the statement waited for the user's row is not there: the account
   * is unknown.
   */
  async holdWithUser(provider: string, uid: string): Promise<{ association: Association; user: User } | undefined> {
    return linkAndUserOf((await holdLinkWithUser(this.db, provider, uid)).rows[0]);
  }

  /**
   * Reads the user and, on PostgreSQL, holds its row until the transaction ends (a key-share lock, as Users.hold);
   * with it, in the same statement, the link of this social account, whoever's it is. Undefined: no such user
   * (deleted meanwhile).
   */
  async holdUserWithLink(
    userId: number,
    provider: string,
    uid: string,
  ): Promise<{ user: User; link: Association | undefined } | undefined> {
    const row = (await holdUserWithLink(this.db, userId, provider, uid)).rows[0];
    if (!row) return undefined;
    const link =
      row.link_id === null
        ? undefined
        : toAssociation({
            id: row.link_id,
            user_id: row.link_user_id!,
            provider: row.link_provider!,
            uid: row.link_uid!,
            extra_data: row.link_extra_data!,
            provider_tokens: row.link_provider_tokens,
            verified_email: row.link_verified_email,
            sign_in_after: row.link_sign_in_after,
            created_at: row.link_created_at!,
            updated_at: row.link_updated_at!,
          });
    return { user: toUser(row), link };
  }

  /** Newest first, of one user or provider when given (operators). */
  async list(filter: { userId?: number; provider?: string; limit: number }): Promise<Association[]> {
    let query = this.db.selectFrom('social_associations').selectAll().orderBy('id', 'desc').limit(filter.limit);
    if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
    if (filter.provider !== undefined) query = query.where('provider', '=', filter.provider);
    return (await query.execute()).map(toAssociation);
  }

  async ofUser(userId: number): Promise<Association[]> {
    const rows = await this.db
      .selectFrom('social_associations')
      .select(LINK_COLUMNS)
      .where('user_id', '=', userId)
      .orderBy('id')
      .execute();
    return rows.map(toAssociation);
  }

  /**
   * Links (provider, uid) to the user unless it is linked already. Returns undefined when another
   * transaction linked it first: the unique constraint, not a prior read, decides who wins a race.
   */
  async insert(
    userId: number,
    provider: string,
    uid: string,
    extraData: Record<string, unknown>,
    sealedTokens: string | null,
    at = now(),
    verifiedEmail: string | null = null,
  ): Promise<Association | undefined> {
    const row = (
      await insertLink(this.db, userId, provider, uid, JSON.stringify(extraData), sealedTokens, verifiedEmail, at)
    ).rows[0];
    return row && toAssociation(row);
  }

  /**
   * A user's own link (the pipeline's associateUser) with its 'associated' audit event and webhook, in this
   * transaction: on PostgreSQL in one statement (one round trip instead of two). Undefined, and nothing written,
   * when another transaction linked the account first.
   */
  async insertAssociated(
    userId: number,
    provider: string,
    uid: string,
    extraData: Record<string, unknown>,
    sealedTokens: string | null,
    verifiedEmail: string | null,
    client: Client | null,
  ): Promise<Association | undefined> {
    const at = now();
    const audit = auditRow({ event: 'associated', userId, provider, uid }, client, at);
    let link: Association | undefined;
    if (isPostgres(this.db)) {
      const [extra, ip, agent] = [JSON.stringify(extraData), audit.ip, audit.user_agent];
      const row = (
        await insertAssociated(this.db, ip, agent, userId, provider, uid, extra, sealedTokens, verifiedEmail, at)
      ).rows[0];
      link = row && toAssociation(row);
    } else {
      link = await this.insert(userId, provider, uid, extraData, sealedTokens, at, verifiedEmail);
      if (link)
        await insertAuditEvent(this.db, userId, 'associated', provider, uid, null, audit.ip, audit.user_agent, at);
    }
    if (link) await emitWebhookOf(this.outbox, audit);
    return link;
  }

  /**
   * New extra data; new sealed tokens too when the provider gave new ones (else the old ones stay), and the
   * verified e-mail when given (undefined: kept as it is). False when there is no such link.
   */
  async updateExtraData(
    associationId: number,
    extraData: Record<string, unknown>,
    sealedTokens: string | null,
    verifiedEmail?: string | null,
  ): Promise<boolean> {
    const result = await this.db
      .updateTable('social_associations')
      .set({
        extra_data: JSON.stringify(extraData),
        updated_at: now(),
        ...(sealedTokens === null ? {} : { provider_tokens: sealedTokens }),
        ...(verifiedEmail === undefined ? {} : { verified_email: verifiedEmail }),
      })
      .where('id', '=', associationId)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * A sign-in's (or a link's) new facts, as updateExtraData writes them. On PostgreSQL nothing is written while
   * another transaction writes the link (another sign-in of the same account, moments apart: its facts stand for
   * these) — waiting for its commit would queue a hot account's sign-ins behind each other; and the statement, whose
   * answer nobody reads, goes out with the transaction's next statement or its COMMIT (prepared.ts `later`).
   */
  async writeSignInFacts(
    associationId: number,
    extraData: Record<string, unknown>,
    sealedTokens: string | null,
    verifiedEmail?: string | null,
  ): Promise<void> {
    if (!isPostgres(this.db)) {
      await this.updateExtraData(associationId, extraData, sealedTokens, verifiedEmail);
      return;
    }
    await writeFactsUnlessBeingWritten.later(
      this.db,
      associationId,
      JSON.stringify(extraData),
      now(),
      sealedTokens,
      verifiedEmail !== undefined,
      verifiedEmail ?? null,
    );
  }

  /**
   * The provider renamed the account (Apple's sub after a team transfer): the link keeps its user, its facts
   * and its tokens (sealed again for the new uid). False when there is no such link.
   */
  async moveUid(provider: string, from: string, to: string, sealedTokens: string | null): Promise<boolean> {
    const result = await this.db
      .updateTable('social_associations')
      .set({ uid: to, provider_tokens: sealedTokens, updated_at: now() })
      .where('provider', '=', provider)
      .where('uid', '=', from)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** The provider ended the account's sessions now: its ID tokens issued before then no longer sign in. */
  async refuseTokensIssuedBefore(associationId: number, at = now()): Promise<void> {
    await this.db
      .updateTable('social_associations')
      .set({ sign_in_after: at, updated_at: at })
      .where('id', '=', associationId)
      .execute();
  }

  /** Drops the link's kept provider tokens (the provider revoked them). */
  async forgetTokens(associationId: number): Promise<void> {
    await this.db
      .updateTable('social_associations')
      .set({ provider_tokens: null, updated_at: now() })
      .where('id', '=', associationId)
      .execute();
  }

  /** The users with a link whose verified e-mail is this one, of these providers (the ones whose e-mail is trusted). */
  async usersWithVerifiedEmail(email: string, providers: readonly string[]): Promise<number[]> {
    if (providers.length === 0) return [];
    const rows = await this.db
      .selectFrom('social_associations')
      .select('user_id')
      .distinct()
      .where('verified_email', '=', email)
      .where('provider', 'in', providers)
      .execute();
    return rows.map((row) => row.user_id);
  }

  /** Removes the link and answers it (with its sealed tokens, to revoke them), or undefined. */
  async delete(userId: number, provider: string, uid: string): Promise<Association | undefined> {
    const row = await this.db
      .deleteFrom('social_associations')
      .where('user_id', '=', userId)
      .where('provider', '=', provider)
      .where('uid', '=', uid)
      .returningAll()
      .executeTakeFirst();
    return row && toAssociation(row);
  }
}
