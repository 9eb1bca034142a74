/**
 * Every failure of the client. `code` is the API's stable error code (`user_not_found`,
 * `last_login_method`, `invalid_refresh_token`, ...) or one of the client's own:
 * `network_error` (status 0: the server could not be reached) and `invalid_response`
 * (the server answered something that is not the API's JSON).
 */
export class SocialLinkError extends Error {
  override readonly name = 'SocialLinkError';
  readonly status: number;
  readonly code: string;
  readonly detail?: string;

  constructor(status: number, code: string, message: string, detail?: string) {
    super(message);
    this.status = status;
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}

/** No session stored: answered locally, with the code the server would have used. */
export const notSignedIn = (): SocialLinkError => new SocialLinkError(401, 'not_authenticated', 'Not signed in');
