// Generated from the server's error catalogue (src/lib/errors.ts) by `npm run build:client`: do not edit.

/** Every code the API answers (an operator's own pipeline steps may add theirs). */
export const API_ERROR_CODES = [
  'invalid_request', // 400
  'invalid_token', // 400
  'bad_request', // 400
  'not_authenticated', // 401
  'invalid_access_token', // 401
  'invalid_credentials', // 401
  'invalid_service_key', // 401
  'forbidden', // 403
  'user_disabled', // 403
  'reason_required', // 400
  'invalid_refresh_token', // 401
  'refresh_token_reused', // 401
  'user_not_found', // 404
  'unknown_provider', // 404
  'association_not_found', // 404
  'session_not_found', // 404
  'not_found', // 404
  'deletion_request_not_found', // 404
  'username_taken', // 409
  'already_associated', // 409
  'link_required', // 409
  'invalid_claims', // 400
  'invalid_merge_token', // 400
  'invalid_link_token', // 400
  'last_login_method', // 409
  'payload_too_large', // 413
  'unsupported_media_type', // 415
  'rate_limited', // 429
  'internal_error', // 500
  'provider_unavailable', // 502
  'database_unavailable', // 503
  'hook_refused', // 403
  'hook_unavailable', // 503
  'rate_limit_unavailable', // 503
] as const;

export type ApiErrorCode = (typeof API_ERROR_CODES)[number];
