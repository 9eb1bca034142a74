/**
 * Every error the API answers is an ApiError: a stable machine-readable `code`, a human `message`
 * (also sent as `errors`, the field the original design's clients read) and the HTTP status.
 */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Extra, non-secret fields for the response body (for example `detail`). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, errors: this.message, ...this.extra };
  }
}

export const invalidRequest = (message: string) => new ApiError(400, 'invalid_request', message);

/** The provider says the token is not good for us: invalid, expired, or issued to another app. */
export class InvalidTokenError extends ApiError {
  constructor(readonly reason: string) {
    super(400, 'invalid_token', 'Error with social authentication', { detail: reason });
  }
}

/**
 * Why a provider gave no usable answer. None of them is the user's fault, so none is a 4xx:
 * - `outage`: down, too slow, or answering garbage (502; 503 while its circuit is open);
 * - `rate_limited`: it throttles OUR app (503, with Retry-After when the provider said when);
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
    super(options.status ?? (failure === 'rate_limited' ? 503 : 502), 'provider_unavailable', `The ${provider} API is unavailable, try again later`, {
      detail: reason,
      ...(options.retryAfter !== undefined ? { retry_after: options.retryAfter } : {}),
    });
    this.failure = failure;
    this.hint = options.hint;
  }
}

/** The provider throttles our app. */
export const providerRateLimited = (provider: string, reason: string, retryAfter?: number) =>
  new ProviderUnavailableError(provider, `${provider} is rate-limiting this server's app (${reason})`, {
    failure: 'rate_limited',
    retryAfter,
    hint: `${provider} throttles this app: spread the load, or ask ${provider} for a higher limit`,
  });

/** The provider refuses our app's credentials or access: a setting to fix, named by `hint`. */
export const providerRefusedApp = (provider: string, reason: string, hint: string) =>
  new ProviderUnavailableError(provider, `${provider} refused this server's app (${reason})`, { failure: 'app_refused', hint });

export const unknownProvider = (name: string) =>
  new ApiError(404, 'unknown_provider', `Unknown or disabled provider: ${name}`);

export const notAuthenticated = (message = 'Authentication credentials were not provided') =>
  new ApiError(401, 'not_authenticated', message);
