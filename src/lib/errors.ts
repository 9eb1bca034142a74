/**
 * Every error social-link answers, in one catalogue: a stable machine-readable code, its HTTP status and
 * its human message. Nothing else makes an ApiError; the client SDK's list of codes is generated from
 * this one (client/src/error-codes.ts, `npm run build:client`).
 *
 * A message with `%s` names what is wrong (a field, a provider, a route): callers fill it with `about`.
 * `detail` says why, when known, and never holds a secret.
 */
export const ERRORS = {
  invalid_request: { status: 400, message: '%s' },
  invalid_token: { status: 400, message: 'Error with social authentication' },
  bad_request: { status: 400, message: '%s' },
  not_authenticated: { status: 401, message: 'Authentication credentials were not provided' },
  invalid_access_token: { status: 401, message: 'The access token is invalid or expired' },
  invalid_credentials: { status: 401, message: 'Unable to log in with provided credentials' },
  invalid_service_key: { status: 401, message: 'The service key is missing, invalid or revoked' },
  forbidden: { status: 403, message: 'Not allowed: %s' },
  user_disabled: { status: 403, message: 'This account has been disabled' },
  reason_required: {
    status: 400,
    message: 'Say why (reason): every change made for a user is kept with its reason in the audit log',
  },
  invalid_refresh_token: { status: 401, message: 'The refresh token is invalid, expired or revoked' },
  refresh_token_reused: { status: 401, message: 'The refresh token was already used; the session is revoked' },
  user_not_found: { status: 404, message: 'User Not Found' },
  unknown_provider: { status: 404, message: 'Unknown or disabled provider: %s' },
  association_not_found: { status: 404, message: 'No such association for this user' },
  session_not_found: { status: 404, message: 'This user has no such active session' },
  not_found: { status: 404, message: 'No route %s' },
  deletion_request_not_found: { status: 404, message: 'No data deletion request has this confirmation code' },
  username_taken: { status: 409, message: 'A user with that username already exists' },
  already_associated: { status: 409, message: 'This social account is already associated with another user' },
  link_required: {
    status: 409,
    message:
      'An account with this verified e-mail exists: sign in with one of its providers, then link this one with the link token',
  },
  invalid_claims: { status: 400, message: 'Custom claims refused: %s' },
  invalid_merge_token: { status: 400, message: 'The merge token is invalid, expired, used, or for another user' },
  invalid_link_token: { status: 400, message: 'The link token is invalid, expired, used, or for another user' },
  last_login_method: {
    status: 409,
    message: 'This is the last way to sign in to this user; set a password or link another account first',
  },
  payload_too_large: { status: 413, message: '%s' },
  unsupported_media_type: { status: 415, message: '%s' },
  rate_limited: { status: 429, message: 'Too many requests; retry in %s seconds' },
  internal_error: { status: 500, message: 'Internal server error' },
  provider_unavailable: { status: 502, message: 'The %s API is unavailable, try again later' },
  database_unavailable: { status: 503, message: 'The database is unavailable; retry in %s seconds' },
  hook_refused: { status: 403, message: '%s' },
  hook_unavailable: {
    status: 503,
    message: "The app's sign-in rules could not be checked; try again in a few seconds",
  },
  rate_limit_unavailable: {
    status: 503,
    message: 'Refused while the rate limits cannot be checked (%s); retry in a few seconds',
  },
} as const satisfies Record<string, { status: number; message: string }>;

/** The closed list of codes the API answers. */
export type ErrorCode = keyof typeof ERRORS;

/** Codes an operator's own pipeline steps answer with refuse() (configuration file `errors`), documented like ours. */
export type OperatorErrors = Record<string, { status: number; message: string }>;

export interface ErrorOptions {
  /** Fills the message's %s. */
  about?: string;
  /** Why, for the one who reads the answer (never a secret). */
  detail?: string;
  /** Another status than the catalogue's, for the codes that have several (provider_unavailable 503, a framework's 4xx). */
  status?: number;
  /** More non-secret fields of the answer (for example retry_after). */
  extra?: Record<string, unknown>;
}

/**
 * An error the API answers: `{code, message, errors, detail?, ...}`, `errors` being the message under the
 * original design's name. Made by apiError() from the catalogue, or by refuse() for an operator's own step.
 */
export class ApiError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly extra: Record<string, unknown>;

  protected constructor(code: string, status: number, message: string, options: ErrorOptions = {}) {
    // The earlier public form, new ApiError(status, code, message, extra), may still come from an operator's
    // JavaScript pipeline step: read it as refuse() would (deprecated: use refuse()).
    if (typeof (code as unknown) === 'number')
      [code, status, options] = [
        String(status),
        code as unknown as number,
        { extra: options as Record<string, unknown> },
      ];
    super(message.replace('%s', () => options.about ?? ''));
    this.name = 'ApiError';
    this.code = code;
    this.statusCode = options.status ?? status;
    this.extra = { ...(options.detail !== undefined ? { detail: options.detail } : {}), ...options.extra };
  }

  /** One of social-link's errors, as the catalogue states it. */
  static of(code: ErrorCode, options?: ErrorOptions): ApiError {
    const entry: { status: number; message: string } = ERRORS[code];
    return new ApiError(code, entry.status, entry.message, options);
  }

  /** A refusal of the operator's own pipeline step, with its own code (see refuse()). */
  static refusal(status: number, code: string, message: string, detail?: string): ApiError {
    return new ApiError(code, status, message, { detail });
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, errors: this.message, ...this.extra };
  }
}

export const apiError = (code: ErrorCode, options?: ErrorOptions) => ApiError.of(code, options);

/**
 * For the operator's own pipeline steps: refuse a sign-in or a link with a 4xx, a code of their own (not one
 * of the catalogue's, so that an app never mistakes it for one of ours) and a message.
 */
export function refuse(
  status: 400 | 401 | 403 | 404 | 409 | 422,
  code: string,
  message: string,
  detail?: string,
): ApiError {
  if (code in ERRORS) throw new Error(`refuse(): "${code}" is one of social-link's own codes; choose another`);
  if (!/^[a-z][a-z0-9_]{0,63}$/.test(code)) throw new Error(`refuse(): a code is snake_case, got "${code}"`);
  return ApiError.refusal(status, code, message, detail);
}

export const invalidRequest = (message: string) => apiError('invalid_request', { about: message });

export const unknownProvider = (name: string) => apiError('unknown_provider', { about: name });

export const databaseUnavailable = (retryAfterSeconds: number) =>
  apiError('database_unavailable', { about: String(retryAfterSeconds), extra: { retry_after: retryAfterSeconds } });

export const rateLimited = (retryAfterSeconds: number) =>
  apiError('rate_limited', { about: String(retryAfterSeconds), extra: { retry_after: retryAfterSeconds } });

/** The provider says the token is not good for us: invalid, expired, or issued to another app. */
export class InvalidTokenError extends ApiError {
  constructor(readonly reason: string) {
    super('invalid_token', ERRORS.invalid_token.status, ERRORS.invalid_token.message, { detail: reason });
  }
}

/**
 * Why a provider gave no usable answer. None of them is the user's fault, so none is a 4xx:
 * - `outage`: down, too slow, or answering garbage (502; 503 while its circuit is open);
 * - `rate_limited`: it throttles our app or this user (503, with Retry-After when the provider said when);
 * - `app_refused`: it refuses OUR app's credentials, plan or access level — the operator must fix a setting (502).
 */
export type ProviderFailure = 'outage' | 'rate_limited' | 'app_refused';

export interface ProviderFailureOptions {
  status?: 502 | 503;
  failure?: ProviderFailure;
  /** What the operator should do; written to the log, never sent to the app. */
  hint?: string;
  /** Seconds, when the provider said when to try again. */
  retryAfter?: number;
}

/** The provider could not give a usable answer for a reason that is not the user's token (see ProviderFailure). */
export class ProviderUnavailableError extends ApiError {
  readonly failure: ProviderFailure;
  readonly hint: string | undefined;

  constructor(
    readonly provider: string,
    readonly reason: string,
    options: ProviderFailureOptions = {},
  ) {
    const failure = options.failure ?? 'outage';
    super('provider_unavailable', ERRORS.provider_unavailable.status, ERRORS.provider_unavailable.message, {
      about: provider,
      detail: reason,
      status: options.status ?? (failure === 'rate_limited' ? 503 : 502),
      extra: options.retryAfter !== undefined ? { retry_after: options.retryAfter } : {},
    });
    this.failure = failure;
    this.hint = options.hint;
  }
}

/**
 * 409 already_associated: the account is linked to another user. That user (`owner`) is told in its own audit
 * log (http/hooks.ts); the answer never names it.
 */
export class AlreadyAssociatedError extends ApiError {
  constructor(
    readonly owner: { userId: number; provider: string; uid: string },
    /** A guest's way out (core/guest-merge.ts): merge_token and merge_token_expires_in. */
    extra: Record<string, unknown> = {},
  ) {
    super('already_associated', ERRORS.already_associated.status, ERRORS.already_associated.message, { extra });
  }
}

/** An operator disabled this user (core/admin.ts): it opens no session. Its id stays ours (never in the answer). */
export class UserDisabledError extends ApiError {
  constructor(readonly userId: number) {
    super('user_disabled', ERRORS.user_disabled.status, ERRORS.user_disabled.message);
  }
}

/** The user of the access token is gone (deleted, maybe by a request racing this one) or its session revoked. */
export const sessionEnded = () =>
  apiError('invalid_access_token', { detail: 'the session of this access token has ended' });

/** The provider throttles our app (or this user). */
export const providerRateLimited = (provider: string, reason: string, retryAfter?: number) =>
  new ProviderUnavailableError(provider, `${provider} is rate-limiting this server's app (${reason})`, {
    failure: 'rate_limited',
    retryAfter,
    hint: `${provider} throttles this app: spread the load, or ask ${provider} for a higher limit`,
  });

/** The provider refuses our app's credentials or access: a setting to fix, named by `hint`. */
export const providerRefusedApp = (provider: string, reason: string, hint: string) =>
  new ProviderUnavailableError(provider, `${provider} refused this server's app (${reason})`, {
    failure: 'app_refused',
    hint,
  });
