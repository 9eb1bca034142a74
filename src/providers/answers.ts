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
 */
export type Refusal = { token: string } | { app: string; hint: string } | { throttled: string } | { outage: string };

/** Reads one endpoint's error answers; undefined: not an answer it knows (an outage). */
export type RefusalReader = (answer: JsonResponse) => Refusal | undefined;

/** A reader by HTTP status (`first`, when given, reads the answer before: a provider's rate-limit signs). */
export const byStatus =
  (refusals: Partial<Record<number, Refusal>>, first?: RefusalReader): RefusalReader =>
  (answer) =>
    first?.(answer) ?? refusals[answer.status];

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
  if ('app' in refusal) return providerRefusedApp(provider, refusal.app, refusal.hint);
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
