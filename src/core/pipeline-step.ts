import type { SecretBox } from '../auth/secret-box.js';
import type { SocialIdentity } from '../providers/types.js';
import type { Association, AuditEntry, Client, Storage, User } from '../store/storage.js';
import type { ReplayPolicy } from './replay.js';
import type { Claims } from './claims.js';

/**
 * The social pipeline, after python-social-auth's: the provider module has already done
 * `social_details` and `social_uid` (it proved the token and said whose it is); these steps then run
 * in order inside ONE database transaction, so a failure at any step writes nothing. The whole sign-in,
 * both phases, is listed in pipeline.ts (signInPipeline()).
 *
 * A step reads and updates the context; it may throw an ApiError to stop with that answer.
 * Replace or extend the list with `buildApp({ pipeline })` to add your own rules.
 */
export interface PipelineContext {
  /** `associate` links to the signed-in user; `auth` finds (or creates) the user of the social account. */
  readonly mode: 'associate' | 'auth';
  readonly provider: string;
  readonly identity: SocialIdentity;
  readonly storage: Storage;
  readonly options: {
    createUser: boolean;
    /** How a new user is made (default: one of ours, named after the profile); the embedding host makes its own. */
    newUser?: (storage: Storage, identity: SocialIdentity) => Promise<User>;
    /** Set when SOCIAL_AUTH_EMAIL_LINKING is on: see core/email-linking.ts. */
    emailLinking?: EmailLinking;
  };
  /** Seals provider tokens (identity.tokens) before they are stored. */
  readonly secrets: SecretBox;
  /** Who asked, for the audit log. */
  readonly client: Client;
  /** How a used ID token is treated when it comes again (replay.ts). */
  readonly replay: ReplayPolicy;
  /**
   * The account's link as read before the transaction (auth with hooks or a host's user: readLink), null when there
   * was none; absent when it was not read. For the operator's own steps: it may have changed since, and socialUser
   * reads it again, its rows held (none of the default steps reads this).
   */
  readonly known?: Association | null;
  /**
   * auth, when the profile call was left to the transaction (loadProfile): the account's link and its user as the
   * transaction read them first, the user's row held (SQLite: under its write lock), null when there is none. Absent
   * when not read, or when a rule of the operator's runs before socialUser (it could change the link). socialUser
   * takes them once instead of reading again.
   */
  linked?: { association: Association; user: User } | null;
  /**
   * The account's link (whoever's) as holdUser read it with the signed-in user's row, null when there is none; absent
   * when it was not read. Read in the snapshot of that statement, taken before it waited for the row: socialUser
   * trusts a null (a link made meanwhile loses to the unique key) and reads a link again.
   */
  accountLink?: Association | null;
  user?: User;
  association?: Association;
  /** auth: whom the app's hooks judged before the transaction (askTheApp); the user signed in must be that one. */
  readonly askedAbout?: AskedAbout;
  /**
   * Custom claims for this sign-in's session (core/claims.ts): the blocking hook's first; a step may add its own
   * (`context.claims.plan = 'pro'`). In each access token of the session, over the user's own; auth only.
   */
  claims: Claims;
  /** Whether this run created the user, and whether it created the link. */
  isNewUser: boolean;
  isNewAssociation: boolean;
  /** Whether the new link's audit event was written with it (Links.insertAssociated): record then skips it. */
  associationRecorded: boolean;
}

export type PipelineStep = (context: PipelineContext) => Promise<void> | void;

/** The user the sign-in hooks were asked about: a linked user, a user to be made, or nobody (no user signs in). */
export type AskedAbout = { userId: number } | 'new user' | 'nobody';

/** What the e-mail linking step (core/email-linking.ts) needs to know, from the configuration and the enabled providers. */
export interface EmailLinking {
  /** The enabled providers whose verified e-mails are evidence (SOCIAL_AUTH_<P>_EMAIL_TRUST=verified). */
  trusted: readonly string[];
  /** The enabled providers: the ones that can prove a user today. */
  enabled: readonly string[];
}

/**
 * Starts the signed-in user's session inside the sign-in's transaction (the server's tokens, or the embedding
 * host's own record), with the sign-in's audit entry; given once, when SocialAccounts is made.
 */
export type SessionStarter<S> = (
  storage: Storage,
  user: User,
  audit: AuditEntry,
  client: Client,
  /** The claims the sign-in added (the server's tokens carry them; an embedding host's session may ignore them). */
  claims?: Claims,
) => Promise<S>;

/**
 * Who makes the user of an unknown account: nobody (404 user_not_found), social-link (a user of its own), or
 * the embedding host (`external`: called before the transaction, with the request (`R`) that signs in; it
 * answers the host's id of a new user).
 */
export type NewUserPolicy<R = void> =
  'none' | 'ours' | { external(identity: SocialIdentity, request: R): Promise<string> };

/** How a sign-in ends, fixed when SocialAccounts is made: the session it starts, and who makes new users. */
export interface SignInStrategy<S, R = void> {
  startSession: SessionStarter<S>;
  newUser: NewUserPolicy<R>;
}
