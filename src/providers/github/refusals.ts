import { isObject, text } from '../../lib/narrowing.js';
import { byStatus, type Refusal } from '../answers.js';
import type { JsonResponse } from '../http.js';

/** What GitHub's error answers mean, call by call (github.ts). Sources: test/fixtures/providers/github/. */

/**
 * GitHub throttles with 429, or 403 with x-ratelimit-remaining 0 (primary limit), a message about a
 * secondary rate limit, or "Maximum number of login attempts exceeded" (which refuses valid tokens too).
 */
export function throttled({ status, headers, body }: JsonResponse): Refusal | undefined {
  const message = isObject(body) ? (text(body, 'message') ?? '') : '';
  const limited =
    status === 429 ||
    (status === 403 && (headers['x-ratelimit-remaining'] === '0' || /rate limit|login attempts/i.test(message)));
  return limited ? { throttled: `HTTP ${status}` } : undefined;
}

/** The token check: 404, not our app's token (or no token); 401, our client id and secret refused; 422, our request. */
const appRefused = (status: number) => ({
  app: `HTTP ${status} on the token check`,
  hint: 'check {KEY} and {SECRET} (the OAuth app client id and secret)',
});
export const checkTokenRefusal = byStatus(
  { 404: { token: 'the token is invalid or was issued to another app' }, 401: appRefused(401), 403: appRefused(403) },
  throttled,
);

/** /user: 401 and 403, when not a throttle, refuse the token. */
const revoked = { token: 'the token is invalid or revoked' };
export const userRefusal = byStatus({ 401: revoked, 403: revoked }, throttled);
