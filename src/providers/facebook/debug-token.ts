import { InvalidTokenError } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import type { Account, ProviderTools } from '../define.js';
import { debugTokenRefusal } from './refusals.js';

/**
 * GET /debug_token, asked with our app token (`<app id>|<app secret>`): the data Graph keeps about a user access
 * token, once it says the token is valid, was issued to OUR app, and is a user's. Graph inspects only tokens of the
 * app that asks: another app's token answers 400 (#100). Sources: test/fixtures/providers/facebook/.
 */
export async function debugToken(
  token: string,
  { graphUrl, appId, appSecret }: { graphUrl: string; appId: string; appSecret: string },
  { call, unavailable }: Pick<ProviderTools, 'call' | 'unavailable'>,
): Promise<Record<string, unknown>> {
  const query = new URLSearchParams({ input_token: token, access_token: `${appId}|${appSecret}` });
  const { data } = await call('debug_token', `${graphUrl}/debug_token?${query}`, debugTokenRefusal);
  if (!isObject(data)) throw unavailable('answered debug_token without data');
  if (data.is_valid !== true) throw new InvalidTokenError('the token is invalid or expired');
  if (text(data, 'app_id') !== appId) throw new InvalidTokenError('the token was issued to another app');
  if (!text(data, 'user_id')) throw new InvalidTokenError('the token is not a user access token');
  return data;
}

/** debug_token's data as the account social-link keeps: the profile is /me's (me.ts). */
export const debuggedAccount = (data: Record<string, unknown>): Account => ({
  uid: text(data, 'user_id')!,
  extraData: {
    id: text(data, 'user_id'),
    expires_at: typeof data.expires_at === 'number' && data.expires_at > 0 ? data.expires_at : null,
    scopes: Array.isArray(data.scopes) ? data.scopes : [],
  },
});
