import { profileIsStale, withKeptProfile, withProfile } from '../providers/profile.js';
import type { Provider, SocialIdentity, TokenInput } from '../providers/types.js';
import type { Association, AuditEntry, Client, Storage, User } from '../store/storage.js';
import { apiError } from './errors.js';
import { runPipeline } from './pipeline.js';
import type { Services } from './services.js';

/** Makes the user of an unknown account, inside the sign-in's transaction. */
export type NewUser = (storage: Storage, identity: SocialIdentity) => Promise<User>;

/** Starts the signed-in user's session inside the sign-in's transaction (the server's tokens, or the host app's record). */
export type SessionStarter<S> = (storage: Storage, user: User, audit: AuditEntry) => Promise<S>;

/**
 * The social use cases, whoever serves them (our HTTP routes or the embedding plugin): link an account,
 * sign in with one, list and unlink. The provider is asked first, outside any transaction; every write
 * then happens in one transaction, with its audit events.
 */
export class SocialAccounts {
  constructor(private readonly services: Services) {}

  /** Links the account of this token to the user; linking it again is idempotent (created: false). */
  async associate(user: User, providerName: string, input: TokenInput, client: Client) {
    const provider = this.services.providers.get(providerName);
    const identity = await withProfile(await provider.verify(input));
    const { context } = await runPipeline(this.services.pipeline, this.services.storage, this.input('associate', provider, identity, client, { user }));
    return { provider: provider.name, uid: identity.uid, created: context.isNewAssociation };
  }

  /**
   * Finds (or, when allowed, creates: `newUser` makes the embedding host's user) the user of this token's
   * account, and starts its session in the same transaction.
   */
  async signIn<S>(providerName: string, input: TokenInput, client: Client, startSession: SessionStarter<S>, newUser?: NewUser) {
    const provider = this.services.providers.get(providerName);
    const createUser = this.services.config.createUser || newUser !== undefined;
    const identity = await this.signInIdentity(provider, input, createUser);
    const pipelineInput = { ...this.input('auth', provider, identity, client), options: { createUser, newUser } };
    const { context, result } = await runPipeline(this.services.pipeline, this.services.storage, pipelineInput, async (context) => {
      if (!context.user) throw apiError('user_not_found');
      return startSession(context.storage, context.user, { event: 'social_sign_in', userId: context.user.id, provider: provider.name, uid: identity.uid });
    });
    return { user: context.user!, isNewUser: context.isNewUser, uid: identity.uid, session: result as S };
  }

  links(userId: number): Promise<Association[]> {
    return this.services.storage.links.ofUser(userId);
  }

  /**
   * Unlinks one of the user's accounts, refusing to remove the last way in of a user who has no other
   * (`hasOtherWayIn`: a password, the host app's own sign-in; an operator may force it). Kept provider
   * tokens are revoked after.
   */
  async unlink(userId: number, provider: string, uid: string, how: { client: Client | null; hasOtherWayIn(user: User): boolean | Promise<boolean>; detail?: string }): Promise<void> {
    const removed = await this.services.storage.transaction(async (trx) => {
      // The lock makes concurrent unlinks of one user's last two links take turns.
      const user = await trx.users.lock(userId);
      const links = await trx.links.ofUser(userId);
      if (!user || !links.some((link) => link.provider === provider && link.uid === uid)) throw apiError('association_not_found');
      if (links.length === 1 && !(await how.hasOtherWayIn(user))) throw apiError('last_login_method');
      const link = await trx.links.delete(userId, provider, uid);
      await trx.audit.record({ event: 'unlinked', userId, provider, uid, detail: how.detail }, how.client);
      return link;
    });
    await this.services.revokeKept(removed);
  }

  /** Proves the token; reads the profile only when this sign-in needs it (a new user, or a stale kept profile). */
  private async signInIdentity(provider: Provider, input: TokenInput, createUser: boolean): Promise<SocialIdentity> {
    const identity = await provider.verify(input, { profile: false });
    if (!identity.loadProfile) return identity;
    const { config, storage } = this.services;
    const link = await storage.links.find(provider.name, identity.uid);
    const needed = link ? profileIsStale(link.extraData, config.profileMaxAgeSeconds) : createUser;
    return needed ? withProfile(identity) : withKeptProfile(identity, link?.extraData ?? {});
  }

  private input(mode: 'associate' | 'auth', provider: Provider, identity: SocialIdentity, client: Client, extra: { user?: User } = {}) {
    const { config, secrets } = this.services;
    return { mode, provider: provider.name, identity, client, secrets, options: { createUser: mode === 'auth' && config.createUser }, ...extra };
  }
}
