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

/** The provider could not give a usable answer: down, too slow, or answering garbage. */
export class ProviderUnavailableError extends ApiError {
  /** 502 when the provider failed this call; 503 when its circuit breaker is open and it was not called. */
  constructor(
    readonly provider: string,
    readonly reason: string,
    status: 502 | 503 = 502,
  ) {
    super(status, 'provider_unavailable', `The ${provider} API is unavailable, try again later`, { detail: reason });
  }
}

export const unknownProvider = (name: string) =>
  new ApiError(404, 'unknown_provider', `Unknown or disabled provider: ${name}`);

export const notAuthenticated = (message = 'Authentication credentials were not provided') =>
  new ApiError(401, 'not_authenticated', message);
