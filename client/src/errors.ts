import type { ApiErrorCode } from './error-codes.js';

/** The client's own codes: the server could not be reached, or answered something that is not the API. */
export type ClientErrorCode = 'network_error' | 'invalid_response';

/** A code of the API's catalogue, one of the client's own, or one an operator's pipeline step chose. */
export type ErrorCode = ApiErrorCode | ClientErrorCode | (string & {});

/**
 * Every failure of the client. `code` is the API's stable error code (`user_not_found`,
 * `last_login_method`, `invalid_refresh_token`, ...) or one of the client's own:
 * `network_error` (status 0: the server could not be reached) and `invalid_response`
 * (the server answered something that is not the API's JSON).
 */
export class SocialLinkError extends Error {
  override readonly name: string = 'SocialLinkError';
  readonly status: number;
  readonly code: ErrorCode;
  readonly detail?: string;
  /**
   * Seconds to wait before trying again, when the server said (`rate_limited`, `provider_unavailable`,
   * `database_unavailable`, `rate_limit_unavailable`): nothing was done, the same call may be sent again then.
   */
  readonly retryAfter?: number;
  /** The server's id of the request (its `X-Request-Id`, in every log line of it): quote it to the operator. */
  readonly requestId?: string;

  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    detail?: string,
    retryAfter?: number,
    requestId?: string,
  ) {
    super(message);
    this.status = status;
    this.code = code;
    if (detail !== undefined) this.detail = detail;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
    if (requestId !== undefined) this.requestId = requestId;
  }
}

/** No session stored: answered locally, with the code the server would have used. */
export const notSignedIn = (): SocialLinkError => new SocialLinkError(401, 'not_authenticated', 'Not signed in');

/**
 * 409 `link_required`: the account the phone just proved is unknown, but its provider verified an e-mail
 * that an existing user's account verified too. Sign in with one of `providers` (never anything else of that
 * user is told), then call `linkWithToken(linkToken)` within `linkTokenExpiresIn` seconds to link the account.
 */
export class LinkRequiredError extends SocialLinkError {
  override readonly name: string = 'LinkRequiredError';
  constructor(
    message: string,
    readonly providers: string[],
    readonly linkToken: string,
    readonly linkTokenExpiresIn: number,
  ) {
    super(409, 'link_required', message);
  }
}

/**
 * 409 `already_associated`: the social account belongs to another user. To a guest (no password, no linked
 * account: a new phone) it carries `mergeToken`: `mergeInto(mergeToken)` signs in as that user (this guest is
 * deleted; the app's backend gets `user.merged` to move its data).
 */
export class AlreadyAssociatedError extends SocialLinkError {
  override readonly name: string = 'AlreadyAssociatedError';
  constructor(
    message: string,
    readonly mergeToken?: string,
    readonly mergeTokenExpiresIn?: number,
  ) {
    super(409, 'already_associated', message);
  }
}
