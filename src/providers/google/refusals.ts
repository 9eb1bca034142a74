import { byStatus } from '../answers.js';

/**
 * What Google's error answers mean (google.ts): tokeninfo answers 400 for any token it cannot accept (unknown,
 * expired, forged). Sources: test/fixtures/providers/google/.
 */
const INVALID = { token: 'the token is invalid or expired' };
export const tokeninfoRefusal = byStatus({ 400: INVALID, 401: INVALID });
