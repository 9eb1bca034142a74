import type { SecretBox } from '../auth/secret-box.js';
import type { SocialIdentity } from '../providers/types.js';
import type { Association, Client, Storage, User } from '../store/storage.js';
import type { ReplayPolicy } from './replay.js';

/**
 * The social pipeline, after python-social-auth's: the provider module has already done
 * `social_details` and `social_uid` (it proved the token and said whose it is); these steps then run
 * in order inside ONE database transaction, so a failure at any step writes nothing.
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
  user?: User;
  association?: Association;
  /** Whether this run created the user, and whether it created the link. */
  isNewUser: boolean;
  isNewAssociation: boolean;
}

export type PipelineStep = (context: PipelineContext) => Promise<void> | void;

/** What the e-mail linking step (core/email-linking.ts) needs to know, from the configuration and the enabled providers. */
export interface EmailLinking {
  /** The enabled providers whose verified e-mails are evidence (SOCIAL_AUTH_<P>_EMAIL_TRUST=verified). */
  trusted: readonly string[];
  /** The enabled providers: the ones that can prove a user today. */
  enabled: readonly string[];
}
