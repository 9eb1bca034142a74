import { isObject, text } from '../../lib/narrowing.js';
import { byCode, type RefusalReader } from '../answers.js';

/** What X's error answers mean (twitter.ts). Sources: test/fixtures/providers/twitter/. */

/**
 * A v1.1 error answer, {"errors": [{"code", "message"}]}. 32 (signature) and 89 (invalid, expired or another
 * app's token) refuse the user's token — X answers them for a wrong consumer secret too, so a misconfigured
 * server shows as refused tokens. 215 (bad authentication data), 135 (our clock) and 453 (our app's access
 * level) are the operator's to fix; 88 a rate limit (429 is one already).
 */
export const v1Refusal = byCode({
  code: ({ errors }) => Array.isArray(errors) && isObject(errors[0]) && errors[0].code,
  known: {
    135: {
      app: 'error 135, timestamp out of bounds',
      hint: "set this server's clock right (NTP): X refuses OAuth 1.0a timestamps off by more than a few minutes",
    },
    215: {
      app: 'error 215, bad authentication data',
      hint: 'check {KEY} and {SECRET} (the API key and secret of the app)',
    },
    453: {
      app: 'error 453, access level',
      hint: "the app's X API access level does not include GET account/verify_credentials: change it in the X developer portal",
    },
    88: { throttled: 'error 88' },
  },
  otherwise: () => ({ token: 'the token is invalid, expired, or was issued to another app' }),
});

/**
 * A v2 answer: 401 the token refused; 403 a problem ({"type", "title", "reason"}): an app-only token is the
 * app's wrong token, anything else (client-not-enrolled, a bare Forbidden) says our app may not call it.
 */
export const v2Refusal: RefusalReader = ({ status, body }) => {
  if (status === 401) return { token: 'the token is invalid or expired' };
  if (status !== 403) return undefined;
  const problem = isObject(body) ? body : {};
  if ((text(problem, 'type') ?? '').endsWith('/unsupported-authentication'))
    return { token: 'the token is not an OAuth 2 user token' };
  return {
    app: `HTTP 403, ${text(problem, 'reason') ?? text(problem, 'title') ?? 'Forbidden'}`,
    hint: 'the app must be in a Project with an X API access level that includes GET /2/users/me (X developer portal)',
  };
};
