import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { call, databaseKinds, guest } from '../helpers.js';
import { sharedStack } from './flows.js';

// A provider's callback (src/core/provider-callbacks.ts) acts once: a signed request played again later changes nothing,
// one too old is refused. Each provider's callbacks: facebook.test.ts, apple.test.ts, google.test.ts; played again,
// re-spelled and forged by the thousand: callbacks-abuse.test.ts.

describe.each(databaseKinds())('a callback acts once on %s', (kind) => {
  const stack = sharedStack(kind);

  const signed = (payload: Record<string, unknown>) => {
    const body = Buffer.from(JSON.stringify({ algorithm: 'HMAC-SHA256', ...payload })).toString('base64url');
    return `${createHmac('sha256', stack.apps.facebook.appSecret).update(body).digest('base64url')}.${body}`;
  };
  const post = (path: string, signedRequest: string) =>
    fetch(`${stack.api}/api/providers/facebook/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `signed_request=${signedRequest}`,
    });

  it('a data-deletion request played again after the person linked Facebook again deletes nothing; one too old is refused', async () => {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    const link = () =>
      call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
    await link();
    const request = signed({
      issued_at: Math.floor(Date.now() / 1000),
      expires: Math.floor(Date.now() / 1000) + 3600,
      user_id: facebook.user_id,
    });
    expect((await post('data-deletion', request)).status).toBe(200);
    await link(); // the person came back and linked the account again
    expect((await post('data-deletion', request)).status).toBe(200); // a captured request, played again
    expect(
      await stack.db.selectFrom('social_associations').select('id').where('uid', '=', facebook.user_id).execute(),
    ).toHaveLength(1);

    const old = signed({ issued_at: Math.floor(Date.now() / 1000) - 8 * 86_400, user_id: facebook.user_id });
    expect((await post('data-deletion', old)).status).toBe(400);
    expect((await post('deauthorize', signed({ user_id: facebook.user_id }))).status).toBe(400); // says not when
    expect(
      await stack.db.selectFrom('social_associations').select('id').where('uid', '=', facebook.user_id).execute(),
    ).toHaveLength(1);
  });
});
