import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

describe.each(databaseKinds())('audit log and account deletion on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  const audit = async (token: string) =>
    (await call(stack.api, 'GET', '/api/audit/', { token })).body as Array<Record<string, unknown>>;

  it('records links, sign-ins, refusals, unlinks and replayed refresh tokens, visible to the user only', async () => {
    const user = await guest(stack.api);
    // A user with a password (a guest would be offered a merge instead: see test/guest-merge.test.ts).
    const intruder = (
      await call(stack.api, 'POST', '/api/users/', {
        body: { username: `intruder_${kind}_${Date.now()}`, password: 'a long enough password' },
      })
    ).body;
    const fb = await stack.emulator.mintFacebookToken();
    const tw = await stack.emulator.mintTwitterToken();
    const ua = { 'user-agent': 'AuditTest/1.0' };
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
      headers: ua,
    });
    await call(stack.api, 'POST', '/api/associate/twitter/', {
      token: user.access_token,
      body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
    });
    await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: intruder.access_token,
      body: { access_token: fb.access_token },
    });
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: 'forged' },
    });
    await call(stack.api, 'DELETE', `/api/associations/twitter/${tw.user_id}/`, { token: user.access_token });
    const refreshed = await call(stack.api, 'POST', '/api/token/refresh/', {
      body: { refresh_token: user.refresh_token },
    });
    await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }); // replay: session revoked

    const fresh = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    const events = await audit(fresh.body.access_token);
    const names = events.map((event) => event.event);
    expect(names.slice().reverse()).toEqual([
      'user_created',
      'associated',
      'associated',
      'social_sign_in',
      'link_refused_other_user',
      'refused',
      'unlinked',
      'refresh_token_reused',
      'social_sign_in',
    ]);
    expect(events.find((e) => e.event === 'associated' && e.provider === 'facebook')).toMatchObject({
      uid: fb.user_id,
      ip: '127.0.0.1',
      user_agent: 'AuditTest/1.0',
    });
    expect(events.find((e) => e.event === 'refused')).toMatchObject({
      provider: 'facebook',
      detail: expect.stringContaining('invalid_token'),
    });
    expect(refreshed.status).toBe(200);

    // The intruder's refused attempt is in the intruder's log; the victim sees that someone tried, from where.
    const intruderEvents = await audit(intruder.access_token);
    expect(intruderEvents.map((e) => e.event)).toContain('refused');
    expect(intruderEvents.find((e) => e.event === 'refused')?.detail).toContain('already_associated');
    expect(events.find((e) => e.event === 'link_refused_other_user')).toMatchObject({
      provider: 'facebook',
      uid: fb.user_id,
      ip: '127.0.0.1',
      detail: 'another user tried to link this account',
    });
    expect(JSON.stringify(events)).not.toContain(fb.access_token);
  });

  it('pages backwards with ?before and validates the query', async () => {
    const user = await guest(stack.api);
    await call(stack.api, 'POST', '/api/logout/', { token: user.access_token });
    const again = await call(stack.api, 'POST', '/api/users/', {
      body: { username: `pager_${kind}`, password: 'long enough password' },
    });
    for (let i = 0; i < 3; i++)
      await call(stack.api, 'POST', '/api/token/', {
        body: { username: `pager_${kind}`, password: 'long enough password' },
      });
    const first = (await call(stack.api, 'GET', '/api/audit/?limit=2', { token: again.body.access_token })).body;
    expect(first).toHaveLength(2);
    const next = (
      await call(stack.api, 'GET', `/api/audit/?limit=2&before=${first[1].id}`, { token: again.body.access_token })
    ).body;
    expect(next[0].id).toBeLessThan(first[1].id);
    expectError(
      await call(stack.api, 'GET', '/api/audit/?limit=9999', { token: again.body.access_token }),
      400,
      'invalid_request',
    );
    expectError(await call(stack.api, 'GET', '/api/audit/'), 401, 'not_authenticated');
  });

  it('pages from any id below 2^53: past int4 (2147483648) answers, past 15 digits is refused (never a 500)', async () => {
    const user = await guest(stack.api);
    const events = await call(stack.api, 'GET', '/api/audit/?before=2147483648', { token: user.access_token });
    expect(events.status).toBe(200);
    expect(events.body[0]).toMatchObject({ event: 'user_created', id: expect.any(Number) });
    expect(
      (await call(stack.api, 'GET', '/api/audit/?before=999999999999999', { token: user.access_token })).status,
    ).toBe(200);
    expectError(
      await call(stack.api, 'GET', '/api/audit/?before=9999999999999999', { token: user.access_token }),
      400,
      'invalid_request',
    );
  });

  it('records failed password sign-ins for the targeted user', async () => {
    const created = await call(stack.api, 'POST', '/api/users/', {
      body: { username: `target_${kind}`, password: 'the right password' },
    });
    await call(stack.api, 'POST', '/api/token/', {
      body: { username: `target_${kind}`, password: 'a wrong password' },
    });
    const events = await audit(created.body.access_token);
    expect(events[0]).toMatchObject({ event: 'refused', detail: 'invalid_credentials' });
  });

  it('DELETE /api/me/ removes the user, its links and sessions at once', async () => {
    const user = await guest(stack.api);
    const fb = await stack.emulator.mintFacebookToken();
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
    });
    expect((await call(stack.api, 'DELETE', '/api/me/', { token: user.access_token })).status).toBe(204);
    expectError(await call(stack.api, 'GET', '/api/me/', { token: user.access_token }), 401, 'invalid_access_token');
    expectError(
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
      401,
      'invalid_refresh_token',
    );
    expectError(
      await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } }),
      404,
      'user_not_found',
    );
    const links = await stack.db.selectFrom('social_associations').selectAll().where('user_id', '=', user.id).execute();
    expect(links).toEqual([]);
    const sessions = await stack.db.selectFrom('sessions').selectAll().where('user_id', '=', user.id).execute();
    expect(sessions).toEqual([]);
    // The account can be linked by someone else now; the deletion stays in the operators' log.
    const other = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: other.access_token,
          body: { access_token: fb.access_token },
        })
      ).status,
    ).toBe(200);
    const deleted = await stack.db
      .selectFrom('audit_events')
      .selectAll()
      .where('user_id', '=', user.id)
      .where('event', '=', 'user_deleted')
      .execute();
    expect(deleted).toHaveLength(1);
  });
});
