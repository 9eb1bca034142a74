import { randomBytes } from 'node:crypto';
import type { SecretBox } from '../auth/secret-box.js';
import { AlreadyAssociatedError, apiError, sessionEnded } from '../lib/errors.js';
import { mergeFacts, profileIsStale, withKeptProfile, withProfile } from '../providers/profile.js';
import type { Provider, SocialIdentity, TokenInput } from '../providers/types.js';
import type { Association, AuditEntry, Client, Storage, User } from '../store/storage.js';
import { verifiedEmailOf } from '../store/verified-email.js';
import { followAppleTransfer } from './apple-transfer.js';
import { refuseIfDisabled } from './disabled-users.js';
import { emailLinkRequired, findEmailMatch } from './email-linking.js';
import { refuseTokenOfEndedSessions, useIdToken } from './replay.js';
import type { AskedAbout, EmailLinking, PipelineContext, PipelineStep, SessionStarter } from './pipeline-step.js';
import { claimsProblem, type Claims } from './claims.js';
import type { BlockingHooks } from './blocking-hooks.js';

/*
 * A sign-in (and a link), as social-core's DEFAULT_AUTH_PIPELINE lists its steps (signInPipeline() answers this
 * listing; SocialAccounts in social.ts runs it). Two phases:
 *
 * before the transaction (provider calls and reads only: no lock waits on a provider)
 *   proveToken         the provider module proves the token was issued to our app, and says whose account it is
 *   (PROVIDER_STEPS)   the provider's own steps, for it alone: apple → appleTeamTransfer
 *   readLink           auth, with hooks or a host's user: the account's link, read once, carried into the
 *                      transaction (else read in it, with its user's row held: one statement)
 *   loadProfile        the profile call, only when this sign-in needs it (link unread: decided in the transaction,
 *                      which rolls back for the call when the kept profile will not do)
 *   askTheApp          the blocking hooks (SOCIAL_LINK_HOOK_*): the app's backend may refuse, or add claims
 *   hostUser           auth, embedded: the host makes its user for an unknown account
 * in one transaction (a failure at any step writes nothing)
 *   holdUser           associate: the signed-in user's row first; gone, its session ended; disabled, it links nothing
 *   spendProof         the ID token's use (and its issued nonce's) is recorded: kept only if the sign-in commits
 *   the rules          buildApp({ pipeline }), by default defaultPipeline: authAllowed → socialUser →
 *                      emailLinkRequired → createUser → associateUser → loadExtraData
 *   endedSessions      a token issued before its provider ended the account's sessions opens none
 *   record             the audit events of what the rules changed (user_created; associated unless written with the link)
 *   startSession       auth: the user is found and not disabled; its session, in the same commit
 */

/** A listed step: what it is, and why it is there (one line). */
export interface Listed<F> {
  readonly name: string;
  readonly why: string;
  readonly step: F;
}

const listed = <F extends (...args: never[]) => unknown>(step: F, why: string): Listed<F> => ({
  name: step.name,
  why,
  step,
});

// ─── Before the transaction ───────────────────────────────────────────────────────────────────────────────

/** What a sign-in (or a link) asks for, before its provider proved anything. */
export interface SignInRequest {
  readonly mode: 'associate' | 'auth';
  readonly provider: Provider;
  readonly input: TokenInput;
  readonly client: Client;
  /** Outside any transaction. */
  readonly storage: Storage;
  readonly secrets: SecretBox;
  readonly profileMaxAgeSeconds: number;
  /** Set when SOCIAL_AUTH_EMAIL_LINKING is on. */
  readonly emailLinking?: EmailLinking;
  /** auth: may an unknown account get a user here (ours or the host's)? */
  readonly createUser: boolean;
  /** auth, embedded: the host's maker of its user for an unknown account (bound to this request). */
  readonly hostNewUser?: (identity: SocialIdentity) => Promise<string>;
  /** The app's backend, asked before the transaction (blocking-hooks.ts). */
  readonly hooks: BlockingHooks;
  /** associate: the signed-in user who links. */
  readonly user?: User;
}

/** The proven account, and what the steps before the transaction learned of it. */
export interface SignInDraft extends SignInRequest {
  identity: SocialIdentity;
  /** readLink: the account's link (null: none); undefined when it was not read before the transaction. */
  link?: Association | null;
  /** readLink, for the before_sign_in hook: the link's user, read with it. */
  linkedUser?: User;
  /**
   * loadProfile, when the link was not read before the transaction: does this sign-in need the profile, given the
   * link the transaction finds? (runPipeline: if so, it rolls back, reads the profile and runs again.)
   */
  needsProfile?: NeedsProfile;
  /** hostUser: the host's new user for this unknown account. */
  hostUser?: User;
  /** askTheApp: the claims the hooks added for this sign-in's session, and whom they judged. */
  claims?: Claims;
  askedAbout?: AskedAbout;
}

export type BeforeStep = (draft: SignInDraft) => Promise<void>;

/** loadProfile's decision, given the account's link (none: undefined): must this sign-in read the profile? */
export type NeedsProfile = (link: Association | undefined) => boolean;

/** The provider module proves the token (its circuit breaker, its pool); auth leaves the profile for loadProfile. */
export async function proveToken(request: SignInRequest): Promise<SignInDraft> {
  const identity = await request.provider.verify(
    request.input,
    request.mode === 'auth' ? { profile: false } : undefined,
  );
  // The request becomes the draft (it is made for this sign-in alone): no copy of its fields on every request.
  return Object.assign(request, { identity });
}

/** Apple only: an ID token with `transfer_sub` moves the link its old team exported (core/apple-transfer.ts). */
export const appleTeamTransfer: BeforeStep = (draft) =>
  followAppleTransfer(draft.storage, draft.secrets, draft.identity, draft.client);

/** The steps only one provider has, before readLink (what they change, it reads). */
export const PROVIDER_STEPS: Readonly<Record<string, readonly Listed<BeforeStep>[]>> = {
  apple: [
    listed(appleTeamTransfer, "a new team's sub whose old one was exported: its link moves first (transfer_sub)"),
  ],
};

/**
 * auth: the link, once, where something decides on it before the transaction (the host's user, the app's hooks).
 * Without such a decision it is left to the transaction, whose first statement reads it with its user's row held
 * (socialUser needs that statement anyway): a read before it would be one statement and one round trip more. The
 * profile call is decided there too (loadProfile, runPipeline).
 */
export const readLink: BeforeStep = async (draft) => {
  if (draft.mode !== 'auth') return;
  if (!draft.hostNewUser && !draft.hooks.asksOnSignIn) return;
  if (draft.hooks.has('before_sign_in')) {
    // The hook is told the user: read with the link, in one query.
    const found = await draft.storage.links.findWithUser(draft.provider.name, draft.identity.uid);
    draft.link = found?.association ?? null;
    draft.linkedUser = found?.user;
    return;
  }
  draft.link = (await draft.storage.links.find(draft.provider.name, draft.identity.uid)) ?? null;
};

/**
 * The profile: a link always reads it; auth only for a new link that may make a user (or a link_required
 * answer), or a kept profile older than SOCIAL_AUTH_PROFILE_MAX_AGE: else the kept one stands in. When the link
 * was not read (readLink), the transaction reads it and decides (runPipeline): most sign-ins keep the profile, and a
 * read before the transaction would be made again inside it.
 */
export const loadProfile: BeforeStep = async (draft) => {
  if (draft.mode === 'associate') {
    draft.identity = await withProfile(draft.identity);
    return;
  }
  if (!draft.identity.loadProfile) return;
  const maybeNew = draft.createUser || draft.emailLinking?.trusted.includes(draft.provider.name) === true;
  const maxAge = draft.profileMaxAgeSeconds;
  const needsProfile: NeedsProfile = (link) => (link ? profileIsStale(link.extraData, maxAge) : maybeNew);
  if (draft.link === undefined) {
    draft.needsProfile = needsProfile;
    return;
  }
  const link = draft.link ?? undefined;
  draft.identity = needsProfile(link) ? await withProfile(draft.identity) : withKeptProfile(draft.identity, link);
};

/**
 * The app's backend decides (blocking-hooks.ts), before anything is written: associate asks before_link; auth asks
 * before_sign_in of a linked account's user, or, for an account that will get a new user, before_user_created then
 * before_sign_in. An unknown account that gets no user (404, 409 link_required) asks nothing: nothing signs in.
 * The claims they add go with the session (sign-in's over user-created's). Whom they judged is carried in: the
 * transaction signs in that one or nobody (startSession), whatever changed while they thought.
 */
export const askTheApp: BeforeStep = async (draft) => {
  const { hooks, identity, client } = draft;
  const about = { provider: draft.provider.name, identity, client };
  if (draft.mode === 'associate') {
    if (hooks.has('before_link'))
      await hooks.ask('before_link', { ...about, user: draft.user ?? null, newUser: false });
    return;
  }
  if (!hooks.asksOnSignIn) return;
  if (draft.link) {
    draft.askedAbout = { userId: draft.link.userId };
    draft.claims = await hooks.ask('before_sign_in', { ...about, user: draft.linkedUser ?? null, newUser: false });
    return;
  }
  draft.askedAbout = 'nobody';
  if (!draft.createUser) return;
  if (await findEmailMatch(draft.storage, draft.provider.name, identity, draft.emailLinking)) return;
  draft.askedAbout = 'new user';
  const created = await hooks.ask('before_user_created', { ...about, user: null, newUser: true });
  draft.claims = await hooks.ask('before_sign_in', { ...about, user: null, newUser: true }, created);
};

/**
 * Is the user signing in the one the hooks judged? The link may have been removed, made or moved while they
 * thought: then their verdict (and their claims) is not this sign-in's.
 */
function judgedByTheHooks(context: PipelineContext, user: User): boolean {
  const asked = context.askedAbout;
  if (asked === undefined) return true;
  if (asked === 'nobody') return false;
  if (asked === 'new user') return context.isNewUser;
  return !context.isNewUser && user.id === asked.userId;
}

/**
 * auth, embedded: the host makes its user for an account nobody linked, before our transaction (no host code
 * runs inside it) — not when the account must be linked to the user with its verified e-mail (409 link_required).
 */
export const hostUser: BeforeStep = async (draft) => {
  if (draft.mode !== 'auth' || !draft.hostNewUser || draft.link) return;
  if (await findEmailMatch(draft.storage, draft.provider.name, draft.identity, draft.emailLinking)) return;
  draft.hostUser = await draft.storage.users.ofExternal(await draft.hostNewUser(draft.identity));
};

const BEFORE_TRANSACTION: readonly Listed<BeforeStep>[] = [
  listed(
    readLink,
    "with hooks or a host's user: the link decides them and the profile call, and is carried into the transaction (else read in it, its user's row held)",
  ),
  listed(loadProfile, 'a profile call only when this sign-in needs it: a new user, or a stale kept profile'),
  listed(askTheApp, "the app's blocking hooks may refuse it or add claims: before anything is written"),
  listed(hostUser, "the embedding host's user for an unknown account: no host code inside our transaction"),
];

/** The steps before the transaction for this provider, after proveToken. */
export const beforeTransaction = (provider: string): readonly Listed<BeforeStep>[] =>
  PROVIDER_STEPS[provider] ? [...PROVIDER_STEPS[provider], ...BEFORE_TRANSACTION] : BEFORE_TRANSACTION;

/** The rest of phase one, once proveToken has proved the token: the provider's own steps, the link, the profile, the host user. */
export async function runBeforeTransaction(draft: SignInDraft): Promise<SignInDraft> {
  for (const { step } of beforeTransaction(draft.provider.name)) await step(draft);
  return draft;
}

// ─── In the transaction ───────────────────────────────────────────────────────────────────────────────────

/**
 * associate: the signed-in user's row first (as Users.hold): deleted meanwhile, its session has ended; disabled, it
 * links nothing. The account's link is read in the same statement, for socialUser (one round trip less).
 */
export const holdUser: PipelineStep = async (context) => {
  if (!context.user) return;
  const held = await context.storage.links.holdUserWithLink(context.user.id, context.provider, context.identity.uid);
  if (!held) throw sessionEnded();
  refuseIfDisabled(held.user);
  context.accountLink = held.link ?? null;
};

/** The ID token's use (and its issued nonce's) is recorded in this transaction: kept only if it commits. */
export const spendProof: PipelineStep = async (context) => {
  if (context.identity.idToken)
    await useIdToken(context.storage, context.identity.idToken, context.client, context.replay);
};

/** Refuse identities the operator does not want; the default allows all (a hook point, like social-core's). */
export const authAllowed: PipelineStep = () => {};

/**
 * Find the existing link of this social account; in associate mode, refuse one owned by another user. In
 * auth mode the link is read with its user's row held before anything is written (Links.holdWithUser), in one
 * statement.
 */
export const socialUser: PipelineStep = async (context) => {
  // Read first in this transaction, its user's row held (for the profile's decision), with no rule before this one
  // that could have changed it (runPipeline): taken as read, once (a second socialUser in the rules reads for itself).
  const { linked } = context;
  context.linked = undefined;
  if (linked !== undefined && context.mode === 'auth' && !context.user) {
    if (linked) {
      context.association = linked.association;
      context.user = linked.user;
    }
    return;
  }
  if (context.user) {
    // holdUser read the link with the user's row, in a snapshot taken before it waited for that row: "none" is safe to
    // act on (the new link's unique key decides a race); a link is read again, now that the row is held.
    const link =
      context.accountLink === null
        ? undefined
        : (await context.storage.links.findWithUser(context.provider, context.identity.uid))?.association;
    if (link && link.userId !== context.user.id)
      throw new AlreadyAssociatedError({ userId: link.userId, provider: context.provider, uid: context.identity.uid });
    if (link) context.association = link;
    return;
  }
  // The link and its user, both rows held (SQLite: this transaction holds the database's write lock since it began),
  // read anew whatever readLink found: unlinked, moved or made since, it is as it is now. An unlink or a deletion that
  // committed while the statement waited for the user's row (it took the row first) leaves the account unknown.
  const found = await context.storage.links.holdWithUser(context.provider, context.identity.uid);
  if (!found) return;
  context.association = found.association;
  context.user = found.user;
};

/** Auth with an unknown social account: create a user when the operator allows it, else 404. */
export const createUser: PipelineStep = async (context) => {
  if (context.user) return;
  if (!context.options.createUser) throw apiError('user_not_found');
  const { newUser } = context.options;
  context.user = newUser
    ? await newUser(context.storage, context.identity)
    : await context.storage.users.create(newUsername(context), null);
  context.isNewUser = true;
};

/** Link the social account to the user. Losing a race to another link is reported, never overwritten. */
export const associateUser: PipelineStep = async (context) => {
  if (context.association || !context.user) return;
  const { links } = context.storage;
  const { uid, extraData } = context.identity;
  const sealed = sealedTokens(context);
  const verifiedEmail = verifiedEmailOf(context.identity) ?? null;
  // The link's audit event goes with it (one round trip on PostgreSQL), unless a new user's event must come first.
  const recordedWith = !context.isNewUser;
  const association = recordedWith
    ? await links.insertAssociated(
        context.user.id,
        context.provider,
        uid,
        extraData,
        sealed,
        verifiedEmail,
        context.client,
      )
    : await links.insert(context.user.id, context.provider, uid, extraData, sealed, undefined, verifiedEmail);
  if (!association) throw new AssociationRaceError();
  context.association = association;
  context.isNewAssociation = true;
  context.associationRecorded = recordedWith;
};

/**
 * Keep the provider's latest profile and token facts on the link: what this sign-in read replaces what was
 * kept, except the facts it did not read (identity.keptFacts: a profile not fetched, an Apple name given once).
 */
export const loadExtraData: PipelineStep = async (context) => {
  if (!context.association || context.isNewAssociation) return;
  const extraData = mergeFacts(context.association.extraData, context.identity);
  // The verified e-mail, when this sign-in read the e-mail (else the kept one stays).
  const verifiedEmail = context.identity.keptFacts?.includes('email')
    ? undefined
    : (verifiedEmailOf(context.identity) ?? null);
  const emailChanged = verifiedEmail !== undefined && verifiedEmail !== context.association.verifiedEmail;
  // Most sign-ins bring the same facts: no write then (unless there are new tokens to keep).
  if (sameFacts(context.association.extraData, extraData) && !context.identity.tokens && !emailChanged) return;
  // Not while another sign-in of this account writes its own (a hot account's sign-ins never queue on the link), and
  // on PostgreSQL written with the transaction's next statement. The steps after this one see these facts, even
  // when another sign-in's, moments apart, stand in the database instead.
  await context.storage.links.writeSignInFacts(
    context.association.id,
    extraData,
    sealedTokens(context),
    emailChanged ? verifiedEmail : undefined,
  );
  context.association = {
    ...context.association,
    extraData,
    verifiedEmail: emailChanged ? verifiedEmail : context.association.verifiedEmail,
  };
};

/** The operator's rules (buildApp({ pipeline }), the configuration file's `pipeline`): these by default. */
export const defaultPipeline: readonly PipelineStep[] = [
  authAllowed,
  socialUser,
  emailLinkRequired,
  createUser,
  associateUser,
  loadExtraData,
];

/** Whatever the rules are: a token issued before its provider ended the account's sessions opens none. */
export const endedSessions: PipelineStep = (context) => {
  if (context.identity.idToken && context.association)
    refuseTokenOfEndedSessions(context.identity.idToken, context.association);
};

/** What the rules changed, in the audit log; a sign-in itself is recorded with its session (Sessions.start). */
export const record: PipelineStep = async (context) => {
  const about = { userId: context.user?.id ?? null, provider: context.provider, uid: context.identity.uid };
  if (context.isNewUser)
    await context.storage.audit.record({ ...about, event: 'user_created', detail: 'social' }, context.client);
  if (context.isNewAssociation && !context.associationRecorded)
    await context.storage.audit.record({ ...about, event: 'associated' }, context.client);
};

/** The signed-in user and its session: what an auth run's last step answers. */
export interface SignedIn<S> {
  user: User;
  session: S;
}

/**
 * auth, last: the rules found (or made) a user — else 404 —, not disabled; its session starts in the same
 * commit (the strategy SocialAccounts was made with), with the social_sign_in event.
 */
export const startSession =
  <S>(start: SessionStarter<S>) =>
  async (context: PipelineContext): Promise<SignedIn<S>> => {
    const user = context.user;
    if (!user) throw apiError('user_not_found');
    refuseIfDisabled(user);
    if (!judgedByTheHooks(context, user))
      throw apiError('hook_unavailable', {
        detail: "the account's link changed while the app's hooks were asked; try again",
      });
    // The hook's claims were checked as they came: what is wrong now is an operator's step's (a 500, logged).
    const problem = claimsProblem(context.claims);
    if (problem) throw new Error(`a pipeline step added claims that cannot be kept: ${problem}`);
    const audit: AuditEntry = {
      event: 'social_sign_in',
      userId: user.id,
      provider: context.provider,
      uid: context.identity.uid,
    };
    return { user, session: await start(context.storage, user, audit, context.client, context.claims) };
  };

const RULE_WHY = new Map<PipelineStep, string>([
  [authAllowed, "the operator's refusals (a step of their own before it, or in its place)"],
  [socialUser, "the account's link and its user, held (auth); associate: another user's link is 409"],
  [emailLinkRequired, "an unknown account with a linked user's verified e-mail: 409 link_required"],
  [createUser, 'an unknown account gets a user when the operator allows it, else 404'],
  [associateUser, 'the new link; the unique (provider, uid) decides a race'],
  [loadExtraData, "the profile and token facts kept on the link (no write when they're the same)"],
]);

const TRANSACTION_FIRST: readonly Listed<PipelineStep>[] = [
  listed(holdUser, "associate: the signed-in user's row first; gone, the session ended; disabled, nothing is linked"),
  listed(spendProof, 'the ID token and its issued nonce used up, kept only if the sign-in commits'),
];
const TRANSACTION_LAST: readonly Listed<PipelineStep>[] = [
  listed(endedSessions, "a token older than the provider's end of the account's sessions opens none"),
  listed(record, 'the audit events (and webhooks) of a new user, a new link (unless written with it)'),
];

/** Each rules list's steps, listed once (a server's rules are one list for its life): not again per sign-in. */
const listedRules = new WeakMap<readonly PipelineStep[], readonly Listed<PipelineStep>[]>();

/**
 * Does socialUser run before any rule of the operator's (authAllowed, ours, does nothing)? Only then may it take the
 * link as the transaction first read it (context.linked): a rule of theirs could change the link. Once per list.
 */
const socialUserFirstIn = new WeakMap<readonly PipelineStep[], boolean>();
function socialUserFirst(rules: readonly PipelineStep[]): boolean {
  let first = socialUserFirstIn.get(rules);
  if (first === undefined) {
    const at = rules.indexOf(socialUser);
    socialUserFirstIn.set(rules, (first = at >= 0 && rules.slice(0, at).every((rule) => rule === authAllowed)));
  }
  return first;
}

/** The steps inside the transaction around the operator's rules. */
export function inTransaction(rules: readonly PipelineStep[]): readonly Listed<PipelineStep>[] {
  let steps = listedRules.get(rules);
  if (!steps) {
    const own = rules.map((rule) => listed(rule, RULE_WHY.get(rule) ?? "the operator's own step"));
    listedRules.set(rules, (steps = [...TRANSACTION_FIRST, ...own, ...TRANSACTION_LAST]));
  }
  return steps;
}

/** The whole listing for one provider and rules, phase by phase: what the top of this file says. */
export function signInPipeline(
  provider: string,
  rules: readonly PipelineStep[] = defaultPipeline,
): {
  beforeTransaction: ReadonlyArray<Omit<Listed<unknown>, 'step'>>;
  inTransaction: ReadonlyArray<Omit<Listed<unknown>, 'step'>>;
} {
  const names = ({ name, why }: Listed<unknown>) => ({ name, why });
  return {
    beforeTransaction: [
      { name: 'proveToken', why: 'the provider module proves the token was issued to our app, and whose it is' },
      ...beforeTransaction(provider).map(names),
    ],
    inTransaction: [
      ...inTransaction(rules).map(names),
      { name: 'startSession', why: 'auth: the user found and not disabled; its session in the same commit' },
    ],
  };
}

/** Equal facts, whatever the order of their keys. */
function sameFacts(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  // Facts are mostly scalars: compared as such; a nested value (scopes) by its JSON.
  return keys.every(
    (key) =>
      Object.hasOwn(b, key) &&
      (a[key] === b[key] || (typeof a[key] === 'object' && JSON.stringify(a[key]) === JSON.stringify(b[key]))),
  );
}

/** The provider tokens to keep, sealed and bound to this (provider, uid); null when there are none. */
function sealedTokens(context: PipelineContext): string | null {
  const tokens = context.identity.tokens;
  if (!tokens || Object.keys(tokens).length === 0) return null;
  return context.secrets.seal(JSON.stringify(tokens), `${context.provider}:${context.identity.uid}`);
}

/** Another request linked the same social account between our read and our insert. */
export class AssociationRaceError extends Error {}

type PipelineInput = Omit<
  PipelineContext,
  'storage' | 'isNewUser' | 'isNewAssociation' | 'associationRecorded' | 'claims' | 'linked'
> & {
  claims?: Claims;
  /** loadProfile's decision, left to the transaction (SignInDraft.needsProfile). */
  needsProfile?: NeedsProfile;
};

/** The profile must be read: the transaction rolls back for the call (no provider call inside it). */
class ProfileNeeded extends Error {}

/**
 * auth, the link not read before the transaction: read first in it, with its user's row held (SQLite: under the write
 * lock), it decides the profile — the kept one, or ProfileNeeded. A kept profile is the common case: one read of the
 * link in all.
 */
async function profileInTransaction(
  storage: Storage,
  provider: string,
  identity: SocialIdentity,
  needsProfile: NeedsProfile,
) {
  const linked = (await storage.links.holdWithUser(provider, identity.uid)) ?? null;
  if (needsProfile(linked?.association)) throw new ProfileNeeded();
  return { identity: withKeptProfile(identity, linked?.association), linked };
}

/**
 * Runs the steps in the transaction (inTransaction: holdUser, spendProof, the rules, endedSessions, record),
 * then `finish` (auth: startSession) in the same transaction. If it lost a race for the (provider, uid) link,
 * the transaction is rolled back (with any user it created) and it runs once more, now reading the winner's
 * link in the transaction (the link read before it is stale then). A profile call left to the transaction
 * (`needsProfile`) that it finds needed is made after a rollback, before the run that uses it.
 */
export function runPipeline(
  rules: readonly PipelineStep[],
  storage: Storage,
  input: PipelineInput,
): Promise<{ context: PipelineContext; result: undefined }>;
export function runPipeline<T>(
  rules: readonly PipelineStep[],
  storage: Storage,
  input: PipelineInput,
  finish: (context: PipelineContext) => Promise<T>,
): Promise<{ context: PipelineContext; result: T }>;
export async function runPipeline<T>(
  rules: readonly PipelineStep[],
  storage: Storage,
  input: PipelineInput,
  finish?: (context: PipelineContext) => Promise<T>,
): Promise<{ context: PipelineContext; result: T | undefined }> {
  const steps = inTransaction(rules);
  const { needsProfile } = input;
  const firstReadStands = socialUserFirst(rules);
  let { identity } = input;
  for (let attempt = 1, races = 0; ; attempt++) {
    try {
      return await storage.transaction(async (trx) => {
        const decided =
          needsProfile && identity.loadProfile
            ? await profileInTransaction(trx, input.provider, identity, needsProfile)
            : undefined;
        // Field by field, one shape for every run (a spread of the input would make a new one each time).
        const context: PipelineContext = {
          mode: input.mode,
          provider: input.provider,
          // No provider call inside the transaction: a profile not read by now stays unread.
          // (Assigned, not spread: see mergeFacts in providers/profile.ts.)
          identity: decided?.identity ?? Object.assign({}, identity, { loadProfile: undefined }),
          storage: trx,
          options: input.options,
          secrets: input.secrets,
          client: input.client,
          replay: input.replay,
          known: attempt === 1 ? input.known : undefined,
          linked: firstReadStands ? decided?.linked : undefined,
          accountLink: undefined,
          askedAbout: input.askedAbout,
          user: input.user,
          association: input.association,
          // A step's additions of a rolled-back attempt are not carried into the next.
          claims: { ...input.claims },
          isNewUser: false,
          isNewAssociation: false,
          associationRecorded: false,
        };
        for (const { step } of steps) await step(context);
        return { context, result: await finish?.(context) };
      });
    } catch (error) {
      if (error instanceof ProfileNeeded) identity = await withProfile(identity);
      else if (!(error instanceof AssociationRaceError) || ++races >= 3) throw error;
    }
  }
}

/** A readable username from the profile, made unique by a random suffix (no read, so no race). */
function newUsername(context: PipelineContext): string {
  const base = (context.identity.details.username ?? '')
    .normalize('NFKC')
    .replace(/[^\w.@+-]+/g, '')
    .slice(0, 30);
  return `${base.length >= 3 ? base : `${context.provider}_user`}_${randomBytes(6).toString('hex')}`;
}
