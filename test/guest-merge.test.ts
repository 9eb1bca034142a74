import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// Guest merge (src/core/guest-merge.ts): a guest on a new phone proves a social account of its old user.

describe.each(databaseKinds())('guest merge on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    // Webhooks on (an endpoint nobody answers: the events are checked in the outbox, where they are written).
    stack = await startStack(kind, { SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks', SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}` });
  });
  afterAll(() => stack.close());

  /** The old user (with a Facebook account), and a guest on a new phone that taps "Connect Facebook". */
  async function conflict() {
    const old = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', { token: old.access_token, body: { access_token: facebook.access_token } });
    const newPhone = await guest(stack.api);
    const refused = await call(stack.api, 'POST', '/api/associate/facebook/', { token: newPhone.access_token, body: { access_token: facebook.access_token } });
    return { old, newPhone, facebook, refused };
  }

  it('409 already_associated gives a guest a merge token; merging signs in as the owner, deletes the guest, emits user.merged', async () => {
    const { old, newPhone, refused } = await conflict();
    expectError(refused, 409, 'already_associated');
    expect(refused.body.merge_token).toMatch(/^slm_[\w-]{43}$/);
    expect(refused.body.merge_token_expires_in).toBe(600);
    // Nothing else of the owner is told.
    expect(Object.keys(refused.body).sort()).toEqual(['code', 'errors', 'merge_token', 'merge_token_expires_in', 'message', 'request_id']);

    const merged = await call(stack.api, 'POST', '/api/users/merge/', { token: newPhone.access_token, body: { merge_token: refused.body.merge_token } });
    expect(merged.status).toBe(200);
    expect(merged.body).toMatchObject({ id: old.id, username: old.username, access_token: expect.any(String) });
    const links = await call(stack.api, 'GET', '/api/associations/', { token: merged.body.access_token });
    expect(links.body.map((link: { provider: string }) => link.provider)).toEqual(['facebook']);
    expect(await stack.db.selectFrom('users').select('id').where('id', '=', newPhone.id).execute()).toEqual([]);
    expectError(await call(stack.api, 'GET', '/api/me/', { token: newPhone.access_token }), 401, 'invalid_access_token');

    const events = await stack.db.selectFrom('outbox').select(['type', 'payload']).where('type', '=', 'user.merged').execute();
    const event = events.map((row) => JSON.parse(row.payload) as { data: { from: number; into: number } }).find((payload) => payload.data.from === newPhone.id);
    expect(event?.data).toMatchObject({ from: newPhone.id, into: old.id, provider: 'facebook' });
    const audit = await stack.db.selectFrom('audit_events').select(['user_id', 'event']).where('event', '=', 'user_merged').where('user_id', 'in', [old.id, newPhone.id]).execute();
    expect(audit).toHaveLength(2);
  });

  it('a user with a linked account gets no merge token (an access token alone must not hand its accounts over)', async () => {
    const old = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', { token: old.access_token, body: { access_token: facebook.access_token } });
    const other = await guest(stack.api);
    const twitter = await stack.emulator.mintTwitterToken({});
    await call(stack.api, 'POST', '/api/associate/twitter/', { token: other.access_token, body: { access_token: twitter.access_token, access_token_secret: twitter.access_token_secret } });
    const refused = await call(stack.api, 'POST', '/api/associate/facebook/', { token: other.access_token, body: { access_token: facebook.access_token } });
    expectError(refused, 409, 'already_associated');
    expect(refused.body.merge_token).toBeUndefined();
  });

  it('the merge token is single use and only for its guest; a user with a password gets none', async () => {
    const { refused, newPhone } = await conflict();
    const stranger = await guest(stack.api);
    expectError(await call(stack.api, 'POST', '/api/users/merge/', { token: stranger.access_token, body: { merge_token: refused.body.merge_token } }), 400, 'invalid_merge_token');
    expect((await call(stack.api, 'POST', '/api/users/merge/', { token: newPhone.access_token, body: { merge_token: refused.body.merge_token } })).status).toBe(200);
    expectError(await call(stack.api, 'POST', '/api/users/merge/', { token: stranger.access_token, body: { merge_token: refused.body.merge_token } }), 400, 'invalid_merge_token');
    expectError(await call(stack.api, 'POST', '/api/users/merge/', { body: { merge_token: 'slm_x' } }), 401, 'not_authenticated');

    const owner = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', { token: owner.access_token, body: { access_token: facebook.access_token } });
    const withPassword = await call(stack.api, 'POST', '/api/users/', { body: { username: `pw_${Date.now()}`, password: 'a long password 1' } });
    const refusedAgain = await call(stack.api, 'POST', '/api/associate/facebook/', { token: withPassword.body.access_token, body: { access_token: facebook.access_token } });
    expectError(refusedAgain, 409, 'already_associated');
    expect(refusedAgain.body.merge_token).toBeUndefined();
  });

  it('an account unlinked from its owner since: the merge is refused, nobody is deleted', async () => {
    const { old, newPhone, refused } = await conflict();
    const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: (await stack.emulator.mintFacebookToken({})).access_token } });
    expect(signedIn.status).toBe(404); // (another account: unknown)
    const links = await call(stack.api, 'GET', '/api/associations/', { token: old.access_token });
    const facebookUid = links.body[0].uid as string;
    // The owner sets a way in, then unlinks the account.
    await stack.db.updateTable('users').set({ password_hash: 'scrypt$x' }).where('id', '=', old.id).execute();
    expect((await call(stack.api, 'DELETE', `/api/associations/facebook/${facebookUid}/`, { token: old.access_token })).status).toBe(204);
    expectError(await call(stack.api, 'POST', '/api/users/merge/', { token: newPhone.access_token, body: { merge_token: refused.body.merge_token } }), 400, 'invalid_merge_token');
    expect((await call(stack.api, 'GET', '/api/me/', { token: newPhone.access_token })).status).toBe(200);
  });
});
