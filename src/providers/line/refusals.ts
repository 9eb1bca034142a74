import { byStatus } from '../answers.js';

/**
 * What LINE's error answers mean (line.ts), the same for every call: 400 and 401, the token is not good for us
 * (`detail` says how); 403, our channel's plan or permissions do not allow the call (429 is a rate limit already).
 * Sources: test/fixtures/providers/line/.
 */
export const refusal = (detail: string) =>
  byStatus({
    400: { token: detail },
    401: { token: detail },
    403: {
      app: 'HTTP 403',
      hint: "check the LINE Login channel's plan and permissions in the LINE Developers Console, and {KEY}",
    },
  });
