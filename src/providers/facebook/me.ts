import { createHmac } from 'node:crypto';
import { text } from '../../lib/narrowing.js';
import type { Account, ProviderTools } from '../define.js';
import { meRefusal } from './refusals.js';

/**
 * The profile the user shared with our app, read only when needed (profile.ts): GET /me, signed with
 * appsecret_proof, the HMAC-SHA256 of the token keyed with our app secret. Sources: test/fixtures/providers/facebook/.
 */
export function readMe(
  token: string,
  { graphUrl, appSecret }: { graphUrl: string; appSecret: string },
  call: ProviderTools['call'],
): Promise<Record<string, unknown>> {
  const query = new URLSearchParams({
    fields: 'id,name,email,first_name,last_name',
    access_token: token,
    appsecret_proof: createHmac('sha256', appSecret).update(token).digest('hex'),
  });
  return call('/me', `${graphUrl}/me?${query}`, meRefusal);
}

/** /me's answer as the account social-link keeps. */
export const meAccount = (me: Record<string, unknown>): Account => ({
  uid: text(me, 'id') ?? '',
  name: text(me, 'name'),
  email: text(me, 'email'),
  first_name: text(me, 'first_name'),
  last_name: text(me, 'last_name'),
  extraData: { name: text(me, 'name') ?? null, email: text(me, 'email') ?? null },
});
