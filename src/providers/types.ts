import type { Settings } from '../lib/settings.js';
import type { ProviderHttp } from './http.js';

/** What the app sends us: the fields a provider's native SDK hands it. */
export interface TokenInput {
  access_token?: string;
  access_token_secret?: string;
  id_token?: string;
  nonce?: string;
  /** An authorization code (Sign in with Apple), exchanged by the server with its client secret. */
  code?: string;
  /** Sign in with Apple: the client id the code was issued to, when several are configured and no id_token is sent. */
  client_id?: string;
  /** Sign in with Apple (web flow, as on Android): the redirect URI the authorization used, one configured for its Services ID. */
  redirect_uri?: string;
  /** Sign in with Apple: the `user` JSON (name, email) Apple gives the app on the first authorization only; display only. */
  user?: AppleUserInput | string;
}

export interface AppleUserInput {
  name?: { firstName?: string; lastName?: string };
  email?: string;
}

/** Who the token belongs to, as proved by the provider. */
export interface SocialIdentity {
  /** The provider's stable id of the account (python-social-auth's `uid`). */
  uid: string;
  /**
   * Profile details, for display and for creating a user. `email_verified`: the provider's answer says it
   * verified this e-mail (its own rule: sources in test/fixtures/providers/email-trust.json).
   */
  details: {
    username?: string;
    email?: string;
    email_verified?: boolean;
    fullname?: string;
    first_name?: string;
    last_name?: string;
  };
  /** Stored with the association and shown to its user: profile and token facts (never a token). */
  extraData: Record<string, unknown>;
  /** Provider tokens kept to revoke them later (never shown; see Provider.revoke). */
  tokens?: Record<string, string>;
  /**
   * Sign in with Apple after the app moved to another developer team: the `transfer_sub` claim, which names
   * the account as the old team exported it (core/apple-transfer.ts).
   */
  transferSub?: string;
  /** The app's ID token, verified: how often it may sign in is core/replay.ts's. */
  idToken?: IdTokenProof;
  /**
   * extra_data keys this sign-in did not read (a profile not fetched, Apple's name given only on the first
   * authorization): a link keeps their values as they are. Every other key is replaced by `extraData`.
   */
  keptFacts?: readonly string[];
  /**
   * Something the operator should fix although the sign-in goes on (Sign in with Apple: a code Apple would not
   * redeem beside a valid identity token): logged as a warning with its hint, never shown to the app.
   */
  operatorNotice?: { reason: string; hint: string };
  /**
   * Present when the token was proved without reading the account's profile (`verify` with
   * `profile: false`): reads it. Called only when the profile is needed — see providers/profile.ts.
   */
  loadProfile?(): Promise<Profile>;
}

/** What a profile read adds to an identity. */
export type Profile = Pick<SocialIdentity, 'details' | 'extraData'>;

/**
 * SOCIAL_AUTH_<P>_REQUIRE_NONCE: `false` (a nonce is checked when the app sends one), `true` (the app must
 * send one and the token carry it), `issued` (and it must be one POST /api/nonce/ issued, unused).
 */
export type NonceRule = 'optional' | 'required' | 'issued';

/**
 * What the sign-in's transaction needs of a verified ID token to let it sign in once (core/replay.ts):
 * its hash, until when it could be accepted, and the nonce the app sent with it.
 */
export interface IdTokenProof {
  tokenHash: string;
  /** exp plus the clock tolerance: until then the token verifies, so its use is remembered until then. */
  acceptedUntil: string;
  nonce?: string;
  /** The token's own nonce claim: a token that carries an issued nonce signs in once (core/replay.ts). */
  tokenNonce?: string;
  /** The token's iat (seconds): a token issued before its provider ended the account's sessions does not sign in. */
  issuedAt?: number;
  nonceRule: NonceRule;
}

export interface VerifyOptions {
  /**
   * Must the profile be read now? Default true. With false, a provider whose proof of the token does not
   * give the profile (Facebook's debug_token, GitHub's token check) skips that call and sets `loadProfile`.
   */
  profile?: boolean;
}

export interface Provider {
  readonly name: string;
  /**
   * Proves that the token is valid, was issued to OUR app, and says whose it is.
   * Throws InvalidTokenError (400), ProviderUnavailableError (502/503) or an invalid_request ApiError.
   */
  verify(input: TokenInput, options?: VerifyOptions): Promise<SocialIdentity>;
  /** Starts fetching what verification needs (JWKS, discovery) so the first sign-in does not wait. */
  warmUp?(): void;
  /** Revokes the provider tokens kept for a link that is removed (Sign in with Apple requires it). */
  revoke?(tokens: Record<string, string>): Promise<void>;
  /**
   * Facebook: the payload of a callback's signed_request signed with our app secret (core/provider-callbacks.ts),
   * or undefined when the signature or the algorithm is wrong.
   */
  verifySignedRequest?(signedRequest: string): Record<string, unknown> | undefined;
  /**
   * Sign in with Apple: the event of a server-to-server notification (its `payload` JWT verified against Apple's
   * keys, for our client ids), or InvalidTokenError.
   */
  verifyNotification?(payload: string): Promise<AccountEvent>;
  /** Google Cross-Account Protection (RISC): the event of a security event token, or InvalidTokenError. */
  verifySecurityEvent?(token: string): Promise<AccountEvent>;
}

/** What a provider says happened to an account (Apple's server-to-server notifications). */
export interface AccountEvent {
  type: string;
  /** The account (our link's uid). */
  uid: string;
  /** The event's own id (the token's jti): a repeated delivery carries the same. */
  id?: string;
  email?: string;
  /** Google RISC account-disabled: hijacking, bulk-account. */
  reason?: string;
  /** The token's iat (seconds): a callback too old is refused. */
  issuedAt?: number;
  /**
   * Google RISC: signed by Google for a client id that is not ours — another client of the same Google project
   * (its Android or iOS client), to which Google sends the project's events too. Acknowledged, not acted on.
   */
  forAnotherClient?: boolean;
}

export interface ProviderContext {
  /** A keep-alive HTTP client with bounded timeouts, one per provider. */
  http: ProviderHttp;
  /** SOCIAL_AUTH_CLOCK_TOLERANCE_SECONDS: the clock skew tolerated on a signed token's exp, iat and nbf. */
  clockToleranceSeconds: number;
}

/**
 * Is a provider's verified e-mail (details.email_verified) evidence enough to tell the app "this person has an
 * account already"? `verified`: yes; `never`: its e-mails are never matched. SOCIAL_AUTH_<P>_EMAIL_TRUST.
 */
export type EmailTrust = 'verified' | 'never';

/** One provider = one module (providers/define.ts builds it from a declaration): how to read its settings, and how to build it. */
export interface ProviderModule<C> {
  readonly name: string;
  /** The default e-mail trust, as the provider's documentation supports it (test/fixtures/providers/email-trust.json). */
  readonly emailTrust: EmailTrust;
  /** A default that depends on the configuration (an OpenID Connect issuer that is multi-tenant), else `emailTrust`. */
  emailTrustFor?(config: C): EmailTrust;
  /**
   * The provider's own rule on which of the e-mails it marks verified it vouches for (Google: Gmail and Workspace
   * accounts only), applied to details.email_verified; none: all of them. `extraData` is the account's kept facts.
   */
  vouchesFor?(email: string, extraData: Record<string, unknown>): boolean;
  /** Its configuration from SOCIAL_AUTH_<NAME>_* settings, or undefined when it is not enabled. */
  configure(settings: Settings): C | undefined;
  create(config: C, context: ProviderContext): Provider;
}
