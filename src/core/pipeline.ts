import { randomBytes } from 'node:crypto';
import { AlreadyAssociatedError, apiError, sessionEnded } from '../lib/errors.js';
import { refuseIfDisabled } from './disabled-users.js';
import type { Storage } from '../store/storage.js';
import { mergeFacts } from '../providers/profile.js';
import { verifiedEmailOf } from '../store/verified-email.js';
import { refuseTokenOfEndedSessions, useIdToken } from './replay.js';
import { emailLinkRequired } from './email-linking.js';
import type { PipelineContext, PipelineStep } from './pipeline-step.js';

// The default steps, and how they run (runPipeline); what a step is and what it reads: pipeline-step.ts.

/** Refuse identities the operator does not want; the default allows all (a hook point, like social-core's). */
export const authAllowed: PipelineStep = () => {};

/**
 * Find the existing link of this social account; in associate mode, refuse one owned by another user. In
 * auth mode the linked user's row is held before anything is written (Users.hold), and the link read again
 * under it.
 */
export const socialUser: PipelineStep = async (context) => {
  const found = await context.storage.links.findWithUser(context.provider, context.identity.uid);
  if (!found) return;
  if (context.user && context.user.id !== found.association.userId) {
    throw new AlreadyAssociatedError({
      userId: found.association.userId,
      provider: context.provider,
      uid: context.identity.uid,
    });
  }
  if (context.user) {
    context.association = found.association;
    return;
  }
  // SQLite: this transaction holds the database's write lock since it began: nothing read can change.
  if (context.storage.writeLocked) {
    context.association = found.association;
    context.user = found.user;
    return;
  }
  // The user's row first, then the link read again: an unlink or a deletion that committed meanwhile (it took
  // the row first) has removed it, and the account is then unknown.
  const held = await context.storage.links.holdOwner(found.user.id, context.provider, context.identity.uid);
  if (!held?.link) return;
  context.association = held.link;
  context.user = held.user;
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
  const association = await context.storage.links.insert(
    context.user.id,
    context.provider,
    context.identity.uid,
    context.identity.extraData,
    sealedTokens(context),
    undefined,
    verifiedEmailOf(context.identity) ?? null,
  );
  if (!association) throw new AssociationRaceError();
  context.association = association;
  context.isNewAssociation = true;
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
  await context.storage.links.updateExtraData(
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

export const defaultPipeline: readonly PipelineStep[] = [
  authAllowed,
  socialUser,
  emailLinkRequired,
  createUser,
  associateUser,
  loadExtraData,
];

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

/**
 * Runs the pipeline in a transaction, and records what it did in the audit log in the same transaction.
 * If it lost a race for the (provider, uid) link, the transaction is rolled back (with any user it
 * created) and the pipeline runs once more, now seeing the winner's link.
 */
export async function runPipeline<T = undefined>(
  steps: readonly PipelineStep[],
  storage: Storage,
  input: Omit<PipelineContext, 'storage' | 'isNewUser' | 'isNewAssociation'>,
  /** More work in the same transaction once the steps are done (auth starts the session there: one commit). */
  then?: (context: PipelineContext) => Promise<T>,
): Promise<{ context: PipelineContext; result: T | undefined }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await storage.transaction(async (trx) => {
        // No provider call inside the transaction: a profile not read by now stays unread.
        const identity = { ...input.identity, loadProfile: undefined };
        const context: PipelineContext = {
          ...input,
          identity,
          storage: trx,
          isNewUser: false,
          isNewAssociation: false,
        };
        // The signed-in user's row first (Users.hold): deleted meanwhile, its session has ended; disabled, it links nothing.
        if (input.user) {
          const held = await trx.users.hold(input.user.id);
          if (!held) throw sessionEnded();
          refuseIfDisabled(held);
        }
        // The ID token's use (and its issued nonce's) is recorded in this transaction: kept only if it commits.
        if (identity.idToken) await useIdToken(trx, identity.idToken, input.client, input.replay);
        for (const step of steps) await step(context);
        // Whatever the steps are: a token issued before its provider ended the account's sessions opens none.
        if (identity.idToken && context.association) refuseTokenOfEndedSessions(identity.idToken, context.association);
        await recordOutcome(context);
        return { context, result: await then?.(context) };
      });
    } catch (error) {
      if (!(error instanceof AssociationRaceError) || attempt >= 3) throw error;
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

/** What the pipeline changed; a sign-in itself is recorded with its session (Sessions.start). */
async function recordOutcome(context: PipelineContext): Promise<void> {
  const about = { userId: context.user?.id ?? null, provider: context.provider, uid: context.identity.uid };
  if (context.isNewUser)
    await context.storage.audit.record({ ...about, event: 'user_created', detail: 'social' }, context.client);
  if (context.isNewAssociation) await context.storage.audit.record({ ...about, event: 'associated' }, context.client);
}
