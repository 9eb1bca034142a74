import { InvalidTokenError, ProviderUnavailableError, providerRateLimited, providerRefusedApp } from '../lib/errors.js';
import { retryAfterSeconds, type JsonResponse } from './http.js';
import { isObject } from '../lib/narrowing.js';
import type { SocialIdentity } from './types.js';

/**
 * What a provider's error answer means, as each provider module declares it:
 * - `token`: the user's token is refused (400 invalid_token, with this detail);
 * - `app`: our app is refused — its credentials, plan or access level (502; `hint` tells the operator what to fix);
 * - `throttled`: the provider rate-limits our app or this user (503);
 * - `outage`: the provider is in trouble (502).
 *
 * A `hint` names the provider's own variables by their suffix in braces, so that a module never spells its name
 * again: `{KEY}` is SOCIAL_AUTH_FACEBOOK_KEY for facebook and SOCIAL_AUTH_OIDC_CORP_KEY for oidc:corp; `{SECRET}`
 * and any other suffix (capitals, digits and `_`) alike. refusalError writes them out (hintOf).
 */
export type Refusal = { token: string } | { app: string; hint: string } | { throttled: string } | { outage: string };

/** Reads one endpoint's error answers; undefined: not an answer it knows (an outage). */
export type RefusalReader = (answer: JsonResponse) => Refusal | undefined;

/** A reader by HTTP status (`first`, when given, reads the answer before: a provider's rate-limit signs). */
export const byStatus =
  (refusals: Partial<Record<number, Refusal>>, first?: RefusalReader): RefusalReader =>
  (answer) =>
    first?.(answer) ?? refusals[answer.status];

/**
 * A reader of 4xx answers whose body carries a numeric error code (Graph's `{"error": {"code"}}`, X v1.1's
 * `{"errors": [{"code"}]}`): `known` says what each code the provider documents means, `otherwise` what any other
 * code does (Graph: a throttle when it is one of its rate-limit codes, else an outage; X: a refused token). An answer
 * without a code is not one it knows.
 */
export const byCode =
  (read: {
    /** Where the body has its code. */
    code(body: Record<string, unknown>): unknown;
    known: Readonly<Record<number, Refusal>>;
    otherwise(code: number): Refusal;
  }): RefusalReader =>
  ({ status, body }) => {
    const code = isObject(body) ? read.code(body) : undefined;
    if (status < 400 || status >= 500 || typeof code !== 'number') return undefined;
    return read.known[code] ?? read.otherwise(code);
  };

/** The variables' key of a provider: `facebook` -> FACEBOOK, `oidc:corp` -> OIDC_CORP. */
export const settingsKeyOf = (name: string): string => name.toUpperCase().replace(':', '_');

/** One of a provider's variables: `variableOf('facebook', 'KEY')` = SOCIAL_AUTH_FACEBOOK_KEY. */
export const variableOf = (provider: string, suffix: string): string =>
  `SOCIAL_AUTH_${settingsKeyOf(provider)}_${suffix}`;

/** A hint with its placeholders (`{KEY}`: see Refusal) written out as the provider's variables. */
export const hintOf = (provider: string, hint: string): string =>
  hint.replace(/\{([A-Z0-9_]+)\}/g, (_, suffix: string) => variableOf(provider, suffix));

/** The error a refusal means. */
export function refusalError(
  provider: string,
  what: string,
  answer: JsonResponse,
  refusal: Refusal | undefined,
): Error {
  if (!refusal)
    return new ProviderUnavailableError(provider, `answered ${what} with HTTP ${answer.status} and an unexpected body`);
  if ('token' in refusal) return new InvalidTokenError(refusal.token);
  if ('app' in refusal) return providerRefusedApp(provider, refusal.app, hintOf(provider, refusal.hint));
  if ('throttled' in refusal)
    return providerRateLimited(provider, refusal.throttled, retryAfterSeconds(answer.headers));
  return new ProviderUnavailableError(provider, refusal.outage);
}

/** The JSON object of a 200 answer; any other answer is read by the provider's refusal reader. */
export function accepted(
  provider: string,
  what: string,
  answer: JsonResponse,
  read: RefusalReader,
): Record<string, unknown> {
  if (answer.status === 200 && isObject(answer.body)) return answer.body;
  throw refusalError(provider, what, answer, read(answer));
}

/** The profile facts a provider gives, as social-link's identity (python-social-auth's `get_user_details`). */
export interface AccountFacts {
  uid: string;
  name?: string;
  email?: string;
  first_name?: string;
  last_name?: string;
  /** A handle (X screen name, GitHub login); the display name stands in when there is none. */
  username?: string;
  /** The provider's answer says it verified the e-mail. */
  email_verified?: boolean;
}

export function account(
  facts: AccountFacts,
  extraData: Record<string, unknown>,
  more: Partial<SocialIdentity> = {},
): SocialIdentity {
  const { uid, name, email, first_name, last_name, username, email_verified } = facts;
  return {
    uid,
    details: {
      username: username ?? name,
      email,
      email_verified: email ? email_verified === true : undefined,
      fullname: name,
      first_name,
      last_name,
    },
    extraData,
    ...more,
  };
}
