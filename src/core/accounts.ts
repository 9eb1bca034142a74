import { revokeUnlinkedGrants } from './email-linking.js';
import { randomBytes } from 'node:crypto';
import { dummyPasswordHash, hashPassword, needsRehash, verifyPassword } from '../auth/passwords.js';
import type { AccessClaims, TokenPair, TokenService } from './tokens.js';
import type { ActedBy, Client, User } from '../store/storage.js';
import { recordingDisabled, refuseIfDisabled } from './disabled-users.js';
import { apiError, sessionEnded } from '../lib/errors.js';
import type { Services } from './services.js';
import { isUniqueViolation } from '../store/unique-violation.js';

/** A user and the token pair of its new session: what every sign-in answers. */
export interface SignedIn {
  user: User;
  pair: TokenPair;
}

/** Our own users and sessions: guest and password users, sign-in, refresh, logout, deletion, history. */
export class Accounts {
  constructor(
    private readonly services: Services,
    private readonly tokens: TokenService,
  ) {}

  /** A guest user (no username: a phone's first launch) or a password user, signed in. */
  async create(input: { username?: string; password?: string }, client: Client): Promise<SignedIn> {
    const { storage } = this.services;
    if (input.username && (await storage.users.findByUsername(input.username))) throw apiError('username_taken');
    const passwordHash = input.password ? await hashPassword(input.password) : null;
    const started = await storage
      .transaction(async (trx) => {
        const user = await trx.users.create(input.username ?? `guest_${randomBytes(8).toString('hex')}`, passwordHash);
        const audit = { event: 'user_created' as const, userId: user.id, detail: passwordHash ? 'password' : 'guest' };
        return { user, session: await this.tokens.startSession(trx, user.id, audit, client) };
      })
      .catch((error: unknown) => {
        // Two sign-ups raced for one username: the unique constraint decided.
        if (input.username && isUniqueViolation(error)) throw apiError('username_taken');
        throw error;
      });
    return { user: started.user, pair: this.tokens.pairOf(started.user, started.session) };
  }

  async signInWithPassword(username: string, password: string, client: Client): Promise<SignedIn> {
    const user = await this.checkPassword(username, password, client);
    // Disabled meanwhile (checkPassword looked before): checked again on the row the session is started under.
    const session = await recordingDisabled(this.services.storage, client, {}, () =>
      this.services.storage.transaction(async (trx) => {
        const held = await trx.users.hold(user.id);
        if (!held) throw apiError('invalid_credentials'); // deleted since: no such user
        refuseIfDisabled(held);
        return this.tokens.startSession(trx, user.id, { event: 'password_sign_in', userId: user.id }, client);
      }),
    );
    return { user, pair: this.tokens.pairOf(user, session) };
  }

  /**
   * The user of this username and password, or 401 invalid_credentials. An imported hash (or ours with older
   * parameters) that matched is replaced with ours, as Django upgrades its own.
   */
  async checkPassword(username: string, password: string, client: Client): Promise<User> {
    const { storage } = this.services;
    // A name no user can have (PostgreSQL's text holds no NUL, and no stored text is a lone surrogate) is an
    // unknown name: asking the database would be a 500 on PostgreSQL (or match U+FFFD, what it would be turned into).
    const user = storableText(username) ? await storage.users.findByUsername(username) : undefined;
    // Unknown user or guest user: still spend one scrypt, so timing does not tell which usernames exist.
    const ok = await verifyPassword(password, user?.passwordHash ?? (await dummyPasswordHash()));
    if (!user || !user.passwordHash || !ok) {
      // The owner of the username sees the failed attempt in its audit log.
      if (user)
        await storage.audit.record({ event: 'refused', userId: user.id, detail: 'invalid_credentials' }, client);
      throw apiError('invalid_credentials');
    }
    // Said only to whoever knows the password: whether a user is disabled is no one else's to learn.
    await recordingDisabled(storage, client, {}, async () => refuseIfDisabled(user));
    if (needsRehash(user.passwordHash)) {
      const upgraded = await hashPassword(password);
      // Only if it is still the hash that matched (a password change meanwhile wins).
      if (await storage.users.replacePasswordHash(user.id, user.passwordHash, upgraded))
        return { ...user, passwordHash: upgraded };
    }
    return user;
  }

  async refresh(refreshToken: string, client: Client): Promise<SignedIn> {
    const { userId, pair } = await recordingDisabled(this.services.storage, client, {}, () =>
      this.tokens.refresh(this.services.storage, refreshToken, client),
    );
    const user = await this.services.storage.users.findById(userId);
    if (!user) throw apiError('invalid_refresh_token');
    return { user, pair };
  }

  async logout(claims: AccessClaims, client: Client): Promise<void> {
    await this.services.storage.sessions.revoke(claims.sessionId, 'logout');
    await this.services.storage.audit.record({ event: 'logout', userId: claims.userId }, client);
  }

  /** Removes the user, its links and sessions at once; provider tokens kept for its links (Apple) are revoked after. */
  async delete(userId: number, client: Client | null, detail?: string, by?: ActedBy): Promise<void> {
    const links = await this.services.storage.transaction(async (trx) => {
      // The user's row first, as every writer of its rows takes it (Users.hold): they take turns.
      if (!(await trx.users.lock(userId))) throw sessionEnded();
      const removed = await trx.links.ofUser(userId);
      // Accounts proposed for linking to this user (link tokens) hold provider grants too.
      const proposed = await trx.linkTokens.takeOfUser(userId);
      await trx.users.delete(userId);
      await trx.audit.record(
        { event: 'user_deleted', userId, detail: detail ?? `${removed.length} links`, ...by },
        client,
      );
      return { removed, proposed };
    });
    for (const link of links.removed) await this.services.revokeKept(link);
    await revokeUnlinkedGrants(this.services, links.proposed);
  }

  history(userId: number, page: { before?: number; limit: number }) {
    return this.services.storage.audit.list({ userId, ...page, asOwner: true });
  }
}

/** Text a database can hold as it is: no NUL character (PostgreSQL refuses it), no lone UTF-16 surrogate. */
export function storableText(text: string): boolean {
  return !/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}
