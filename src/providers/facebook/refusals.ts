import { isObject } from '../../lib/narrowing.js';
import { byCode, type Refusal } from '../answers.js';

/**
 * What Graph's error answers mean, endpoint by endpoint (debug-token.ts, me.ts).
 * Sources: test/fixtures/providers/facebook/.
 */

/** Graph's codes for throttling: application, user, page, custom and business use case limits. */
const RATE_LIMIT_CODES = new Set([4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014]);

/** Graph's error answer, {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}: its code read per endpoint. */
const graphError = (endpoint: string, known: Record<number, Refusal>) =>
  byCode({
    code: (body) => isObject(body.error) && body.error.code,
    known,
    otherwise: (code) =>
      RATE_LIMIT_CODES.has(code)
        ? { throttled: `Graph error ${code}` }
        : { outage: `answered ${endpoint} with Graph error ${code}` },
  });

/** debug_token: #100 is a token of another app, 190 our app token refused; 1 and 2 (internal, also sent with 400) are Graph's. */
export const debugTokenRefusal = graphError('debug_token', {
  100: { token: 'the token was issued to another app' },
  190: {
    app: 'Graph error 190 on debug_token',
    hint: 'check {KEY} and {SECRET} (the app id and app secret)',
  },
});

/** /me (after debug_token proved the token ours): 190 the token died meanwhile, #100 a proof our secret made wrong. */
const expired = { token: 'the token is invalid or expired' };
export const meRefusal = graphError('/me', {
  190: expired,
  102: expired,
  2500: expired,
  100: {
    app: 'Graph refused our appsecret_proof on /me',
    hint: 'check {SECRET}: it must be the secret of the app {KEY} names',
  },
});
