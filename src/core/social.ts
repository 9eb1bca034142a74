import type { Provider, SocialIdentity, TokenInput } from '../providers/types.js';
import type { Association, Client, User } from '../store/storage.js';
import { recordingDisabled } from './disabled-users.js';
import { EmailMatch, LinkRequiredError, linkTokenHash, pendingIdentity, requireLink } from './email-linking.js';
import type { EmailLinking, NewUserPolicy, SignInStrategy } from './pipeline-step.js';
import { AlreadyAssociatedError, apiError } from '../lib/errors.js';
import { mergeGuest, mergeTarget, offerMerge } from './guest-merge.js';
import {
  proveToken,
  runBeforeTransaction,
  runPipeline,
  startSession,
  type SignInDraft,
  type SignInRequest,
} from './pipeline.js';
import type { Services } from './services.js';
import { unlinkAccount, type UnlinkTerms } from './unlink.js';
import type { StartedSession } from './tokens.js';

export type { NewUserPolicy, SessionStarter, SignInStrategy } from './pipeline-step.js';

/**
 * The social use cases, whoever serves them (our HTTP routes or the embedding plugin): link an account,
 * sign in with one, list and unlink, each through the pipeline listed in pipeline.ts: the provider is asked
 * first, outside any transaction; every write then happens in one transaction, with its audit events.
 *
 * How a sign-in ends is given once, here: `S` is what its session starter answers (the server's tokens by
 * default; the embedding host's id), `R` what a host's maker of new users is given with each sign-in (the
 * request). Unlinking needs no strategy: the CLI and the admin use case call unlink.ts alone.
 */
export class SocialAccounts<S = StartedSession, R = void> {
  /** The email-linking step's settings when SOCIAL_AUTH_EMAIL_LINKING is on (fixed by the configuration). */
  private readonly emailLinking: EmailLinking | undefined;

  constructor(
    private readonly services: Services,
    private readonly strategy: SignInStrategy<S, R>,
  ) {
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
    const proven = await proveToken(this.request('associate', provider, input, client, { createUser: false, user }));
    return this.revokingUnkeptGrant(provider, proven.identity, async () => {
      const { identity } = await runBeforeTransaction(proven);
      const linked = () =>
        runPipeline(
          this.services.pipeline,
          this.services.storage,
          this.input('associate', identity, { provider: provider.name, client, user }),
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
   * Finds (or, when the strategy allows, creates) the user of this token's account, and starts its session in
   * the same transaction (the strategy's). No provider and no host code runs inside the transaction. `request`:
   * what the host's maker of new users is given (the embedding plugin's request).
   */
  async signIn(providerName: string, input: TokenInput, client: Client, request: R) {
    const { strategy } = this;
    const provider = this.services.providers.get(providerName);
    const { storage, pipeline } = this.services;
    const { newUser } = strategy;
    const proven = await proveToken(
      this.request('auth', provider, input, client, {
        createUser: newUser !== 'none',
        hostNewUser: typeof newUser === 'object' ? (identity) => newUser.external(identity, request) : undefined,
      }),
    );
    return this.revokingUnkeptGrant(provider, proven.identity, async () => {
      const draft = await runBeforeTransaction(proven);
      const { identity } = draft;
      const signedIn = () =>
        runPipeline(pipeline, storage, this.authInput(draft, strategy.newUser), startSession(strategy.startSession));
      const { context, result } = await recordingDisabled(
        storage,
        client,
        { provider: provider.name, uid: identity.uid },
        signedIn,
      ).catch(async (error: unknown) => {
        // The identity the transaction ran with: its profile may have been read there (runPipeline).
        if (error instanceof EmailMatch)
          throw await requireLink(
            { storage, secrets: this.services.secrets, replay: this.services.config.idTokenReplay },
            error,
            provider.name,
            error.identity,
            client,
          );
        throw error;
      });
      return { user: result.user, isNewUser: context.isNewUser, uid: identity.uid, session: result.session };
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
    await this.services.hooks.ask('before_link', { provider: provider.name, identity, user, newUser: false, client });
    const linked = () =>
      runPipeline(
        pipeline,
        storage,
        this.input('associate', identity, { provider: provider.name, client, user }),
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
  async mergeGuest(guest: User, mergeToken: string, client: Client) {
    const { strategy } = this;
    const { storage, hooks } = this.services;
    // The owner signs in: the app's before_sign_in hook decides first, told of the account the guest proved.
    const target = hooks.has('before_sign_in') ? await mergeTarget(storage, guest, mergeToken) : undefined;
    const claims =
      target &&
      (await hooks.ask('before_sign_in', {
        provider: target.link.provider,
        identity: { uid: target.link.uid, details: {}, extraData: target.link.extraData },
        user: target.owner,
        newUser: false,
        client,
      }));
    return recordingDisabled(storage, client, {}, () =>
      mergeGuest(storage, guest, mergeToken, client, (trx, owner, audit) =>
        strategy.startSession(trx, owner, audit, client, owner.id === target?.owner.id ? claims : undefined),
      ),
    );
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

  /** Unlinks one of the user's accounts (unlink.ts). */
  unlink(userId: number, provider: string, uid: string, how: UnlinkTerms): Promise<void> {
    return unlinkAccount(this.services, userId, provider, uid, how);
  }

  /** What the steps before the transaction are given; `auth`: who may make a user of an unknown account. */
  private request(
    mode: 'associate' | 'auth',
    provider: Provider,
    input: TokenInput,
    client: Client,
    auth: Pick<SignInRequest, 'createUser' | 'hostNewUser' | 'user'> = { createUser: false },
  ): SignInRequest {
    const { storage, secrets, config, hooks } = this.services;
    // One literal of one shape for every sign-in (no spread): it runs on every request.
    return {
      mode,
      provider,
      input,
      client,
      storage,
      secrets,
      hooks,
      profileMaxAgeSeconds: config.profileMaxAgeSeconds,
      emailLinking: this.emailLinking,
      createUser: auth.createUser,
      hostNewUser: auth.hostNewUser,
      user: auth.user,
    };
  }

  /** An auth run's input: the link read before the transaction carried in, the host's user if it made one. */
  private authInput(draft: SignInDraft, newUser: NewUserPolicy<R>) {
    const { hostUser } = draft;
    return {
      mode: 'auth' as const,
      identity: draft.identity,
      secrets: this.services.secrets,
      replay: this.services.config.idTokenReplay,
      provider: draft.provider.name,
      client: draft.client,
      user: undefined,
      known: draft.link,
      needsProfile: draft.needsProfile,
      claims: draft.claims,
      askedAbout: draft.askedAbout,
      options: {
        createUser: newUser === 'ours' || hostUser !== undefined,
        newUser: hostUser && (async () => hostUser),
        emailLinking: this.emailLinking,
      },
    };
  }

  private input<M extends 'associate' | 'auth'>(
    mode: M,
    identity: SocialIdentity,
    about: { provider: string; client: Client; user?: User },
  ) {
    const { secrets, config } = this.services;
    return {
      mode,
      identity,
      secrets,
      replay: config.idTokenReplay,
      options: { createUser: false },
      provider: about.provider,
      client: about.client,
      user: about.user,
    };
  }
}
