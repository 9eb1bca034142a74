import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../providers/id-token.js';
import type { SocialIdentity } from '../providers/types.js';
import type { SecretBox } from '../auth/secret-box.js';
import type { Client, Storage } from '../store/storage.js';
import type { PendingLink } from '../store/link-tokens.js';
import { ApiError, apiError, ERRORS } from '../lib/errors.js';
import { verifiedEmailOf } from '../store/verified-email.js';
import type { EmailLinking, PipelineStep } from './pipeline-step.js';
import { useIdToken, type ReplayPolicy } from './replay.js';

/**
 * Same person, second provider. A sign-in (`auth`) with an account nobody has linked, whose provider says it
 * verified an e-mail that a user's link of a trusted provider also verified, is most likely that user on a new
 * phone trying another button. Nobody is signed in or linked by that e-mail: the app is told which providers
 * prove that user (409 link_required) and gets a link token bound to the account the phone just proved. Once
 * the person has signed in with one of those, POST /api/associate/link-token/ links the new account to them.
 *
 * Both e-mails must come from providers the operator trusts (SOCIAL_AUTH_<P>_EMAIL_TRUST), and the answer goes
 * only to a request that proved an account with that e-mail: it names providers, nothing else of the user.
 */
export const LINK_TOKEN_PREFIX = 'slk_';
export const LINK_TOKEN_TTL_SECONDS = 600;

/** The step's finding, thrown inside the sign-in's transaction (which it rolls back); SocialAccounts answers it. */
export class EmailMatch extends Error {
  constructor(
    readonly userId: number,
    readonly providers: readonly string[],
    /** The proven account as the pipeline saw it (its profile read): what the link token keeps. */
    readonly identity: SocialIdentity,
  ) {
    super('link required');
  }
}

/**
 * Pipeline step, after socialUser, before createUser: an unknown account of a trusted provider whose verified
 * e-mail is one user's stops here (EmailMatch).
 */
export const emailLinkRequired: PipelineStep = async (context) => {
  if (context.mode !== 'auth' || context.user) return;
  const match = await findEmailMatch(context.storage, context.provider, context.identity, context.options.emailLinking);
  if (match) throw match;
};

/**
 * The one user whose trusted link verified the e-mail this trusted provider verified for an account nobody has
 * linked, with the providers that prove them; undefined when there is none, or several (sharing an e-mail, they
 * say nothing about which one this person is).
 */
export async function findEmailMatch(
  storage: Storage,
  provider: string,
  identity: SocialIdentity,
  linking: EmailLinking | undefined,
): Promise<EmailMatch | undefined> {
  if (!linking?.trusted.includes(provider)) return undefined;
  const email = verifiedEmailOf(identity);
  if (!email) return undefined;
  const owners = await storage.links.usersWithVerifiedEmail(email, linking.trusted);
  if (owners.length !== 1) return undefined;
  const links = await storage.links.ofUser(owners[0]!);
  const providers = [...new Set(links.map((link) => link.provider))]
    .filter((name) => linking.enabled.includes(name))
    .sort();
  return providers.length > 0 ? new EmailMatch(owners[0]!, providers, identity) : undefined;
}

/**
 * 409 link_required: `providers` prove the user, `link_token` links the proven account once the person signed
 * in with one of them.
 */
export class LinkRequiredError extends ApiError {
  constructor(providers: readonly string[], linkToken: string) {
    super('link_required', ERRORS.link_required.status, ERRORS.link_required.message, {
      extra: { providers, link_token: linkToken, link_token_expires_in: LINK_TOKEN_TTL_SECONDS },
    });
  }
}

/**
 * Keeps the proven identity for LINK_TOKEN_TTL_SECONDS behind a new single-use token (only its SHA-256 is
 * stored; provider tokens sealed), and tells the user's audit log. Answers the error to throw.
 */
export async function requireLink(
  { storage, secrets, replay }: { storage: Storage; secrets: SecretBox; replay: ReplayPolicy },
  match: EmailMatch,
  provider: string,
  identity: SocialIdentity,
  client: Client,
): Promise<LinkRequiredError> {
  const token = `${LINK_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const tokens = identity.tokens && Object.keys(identity.tokens).length > 0 ? identity.tokens : undefined;
  const pending: PendingLink = {
    userId: match.userId,
    provider,
    uid: identity.uid,
    identity: JSON.stringify({ details: identity.details, extraData: identity.extraData }),
    sealedTokens: tokens ? secrets.seal(JSON.stringify(tokens), `${provider}:${identity.uid}`) : null,
  };
  await storage.transaction(async (trx) => {
    // The user's row first, as every writer of its rows (Users.hold): deleted meanwhile, there is nobody to name.
    if (!(await trx.users.hold(match.userId))) throw apiError('user_not_found');
    // The ID token has done its work: its link token stands for it now (a replay gets no other).
    if (identity.idToken) await useIdToken(trx, identity.idToken, client, replay);
    await trx.linkTokens.issue(
      sha256Hex(token),
      pending,
      new Date(Date.now() + LINK_TOKEN_TTL_SECONDS * 1000).toISOString(),
    );
    await trx.audit.record(
      {
        event: 'link_required',
        userId: match.userId,
        provider,
        uid: identity.uid,
        detail: "a sign-in proved an account with this user's verified e-mail",
      },
      client,
    );
  });
  return new LinkRequiredError(match.providers, token);
}

/** The identity a link token keeps (its provider tokens opened), or invalid_link_token. */
export function pendingIdentity(pending: PendingLink, secrets: SecretBox): SocialIdentity {
  const kept = JSON.parse(pending.identity) as Pick<SocialIdentity, 'details' | 'extraData'>;
  const opened = pending.sealedTokens
    ? secrets.open(pending.sealedTokens, `${pending.provider}:${pending.uid}`)
    : undefined;
  if (pending.sealedTokens && !opened)
    throw apiError('invalid_link_token', {
      detail: 'its provider tokens could not be decrypted (encryption key removed?)',
    });
  return {
    uid: pending.uid,
    details: kept.details,
    extraData: kept.extraData,
    ...(opened ? { tokens: JSON.parse(opened) as Record<string, string> } : {}),
  };
}

export const linkTokenHash = (token: string) => sha256Hex(token);

/**
 * Ends the provider grants that link tokens kept, once the tokens are gone unused (expired, their user deleted)
 * — unless the account is linked by now: revoking one of Apple's tokens ends the whole authorization of our app,
 * the link's own token's too (see SocialAccounts.revokingUnkeptGrant).
 */
export async function revokeUnlinkedGrants(
  services: { storage: Storage; revokeKept(link: PendingLink): Promise<void> },
  pendings: readonly PendingLink[],
): Promise<void> {
  for (const pending of pendings) {
    if (pending.sealedTokens && !(await services.storage.links.find(pending.provider, pending.uid)))
      await services.revokeKept(pending);
  }
}
