import { profileIsStale, withKeptProfile, withProfile } from '../providers/profile.js';
import type { Provider, SocialIdentity, TokenInput } from '../providers/types.js';
import type { ActedBy, Association, AuditEntry, Client, Storage, User } from '../store/storage.js';
import { followAppleTransfer } from './apple-transfer.js';
import { recordingDisabled, refuseIfDisabled } from './disabled-users.js';
import {
  EmailMatch,
  findEmailMatch,
  LinkRequiredError,
  linkTokenHash,
  pendingIdentity,
  requireLink,
} from './email-linking.js';
import type { EmailLinking } from './pipeline-step.js';
import { AlreadyAssociatedError, apiError } from '../lib/errors.js';
import { mergeGuest, offerMerge } from './guest-merge.js';
import { runPipeline } from './pipeline.js';
import type { Services } from './services.js';

/**
 * Who makes the user of an unknown account: nobody (404 user_not_found), social-link (a user of its own), or
 * the embedding host (`external`: called before the transaction, it answers the host's id of a new user).
 */
export type NewUserPolicy = 'none' | 'ours' | { external(identity: SocialIdentity): Promise<string> };

/** Starts the signed-in user's session inside the sign-in's transaction (the server's tokens, or the host app's record). */
export type SessionStarter<S> = (storage: Storage, user: User, audit: AuditEntry) => Promise<S>;

/**
 * The social use cases, whoever serves them (our HTTP routes or the embedding plugin): link an account,
 * sign in with one, list and unlink. The provider is asked first, outside any transaction; every write
 * then happens in one transaction, with its audit events.
 */
export class SocialAccounts {
  /** The email-linking step's settings when SOCIAL_AUTH_EMAIL_LINKING is on (fixed by the configuration). */
  private readonly emailLinking: EmailLinking | undefined;

  constructor(private readonly services: Services) {
    this.emailLinking = services.config.emailLinking
      ? { trusted: services.providers.emailTrusted, enabled: services.providers.names }
      : undefined;
  }

  /**
   * Links the account of this token to the user; linking it again is idempotent (created: false). `offerMerge`:
   * a guest refused an account of another user gets a merge token (the server; the embedding host's users are
   * the host's, never guests of ours to merge).
   */
  async associate(
    user: User,
    providerName: string,
    input: TokenInput,
    client: Client,
    { offerMerge: mergeOffered = true } = {},
  ) {
    const provider = this.services.providers.get(providerName);
    const identity = await provider.verify(input);
    return this.revokingUnkeptGrant(provider, identity, async () => {
      await followAppleTransfer(this.services.storage, this.services.secrets, identity, client);
      const linked = async () =>
        runPipeline(
          this.services.pipeline,
          this.services.storage,
          this.input('associate', provider, await withProfile(identity), client, { user }),
        );
      const { context } = await recordingDisabled(
        this.services.storage,
        client,
        { provider: provider.name, uid: identity.uid },
        linked,
      ).catch(async (error: unknown) => {
        // A guest (no password, no linked account) proved an account of another user: offer to merge into that user.
        if (
          mergeOffered &&
          error instanceof AlreadyAssociatedError &&
          !user.hasPassword &&
          Object.keys(error.extra).length === 0 &&
          (await this.services.storage.links.ofUser(user.id)).length === 0
        ) {
          const proof = identity.idToken && {
            idToken: identity.idToken,
            client,
            replay: this.services.config.idTokenReplay,
          };
          throw new AlreadyAssociatedError(
            error.owner,
            await offerMerge(this.services.storage, user, error.owner, proof),
          );
        }
        throw error;
      });
      return { provider: provider.name, uid: identity.uid, created: context.isNewAssociation };
    });
  }

  /**
   * Finds (or, when the policy allows, creates) the user of this token's account, and starts its session in
   * the same transaction. No provider and no host code runs inside the transaction.
   */
  async signIn<S>(
    providerName: string,
    input: TokenInput,
    client: Client,
    how: { startSession: SessionStarter<S>; newUser: NewUserPolicy },
  ) {
    const provider = this.services.providers.get(providerName);
    const { storage, pipeline } = this.services;
    const verified = await provider.verify(input, { profile: false });
    return this.revokingUnkeptGrant(provider, verified, async () => {
      await followAppleTransfer(storage, this.services.secrets, verified, client);
      const emailLinking = this.emailLinking;
      const identity = await this.signInIdentity(
        verified,
        provider,
        how.newUser !== 'none' || emailLinking?.trusted.includes(provider.name) === true,
      );
      // The host makes its user first, as the earlier plugin did: outside our transaction, only for an unknown account.
      // (Not when the account must be linked to the user with its verified e-mail: that is the answer then.)
      const hostUser =
        typeof how.newUser === 'object' &&
        !(await storage.links.find(provider.name, identity.uid)) &&
        !(await findEmailMatch(storage, provider.name, identity, emailLinking))
          ? await storage.users.ofExternal(await how.newUser.external(identity))
          : undefined;
      const options = {
        createUser: how.newUser === 'ours' || hostUser !== undefined,
        newUser: hostUser && (async () => hostUser),
        emailLinking,
      };
      const signedIn = () =>
        runPipeline(
          pipeline,
          storage,
          { ...this.input('auth', provider, identity, client), options },
          async (context) => {
            if (!context.user) throw apiError('user_not_found');
            refuseIfDisabled(context.user);
            return how.startSession(context.storage, context.user, {
              event: 'social_sign_in',
              userId: context.user.id,
              provider: provider.name,
              uid: identity.uid,
            });
          },
        );
      const { context, result } = await recordingDisabled(
        storage,
        client,
        { provider: provider.name, uid: identity.uid },
        signedIn,
      ).catch(async (error: unknown) => {
        if (error instanceof EmailMatch)
          throw await requireLink(
            { storage, secrets: this.services.secrets, replay: this.services.config.idTokenReplay },
            error,
            provider.name,
            identity,
            client,
          );
        throw error;
      });
      return { user: context.user!, isNewUser: context.isNewUser, uid: identity.uid, session: result as S };
    });
  }

  /**
   * Links the account a link token was issued for (409 link_required) to the signed-in user it was issued
   * for, through the pipeline as any link; the token is used up in the same transaction.
   */
  async linkWithToken(user: User, linkToken: string, client: Client) {
    const { storage, secrets, pipeline } = this.services;
    const hash = linkTokenHash(linkToken);
    const pending = await storage.linkTokens.find(hash);
    if (!pending || pending.userId !== user.id)
      throw apiError('invalid_link_token', {
        detail: pending ? 'it was issued for another user' : 'unknown, expired or used',
      });
    const provider = this.services.providers.get(pending.provider);
    const identity = pendingIdentity(pending, secrets);
    const linked = () =>
      runPipeline(
        pipeline,
        storage,
        { ...this.input('associate', provider, identity, client), user },
        async (context) => {
          if (!(await context.storage.linkTokens.use(hash)))
            throw apiError('invalid_link_token', { detail: 'used by a request that ran at the same time' });
          // Other link tokens of this account (the app asked twice) have nothing left to link.
          await context.storage.linkTokens.forgetAccount(provider.name, identity.uid);
          await context.storage.audit.record(
            { event: 'link_token_used', userId: user.id, provider: provider.name, uid: identity.uid },
            client,
          );
        },
      );
    const { context } = await recordingDisabled(
      storage,
      client,
      { provider: provider.name, uid: identity.uid },
      linked,
    );
    return { provider: provider.name, uid: identity.uid, created: context.isNewAssociation };
  }

  /** A guest's merge into the owner of the account it proved (core/guest-merge.ts), signed in as the owner. */
  mergeGuest<S>(guest: User, mergeToken: string, client: Client, startSession: SessionStarter<S>) {
    const { storage } = this.services;
    return recordingDisabled(storage, client, {}, () => mergeGuest(storage, guest, mergeToken, client, startSession));
  }

  /**
   * A link or sign-in that fails after the provider granted us tokens to keep (an Apple code redeemed for an
   * account nobody here has linked: 404 user_not_found) must not leave that grant behind, unrevocable: it is
   * revoked. A grant of an account linked to a user is left alone: revoking one of Apple's tokens ends the
   * user's whole authorization of our app, the kept token's too ("invalidate the tokens and associated user
   * authorizations", Apple's Revoke tokens reference).
   */
  private async revokingUnkeptGrant<T>(
    provider: Provider,
    identity: SocialIdentity,
    work: () => Promise<T>,
  ): Promise<T> {
    try {
      const result = await work();
      const notice = identity.operatorNotice;
      if (notice)
        this.services.log.warn(
          { provider: provider.name, reason: notice.reason, hint: notice.hint },
          'the sign-in went through, but the provider refused part of it',
        );
      return result;
    } catch (error) {
      const { storage, providers, log } = this.services;
      // A link token keeps the grant (sealed) for the link it proposes; expired, it is revoked then (sweepLinkTokens).
      if (identity.tokens && !(error instanceof LinkRequiredError)) {
        const linked = await storage.links.find(provider.name, identity.uid).then(Boolean, () => true); // unknown: keep
        if (!linked) await providers.revoke(provider.name, identity.tokens, log);
      }
      throw error;
    }
  }

  links(userId: number): Promise<Association[]> {
    return this.services.storage.links.ofUser(userId);
  }

  /**
   * Unlinks one of the user's accounts, refusing to remove the last way in of a user who has no other
   * (`hasOtherWayIn`, asked under the user's lock: a password, the host app's own answer given beforehand; an
   * operator may force it). Kept provider tokens are revoked after.
   */
  async unlink(
    userId: number,
    provider: string,
    uid: string,
    how: { client: Client | null; hasOtherWayIn(user: User): boolean; detail?: string; by?: ActedBy },
  ): Promise<void> {
    const removed = await this.services.storage.transaction(async (trx) => {
      // The lock makes concurrent unlinks of one user's last two links take turns.
      const user = await trx.users.lock(userId);
      const links = await trx.links.ofUser(userId);
      if (!user || !links.some((link) => link.provider === provider && link.uid === uid))
        throw apiError('association_not_found');
      if (links.length === 1 && !how.hasOtherWayIn(user)) throw apiError('last_login_method');
      const link = await trx.links.delete(userId, provider, uid);
      await trx.audit.record({ event: 'unlinked', userId, provider, uid, detail: how.detail, ...how.by }, how.client);
      return link;
    });
    await this.services.revokeKept(removed);
  }

  /** Reads the profile of a proven token only when this sign-in needs it (a new user, or a stale kept profile). */
  private async signInIdentity(
    identity: SocialIdentity,
    provider: Provider,
    createUser: boolean,
  ): Promise<SocialIdentity> {
    if (!identity.loadProfile) return identity;
    const { config, storage } = this.services;
    const link = await storage.links.find(provider.name, identity.uid);
    const needed = link ? profileIsStale(link.extraData, config.profileMaxAgeSeconds) : createUser;
    return needed ? withProfile(identity) : withKeptProfile(identity, link);
  }

  private input(
    mode: 'associate' | 'auth',
    provider: Provider,
    identity: SocialIdentity,
    client: Client,
    extra: { user?: User } = {},
  ) {
    const { secrets, config } = this.services;
    return {
      mode,
      provider: provider.name,
      identity,
      client,
      secrets,
      replay: config.idTokenReplay,
      options: { createUser: false },
      ...extra,
    };
  }
}
