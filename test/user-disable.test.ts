import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// Disabling a user (core/admin.ts setDisabled, through the admin API): its sessions end at once, and no way in
// opens a new one — password, social sign-in, refresh, a guest's merge into it — until it is enabled again.

describe.each(databaseKinds())('a disabled user on %s', (kind) => {
  let stack: Stack;
  let read: string;
  let write: string;
  beforeAll(async () => {
    // Webhooks on (an endpoint nobody answers: the events are checked in the outbox, where they are written).
    stack = await startStack(kind, {
      SOCIAL_LINK_ADMIN: 'true',
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 5).toString('base64')}`,
    });
    const keys = new Storage(stack.db).serviceKeys;
    read = (await keys.create('support-bot', ['read'])).key;
    write = (await keys.create('backend', ['read', 'write'])).key;
  });
  afterAll(() => stack.close());

  /** A password user with a Facebook account linked; its tokens and the Facebook token (good for more sign-ins). */
  async function linkedUser() {
    const username = `dis_${kind}_${Date.now()}${Math.floor(Math.random() * 1000)}`;
    const user = (await call(stack.api, 'POST', '/api/users/', { body: { username, password: 'a long password 1' } }))
      .body;
    const facebook = await stack.emulator.mintFacebookToken({
      user: { name: 'Grace Hopper', email: `${username}@example.com` },
    });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        })
      ).status,
    ).toBe(200);
    return { user, username, facebook };
  }
  const disable = (id: number, body: Record<string, unknown> = { reason: 'fraud report #12' }, token = write) =>
    call(stack.api, 'POST', `/admin/api/users/${id}/disable`, { token, body });
  const enable = (id: number, body: Record<string, unknown> = { reason: 'cleared after review' }, token = write) =>
    call(stack.api, 'POST', `/admin/api/users/${id}/enable`, { token, body });
  const passwordSignIn = (username: string, password = 'a long password 1') =>
    call(stack.api, 'POST', '/api/token/', { body: { username, password } });
  const facebookSignIn = (accessToken: string) =>
    call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: accessToken } });
  const webhooks = async (userId: number, type: string) =>
    (
      await stack.db
        .selectFrom('outbox')
        .select('payload')
        .where('user_id', '=', userId)
        .where('type', '=', type)
        .execute()
    ).map((row) => JSON.parse(row.payload).data);

  it('disabling ends every session at once and refuses every way in with 403 user_disabled; nothing of a refused sign-in is kept', async () => {
    const { user, username, facebook } = await linkedUser();
    const second = (await passwordSignIn(username)).body;

    const disabled = await disable(user.id);
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    expect(disabled.body.user).toMatchObject({
      id: user.id,
      disabled_at: expect.any(String),
      disabled_reason: 'fraud report #12',
    });

    // Sessions: ended, both of them (access tokens at their next use, refresh tokens answer why).
    expectError(await call(stack.api, 'GET', '/api/me/', { token: user.access_token }), 401, 'invalid_access_token');
    expectError(await call(stack.api, 'GET', '/api/me/', { token: second.access_token }), 401, 'invalid_access_token');
    expectError(
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: second.refresh_token } }),
      403,
      'user_disabled',
    );

    // New sessions: none, by any way in. A wrong password learns nothing about the account being disabled.
    const sessionsBefore = await stack.db.selectFrom('sessions').select('id').where('user_id', '=', user.id).execute();
    expectError(await passwordSignIn(username), 403, 'user_disabled');
    expectError(await passwordSignIn(username, 'not the password'), 401, 'invalid_credentials');
    expectError(await facebookSignIn(facebook.access_token), 403, 'user_disabled');
    expect(await stack.db.selectFrom('sessions').select('id').where('user_id', '=', user.id).execute()).toEqual(
      sessionsBefore,
    );
    const active = await stack.db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', user.id)
      .where('revoked_at', 'is', null)
      .execute();
    expect(active).toEqual([]);

    // The operator sees the attempts in the user's log; the app's backend heard of the change once.
    const audit = await call(stack.api, 'GET', `/admin/api/users/${user.id}/audit`, { token: read });
    const refusals = audit.body.filter(
      (event: { event: string; detail: string }) => event.event === 'refused' && event.detail === 'user_disabled',
    );
    // The refresh, the password and the Facebook sign-in: each attempt is in the log.
    expect(refusals.map((event: { provider: string | null }) => event.provider).sort()).toEqual([
      'facebook',
      null,
      null,
    ]);
    expect(audit.body.find((event: { event: string }) => event.event === 'user_disabled')).toMatchObject({
      actor: 'key:backend',
      reason: 'fraud report #12',
      detail: '2 sessions ended',
    });
    // Who, not why: the reason stays with the operators.
    expect(await webhooks(user.id, 'user.disabled')).toEqual([{ user_id: user.id, actor: 'key:backend' }]);
  });

  it('enabling lets the user sign in again (the sessions that ended stay ended); doing either twice changes nothing and tells no one', async () => {
    const { user, username, facebook } = await linkedUser();
    expect((await disable(user.id)).status).toBe(200);
    const again = await disable(user.id, { reason: 'clicked twice' });
    expect(again.status).toBe(200);
    expect(again.body.user.disabled_reason).toBe('fraud report #12');
    expect(await webhooks(user.id, 'user.disabled')).toHaveLength(1);

    const enabled = await enable(user.id);
    expect(enabled.body.user).toMatchObject({ id: user.id, disabled_at: null, disabled_reason: null });
    expect((await enable(user.id, { reason: 'twice' })).status).toBe(200);
    expect(await webhooks(user.id, 'user.enabled')).toEqual([{ user_id: user.id, actor: 'key:backend' }]);

    expect((await passwordSignIn(username)).status).toBe(200);
    expect((await facebookSignIn(facebook.access_token)).status).toBe(200);
    // The refresh token of before stays ended: its phone signs in again.
    expectError(
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
      401,
      'invalid_refresh_token',
    );
    const events = (await call(stack.api, 'GET', `/admin/api/users/${user.id}/audit`, { token: read })).body.map(
      (event: { event: string }) => event.event,
    );
    expect(events.filter((event: string) => event === 'user_disabled' || event === 'user_enabled')).toEqual([
      'user_enabled',
      'user_disabled',
    ]);
  });

  it("the user's detail and search results say it is disabled; a search shows its name and e-mail from the providers", async () => {
    const { user, username } = await linkedUser();
    await disable(user.id);
    const detail = await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read });
    expect(detail.body.user).toMatchObject({ disabled_at: expect.any(String), disabled_reason: 'fraud report #12' });
    const found = await call(stack.api, 'GET', `/admin/api/users?q=${username}`, { token: read });
    expect(found.body.users).toEqual([
      expect.objectContaining({
        id: user.id,
        name: 'Grace Hopper',
        email: `${username}@example.com`,
        disabled_at: expect.any(String),
      }),
    ]);
    const plain = await guest(stack.api);
    const browse = await call(stack.api, 'GET', `/admin/api/users?q=${plain.id}`, { token: read });
    expect(browse.body.users).toEqual([
      expect.objectContaining({ id: plain.id, name: null, email: null, disabled_at: null }),
    ]);
    // Facts that are not text are no name or e-mail, on either database; Apple's first and last name make one.
    const at = new Date().toISOString();
    const odd = {
      user_id: plain.id,
      provider: 'apple',
      uid: `odd-${plain.id}`,
      extra_data: JSON.stringify({ name: true, email: { a: 1 }, first_name: 'Ada', last_name: 'Byron' }),
      created_at: at,
      updated_at: at,
    };
    await stack.db.insertInto('social_associations').values(odd).execute();
    const odder = await call(stack.api, 'GET', `/admin/api/users?q=${plain.id}`, { token: read });
    expect(odder.body.users).toEqual([expect.objectContaining({ id: plain.id, name: 'Ada Byron', email: null })]);
  });

  it('a guest on a new phone is not offered a merge into a disabled owner, and a merge token issued before refuses to sign in as it', async () => {
    const { user, facebook } = await linkedUser();
    // A merge token issued while the owner could sign in…
    const newPhone = await guest(stack.api);
    const refused = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: newPhone.access_token,
      body: { access_token: facebook.access_token },
    });
    expectError(refused, 409, 'already_associated');
    expect(refused.body.merge_token).toEqual(expect.any(String));
    await disable(user.id);
    // …signs in as no one once it is disabled; the guest stays as it was.
    expectError(
      await call(stack.api, 'POST', '/api/users/merge/', {
        token: newPhone.access_token,
        body: { merge_token: refused.body.merge_token },
      }),
      403,
      'user_disabled',
    );
    expect((await call(stack.api, 'GET', '/api/me/', { token: newPhone.access_token })).status).toBe(200);
    // And no new offer.
    const later = await guest(stack.api);
    const offered = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: later.access_token,
      body: { access_token: facebook.access_token },
    });
    expectError(offered, 409, 'already_associated');
    expect(offered.body.merge_token).toBeUndefined();
  });

  it('needs a write key and a reason (the refusals audited); an unknown user is 404', async () => {
    const { user, username } = await linkedUser();
    expectError(await disable(user.id, { reason: 'x' }, read), 403, 'forbidden');
    expectError(await disable(user.id, {}), 400, 'reason_required');
    expectError(await disable(user.id, { reason: ' \u200b ' }), 400, 'reason_required');
    expectError(await disable(2_147_483_000), 404, 'user_not_found');
    expectError(await enable(99_999_999_999), 404, 'user_not_found');
    expect((await passwordSignIn(username)).status).toBe(200);
    const refusals = await stack.db
      .selectFrom('audit_events')
      .select('detail')
      .where('user_id', '=', user.id)
      .where('event', '=', 'refused')
      .execute();
    expect(refusals.map((row) => row.detail).sort()).toEqual(['forbidden', 'reason_required', 'reason_required']);
  });
});
