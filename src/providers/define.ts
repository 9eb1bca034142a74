import type { Settings } from '../lib/settings.js';
import { InvalidTokenError, ProviderUnavailableError, invalidRequest } from '../lib/errors.js';
import {
  accepted,
  account,
  refusalError,
  settingsKeyOf,
  variableOf,
  type AccountFacts,
  type Refusal,
  type RefusalReader,
} from './answers.js';
import { requireOneOf } from './fields.js';
import type { JsonResponse, ProviderHttp, RequestOptions } from './http.js';
import { idTokenVerifier, nonceRuleOf, type IdTokenDeclaration } from './id-token.js';
import type {
  AccountEvent,
  EmailTrust,
  IdTokenProof,
  NonceRule,
  Profile,
  Provider,
  ProviderContext,
  ProviderModule,
  SocialIdentity,
  TokenInput,
} from './types.js';

/**
 * A provider as a value: one object literal says everything social-link knows of it — its name (written once),
 * its SOCIAL_AUTH_<P>_* settings, how a token is proved, the pure mapping of what the provider answered to the
 * account social-link keeps, its e-mail trust rule and its callbacks. The protocol is the shared helpers'
 * (http.ts, answers.ts, id-token.ts, jwks.ts, oauth1.ts); the verify() every provider needs is built here, once
 * per provider at start-up, from the declaration.
 */

/** SOCIAL_AUTH_<P>_*: one provider's settings, each read by its suffix (`string('API_URL')` reads SOCIAL_AUTH_<P>_API_URL). */
export class ProviderSettings {
  /** SOCIAL_AUTH_FACEBOOK, SOCIAL_AUTH_OIDC_CORP. */
  readonly prefix: string;

  constructor(
    readonly settings: Settings,
    /** FACEBOOK, OIDC_CORP. */
    readonly key: string,
  ) {
    this.prefix = `SOCIAL_AUTH_${key}`;
  }

  /** The full name of a variable, for error messages. */
  variable(suffix: string): string {
    return `${this.prefix}_${suffix}`;
  }

  get production(): boolean {
    return this.settings.production;
  }

  string(suffix: string): string | undefined;
  string(suffix: string, fallback: string): string;
  string(suffix: string, fallback?: string): string | undefined {
    return fallback === undefined
      ? this.settings.string(this.variable(suffix))
      : this.settings.string(this.variable(suffix), fallback);
  }

  url(suffix: string, fallback: string): string {
    return this.settings.url(this.variable(suffix), fallback);
  }

  list(suffix: string): string[] {
    return this.settings.list(this.variable(suffix));
  }

  bool(suffix: string, fallback: boolean): boolean {
    return this.settings.bool(this.variable(suffix), fallback);
  }

  /** _KEY and _SECRET: both, or neither (undefined: the provider is off). */
  credentials(): { key: string; secret: string } | undefined {
    return this.settings.credentials(this.key);
  }

  /** _REQUIRE_NONCE. */
  nonceRule(): NonceRule {
    return nonceRuleOf(this.settings, this.variable('REQUIRE_NONCE'));
  }
}

export type IdTokenVerifier = ReturnType<typeof idTokenVerifier>;

/** What every step of a provider is handed: the tools of the protocol, bound to the provider's name. */
export interface ProviderTools {
  readonly name: string;
  /** The provider's keep-alive HTTP client. */
  readonly http: ProviderHttp;
  readonly clockToleranceSeconds: number;
  /** The full name of one of its variables (for hints and errors): `variable('KEY')` = SOCIAL_AUTH_<P>_KEY. */
  variable(suffix: string): string;
  /** The JSON object of a 200 answer; any other answer is read by `read` (answers.ts). */
  accepted(what: string, answer: JsonResponse, read: RefusalReader): Record<string, unknown>;
  /** Calls the provider and accepts its answer. */
  call(what: string, url: string, read: RefusalReader, options?: RequestOptions): Promise<Record<string, unknown>>;
  /** The error a refusal means. */
  refused(what: string, answer: JsonResponse, refusal: Refusal | undefined): Error;
  /** A 502 that names the provider: it answered what it should not. */
  unavailable(
    detail: string,
    options?: ConstructorParameters<typeof ProviderUnavailableError>[2],
  ): ProviderUnavailableError;
  /** A verifier of the provider's signed tokens, its keys cached, with the operator's clock tolerance. */
  idTokenVerifier(declaration: IdTokenDeclaration): IdTokenVerifier;
  /** The 400 of an access token (it carries no nonce) when the operator requires a nonce. */
  nonceNeedsIdToken(): Error;
}

/** What proving a token gives: the provider's facts (mapped by `account`), and what the sign-in keeps beside. */
export interface Proof<F> {
  facts: F;
  idToken?: IdTokenProof;
  tokens?: Record<string, string>;
  operatorNotice?: SocialIdentity['operatorNotice'];
}

/** The account as social-link keeps it: the facts for display and creating a user, and the extra_data kept. */
export interface Account extends AccountFacts {
  extraData: Record<string, unknown>;
  /** extra_data keys this sign-in did not read: a link keeps their values. */
  keptFacts?: readonly string[];
  transferSub?: string;
}

/** A profile the token's proof does not give, read only when needed (profile.ts). */
export interface ProfileCall<X, P> {
  /** The token form whose proof needs it. */
  form: keyof TokenInput;
  /** The call, as errors name it. */
  what: string;
  /** The extra_data keys it sets: kept as they are by a sign-in that does not read it. */
  kept: readonly string[];
  read(token: string, ctx: X): Promise<P>;
  /** Pure: its uid must be the proof's. */
  account(profile: P): Account;
}

export type Context<C, S> = ProviderTools & { readonly config: C } & S;

export interface ProviderDeclaration<C, S, F, P> {
  name: string;
  /** The default e-mail trust, as the provider's documentation supports it (test/fixtures/providers/email-trust.json). */
  emailTrust: EmailTrust;
  /** A default that depends on the configuration (an OpenID Connect issuer that is multi-tenant). */
  emailTrustFor?(config: C): EmailTrust;
  /**
   * The provider's own rule on which of the e-mails it marks verified it vouches for (Google: Gmail and Workspace
   * only); default: all of them. `extraData` is the mapped account's.
   */
  vouchesFor?(email: string, extraData: Record<string, unknown>): boolean;
  /** Its configuration from SOCIAL_AUTH_<P>_*, or undefined when it is not enabled. */
  settings(settings: ProviderSettings): C | undefined;
  /** What it builds once at start-up (token verifiers, API clients), added to the context. */
  setup?(ctx: Context<C, object>): S;
  /** The token forms accepted, in order: the first the app sent is proved (or a 400 naming them). */
  tokens: ReadonlyArray<keyof TokenInput>;
  /** Proves that the token was issued to OUR app, and says whose it is. */
  prove(form: keyof TokenInput, input: TokenInput, ctx: Context<C, S>): Promise<Proof<F>>;
  /** Pure: the proof's facts as the account social-link keeps. */
  account(facts: F): Account;
  profile?: ProfileCall<Context<C, S>, P>;
  warmUp?(ctx: Context<C, S>): void;
  revoke?(tokens: Record<string, string>, ctx: Context<C, S>): Promise<void>;
  callbacks?: {
    verifySignedRequest?(signedRequest: string, ctx: Context<C, S>): Record<string, unknown> | undefined;
    verifyNotification?(payload: string, ctx: Context<C, S>): Promise<AccountEvent>;
    verifySecurityEvent?(token: string, ctx: Context<C, S>): Promise<AccountEvent>;
  };
}

/** The tools bound to a provider's name: made once per provider, at start-up. */
function toolsFor(name: string, { http, clockToleranceSeconds }: ProviderContext): ProviderTools {
  const tools: ProviderTools = {
    name,
    http,
    clockToleranceSeconds,
    variable: (suffix) => variableOf(name, suffix),
    accepted: (what, answer, read) => accepted(name, what, answer, read),
    call: async (what, url, read, options) => accepted(name, what, await http.json(url, options), read),
    refused: (what, answer, refusal) => refusalError(name, what, answer, refusal),
    unavailable: (detail, options) => new ProviderUnavailableError(name, detail, options),
    idTokenVerifier: (declaration) => idTokenVerifier({ http, clockToleranceSeconds }, declaration),
    nonceNeedsIdToken: () =>
      invalidRequest(
        `id_token is required for ${name}: this server requires a nonce (${tools.variable('REQUIRE_NONCE')})`,
      ),
  };
  return tools;
}

/** A provider module from its declaration. */
export function defineProvider<C, S extends object = object, F = unknown, P = unknown>(
  declared: ProviderDeclaration<C, S, F, P>,
): ProviderModule<C> {
  const { name, profile } = declared;
  return {
    name,
    emailTrust: declared.emailTrust,
    emailTrustFor: declared.emailTrustFor,
    vouchesFor: declared.vouchesFor,
    configure: (settings) => declared.settings(new ProviderSettings(settings, settingsKeyOf(name))),
    create(config, context): Provider {
      const base = { ...toolsFor(name, context), config };
      const ctx = { ...base, ...declared.setup?.(base) } as Context<C, S>;

      /** The mapped account as the identity core reads, the provider's e-mail rule applied. */
      // Every sign-in maps its proof here: fields set one by one, no spread of the mapped account.
      const identityOf = (mapped: Account, more: Partial<SocialIdentity>): SocialIdentity => {
        const { uid, name, email, first_name, last_name, username, extraData } = mapped;
        const vouched =
          mapped.email_verified === true && email !== undefined && (declared.vouchesFor?.(email, extraData) ?? true);
        const identity = account(
          { uid, name, email, first_name, last_name, username, email_verified: vouched },
          extraData,
        );
        if (mapped.keptFacts) identity.keptFacts = mapped.keptFacts;
        if (mapped.transferSub) identity.transferSub = mapped.transferSub;
        return Object.assign(identity, more);
      };
      const readProfile = async (token: string): Promise<{ uid: string; profile: Profile }> => {
        const mapped = profile!.account(await profile!.read(token, ctx));
        const { details, extraData } = identityOf(mapped, {});
        return { uid: mapped.uid, profile: { details, extraData } };
      };

      const { callbacks = {} } = declared;
      return {
        name,
        async verify(input, options) {
          const form = requireOneOf(input, declared.tokens, name);
          const deferred = profile?.form === form;
          const token = input[form] as string;
          // Asked for now, the profile is read beside the proof; its failure counts once awaited.
          const read = deferred && options?.profile !== false ? readProfile(token) : undefined;
          read?.catch(() => {});
          const { facts, idToken, tokens, operatorNotice } = await declared.prove(form, input, ctx);
          const more: Partial<SocialIdentity> = {};
          if (idToken) more.idToken = idToken;
          if (tokens) more.tokens = tokens;
          if (operatorNotice) more.operatorNotice = operatorNotice;
          const mapped = declared.account(facts);
          if (!deferred) return identityOf(mapped, more);
          more.keptFacts = profile.kept;
          more.loadProfile = async () => {
            const answered = await (read ?? readProfile(token));
            if (answered.uid !== mapped.uid)
              throw new InvalidTokenError(`the token belongs to another user than ${profile.what} answered`);
            return answered.profile;
          };
          return identityOf(mapped, more);
        },
        ...(declared.warmUp && { warmUp: () => declared.warmUp!(ctx) }),
        ...(declared.revoke && { revoke: (tokens: Record<string, string>) => declared.revoke!(tokens, ctx) }),
        ...(callbacks.verifySignedRequest && {
          verifySignedRequest: (signedRequest: string) => callbacks.verifySignedRequest!(signedRequest, ctx),
        }),
        ...(callbacks.verifyNotification && {
          verifyNotification: (payload: string) => callbacks.verifyNotification!(payload, ctx),
        }),
        ...(callbacks.verifySecurityEvent && {
          verifySecurityEvent: (token: string) => callbacks.verifySecurityEvent!(token, ctx),
        }),
      };
    },
  };
}
