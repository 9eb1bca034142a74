import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// The admin API (src/admin/ (api.ts, api-reads.ts, api-changes.ts) over src/core/admin.ts): the app's backend, with a service key.

describe.each(databaseKinds())('admin API on %s', (kind) => {
  let stack: Stack;
  let read: string;
  let write: string;
  beforeAll(async () => {
    // Webhooks on (an endpoint nobody answers: the events are checked in the outbox, where they are written).
    stack = await startStack(kind, {
      SOCIAL_LINK_ADMIN: 'true',
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 3).toString('base64')}`,
    });
    const keys = new Storage(stack.db).serviceKeys;
    read = (await keys.create('support-bot', ['read'])).key;
    write = (await keys.create('backend', ['read', 'write'])).key;
  });
  afterAll(() => stack.close());

  /** A guest with a Facebook account linked (its uid, as minted in the emulator). */
  async function linkedUser(facts: Record<string, unknown> = {}) {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({ user: facts });
    const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: facebook.access_token },
    });
    expect(linked.status).toBe(200);
    return { user, uid: facebook.user_id };
  }

  it('a service key finds the user of a Facebook uid: by the link, and by search', async () => {
    const { user, uid } = await linkedUser();
    const byLink = await call(stack.api, 'GET', `/admin/api/links/facebook/${uid}`, { token: read });
    expect(byLink.status).toBe(200);
    expect(byLink.body.link).toMatchObject({ provider: 'facebook', uid, user_id: user.id });
    expect(byLink.body.user.user).toMatchObject({ id: user.id, username: user.username, has_password: false });
    expect(byLink.body.user.sessions).toHaveLength(1);
    expect(byLink.body.user.sessions[0]).toMatchObject({ ip: '127.0.0.1', user_agent: expect.any(String) });
    // Never the provider tokens kept for a link.
    expect(JSON.stringify(byLink.body)).not.toMatch(/provider_tokens|sealed/);

    const search = await call(stack.api, 'GET', `/admin/api/users?q=${uid}`, { token: read });
    expect(search.status, JSON.stringify(search.body)).toBe(200);
    expect(search.body.users).toEqual([
      expect.objectContaining({ id: user.id, matched_by: 'uid', providers: ['facebook'] }),
    ]);
    const byId = await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read });
    expect(byId.body.links.map((link: { uid: string }) => link.uid)).toEqual([uid]);
    const byName = await call(stack.api, 'GET', `/admin/api/usernames/${user.username.toUpperCase()}`, { token: read });
    expect(byName.body.user.id).toBe(user.id);
  });

  it('search: by e-mail the provider gave, by the start of a username, filtered by provider, in keyset pages', async () => {
    const email = `ada.${Date.now()}@example.com`;
    const { user } = await linkedUser({ email });
    expect(
      (await call(stack.api, 'GET', `/admin/api/users?q=${encodeURIComponent(email.toUpperCase())}`, { token: read }))
        .body.users,
    ).toEqual([expect.objectContaining({ id: user.id, matched_by: 'email' })]);
    const prefix = user.username.slice(0, 10);
    const found = await call(stack.api, 'GET', `/admin/api/users?q=${prefix}`, { token: read });
    expect(found.body.users.map((row: { id: number }) => row.id)).toContain(user.id);

    const plain = await guest(stack.api);
    const withFacebook = await call(stack.api, 'GET', '/admin/api/users?provider=facebook&limit=100', { token: read });
    expect(withFacebook.body.users.every((row: { providers: string[] }) => row.providers.includes('facebook'))).toBe(
      true,
    );
    expect(withFacebook.body.users.map((row: { id: number }) => row.id)).not.toContain(plain.id);

    // Pages of 2: every user once, newest first, until next is null.
    const seen: number[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page: { body: { users: Array<{ id: number }>; next: string | null } } = await call(
        stack.api,
        'GET',
        `/admin/api/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        { token: read },
      );
      seen.push(...page.body.users.map((row) => row.id));
      cursor = page.body.next;
    }
    const all = (
      await stack.db.selectFrom('users').select('id').orderBy('created_at', 'desc').orderBy('id', 'desc').execute()
    ).map((row) => row.id);
    expect(seen).toEqual(all);
    const today = new Date().toISOString().slice(0, 10);
    expect((await call(stack.api, 'GET', `/admin/api/users?created_to=${today}`, { token: read })).body.users).toEqual(
      [],
    );
  });

  it('unlink needs a write key and a reason; the audit keeps the key and the reason; the last way in needs force', async () => {
    const { user, uid } = await linkedUser();
    expect((await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read })).status).toBe(200);
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
        token: read,
        body: { provider: 'facebook', uid, reason: 'ticket 1' },
      }),
      403,
      'forbidden',
    );
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
        token: write,
        body: { provider: 'facebook', uid, reason: '   ' },
      }),
      400,
      'reason_required',
    );
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
        token: write,
        body: { provider: 'facebook', uid },
      }),
      400,
      'reason_required',
    );
    // A guest's only link is its only way in.
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
        token: write,
        body: { provider: 'facebook', uid, reason: 'ticket 2' },
      }),
      409,
      'last_login_method',
    );
    const done = await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
      token: write,
      body: { provider: 'facebook', uid, reason: 'ticket 3: lost phone', force: true },
    });
    expect(done.status).toBe(204);
    const audit = await call(stack.api, 'GET', `/admin/api/users/${user.id}/audit?reads=true`, { token: read });
    expect(audit.body.find((event: { event: string }) => event.event === 'unlinked')).toMatchObject({
      provider: 'facebook',
      uid,
      actor: 'key:backend',
      reason: 'ticket 3: lost phone',
    });
    // Reads are audited too, with the key's name.
    expect(
      audit.body.some(
        (event: { event: string; actor: string }) => event.event === 'admin_read' && event.actor === 'key:support-bot',
      ),
    ).toBe(true);
    expectError(
      await call(stack.api, 'GET', `/admin/api/links/facebook/${uid}`, { token: read }),
      404,
      'association_not_found',
    );
  });

  it('revoking sessions ends the refresh tokens and access tokens at once; export has the data; delete removes the user', async () => {
    const { user, uid } = await linkedUser({ email: 'grace@example.com' });
    const revoked = await call(stack.api, 'POST', `/admin/api/users/${user.id}/revoke-sessions`, {
      token: write,
      body: { reason: 'account takeover reported' },
    });
    expect(revoked.body).toEqual({ revoked: 1 });
    // The app's backend hears of it as of a logout: session.revoked, reason admin, and who did it.
    const events = await stack.db
      .selectFrom('outbox')
      .select(['type', 'payload'])
      .where('user_id', '=', user.id)
      .where('type', '=', 'session.revoked')
      .execute();
    expect(events.map((event) => JSON.parse(event.payload).data)).toEqual([
      { user_id: user.id, reason: 'admin', actor: 'key:backend' },
    ]);
    expectError(
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
      401,
      'invalid_refresh_token',
    );
    expectError(await call(stack.api, 'GET', '/api/me/', { token: user.access_token }), 401, 'invalid_access_token');

    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/export`, { token: read, body: {} }),
      400,
      'reason_required',
    );
    const exported = await call(stack.api, 'POST', `/admin/api/users/${user.id}/export`, {
      token: read,
      body: { reason: 'data-access request #7' },
    });
    expect(exported.status).toBe(200);
    expect(exported.body.user).toMatchObject({ id: user.id, username: user.username });
    expect(exported.body.links).toEqual([
      expect.objectContaining({
        provider: 'facebook',
        uid,
        extra_data: expect.objectContaining({ email: 'grace@example.com' }),
      }),
    ]);
    expect(exported.body.audit.map((event: { event: string }) => event.event)).toEqual(
      expect.arrayContaining(['user_created', 'associated', 'sessions_revoked']),
    );
    expect(JSON.stringify(exported.body)).not.toMatch(/password_hash|provider_tokens|scrypt\$/);

    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/delete`, { token: read, body: { reason: 'gdpr' } }),
      403,
      'forbidden',
    );
    expect(
      (
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/delete`, {
          token: write,
          body: { reason: 'erasure request #8' },
        })
      ).status,
    ).toBe(204);
    expectError(await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read }), 404, 'user_not_found');
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/delete`, { token: write, body: { reason: 'again' } }),
      404,
      'user_not_found',
    );
    const deletion = await stack.db
      .selectFrom('audit_events')
      .selectAll()
      .where('user_id', '=', user.id)
      .where('event', '=', 'user_deleted')
      .executeTakeFirstOrThrow();
    expect(deletion).toMatchObject({ actor: 'key:backend', reason: 'erasure request #8' });
  });

  it('browsing pages through users created within one millisecond exactly once (microseconds kept); a forged cursor starts over', async () => {
    const at = (micros: number) =>
      kind === 'postgres' ? `1999-01-01 00:00:00.00${micros}+00` : `1999-01-01T00:00:00.00${micros}Z`;
    const names = [3, 1, 4, 2, 5].map((micros) => ({ name: `tie${micros}${kind}`, micros }));
    for (const { name, micros } of names) {
      await stack.db
        .insertInto('users')
        .values({
          username: name,
          username_key: name,
          password_hash: null,
          created_at: at(micros),
          updated_at: at(micros),
        })
        .execute();
    }
    const seen: string[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page: { body: { users: Array<{ username: string }>; next: string | null } } = await call(
        stack.api,
        'GET',
        `/admin/api/users?created_from=1999-01-01&created_to=1999-01-02&limit=1${cursor ? `&cursor=${cursor}` : ''}`,
        { token: read },
      );
      seen.push(...page.body.users.map((row) => row.username));
      cursor = page.body.next;
    }
    expect(seen).toEqual([5, 4, 3, 2, 1].map((micros) => `tie${micros}${kind}`));
    for (const forged of [
      Buffer.from('["created",["March 7",1]]').toString('base64url'),
      'not-a-cursor',
      Buffer.from('["created",["1999-01-01 00:00:00+00","1"]]').toString('base64url'),
    ]) {
      const page = await call(
        stack.api,
        'GET',
        `/admin/api/users?created_from=1999-01-01&created_to=1999-01-02&limit=1&cursor=${forged}`,
        { token: read },
      );
      expect(page.body.users.map((row: { username: string }) => row.username)).toEqual([`tie5${kind}`]);
    }
  });

  it("a search's exact match inside the username pages neither hides the next page nor shows twice", async () => {
    const stem = `zq${kind}${Date.now()}`;
    const ids: number[] = [];
    for (const n of [1, 2, 3, 4])
      ids.push(
        (
          await call(stack.api, 'POST', '/api/users/', {
            body: { username: `${stem}${n}`, password: 'a long password 1' },
          })
        ).body.id,
      );
    // The first one's Facebook uid is the query itself.
    await stack.db
      .insertInto('social_associations')
      .values({
        user_id: ids[0]!,
        provider: 'facebook',
        uid: stem,
        extra_data: '{}',
        provider_tokens: null,
        verified_email: null,
        created_at: new Date().toISOString(),
        updated_at: new Date().toISOString(),
      })
      .execute();
    const seen: Array<[number, string]> = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page: { body: { users: Array<{ id: number; matched_by: string }>; next: string | null } } = await call(
        stack.api,
        'GET',
        `/admin/api/users?q=${stem}&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        { token: read },
      );
      seen.push(...page.body.users.map((row): [number, string] => [row.id, row.matched_by]));
      cursor = page.body.next;
    }
    expect(seen).toEqual([
      [ids[0]!, 'uid'],
      [ids[1]!, 'username'],
      [ids[2]!, 'username'],
      [ids[3]!, 'username'],
    ]);
  });

  it('bad input is a 4xx, never a database error: NUL characters, forged cursors', async () => {
    for (const path of ['/admin/api/users?q=abc%00', '/admin/api/links/facebook/a%00b', '/admin/api/usernames/a%00b']) {
      expectError(await call(stack.api, 'GET', path, { token: read }), 400, 'invalid_request');
    }
    expectError(
      await call(stack.api, 'POST', '/admin/api/users/1/revoke-sessions', {
        token: write,
        body: { reason: 'a\u0000b' },
      }),
      400,
      'invalid_request',
    );
    for (const value of [
      ['2999-01-01T00:00:00Z', 3_000_000_000],
      ['2999-01-01T00:00:00Z', 1e300],
      ['9999-99-99 99:99:99Z', 1],
    ]) {
      const cursor = Buffer.from(JSON.stringify(['created', value])).toString('base64url');
      expect((await call(stack.api, 'GET', `/admin/api/users?limit=1&cursor=${cursor}`, { token: read })).status).toBe(
        200,
      );
    }
    // A cursor from before the query's names does not reach outside them.
    const below = Buffer.from(JSON.stringify(['username', 'a'])).toString('base64url');
    const page = await call(stack.api, 'GET', `/admin/api/users?q=zq&cursor=${below}`, { token: read });
    expect(page.body.users.every((row: { username: string }) => row.username.toLowerCase().startsWith('zq'))).toBe(
      true,
    );
    const nul = Buffer.from(JSON.stringify(['username', 'a\u0000'])).toString('base64url');
    expect((await call(stack.api, 'GET', `/admin/api/users?q=a&cursor=${nul}`, { token: read })).status).toBe(200);
  });

  it('impossible or out-of-range dates are a 400, a cursor naming Feb 30 starts over, over-long unlink fields a 400: never a database error', async () => {
    for (const query of [
      'created_from=0000-01-01',
      'created_to=0000-12-31',
      'created_from=2023-02-29',
      'created_to=2024-02-30',
      'created_from=2024-04-31',
    ]) {
      const answer = await call(stack.api, 'GET', `/admin/api/users?${query}`, { token: read });
      // (The schema's format refuses most; year 0000 is a date to it, and only PostgreSQL has none.)
      expectError(answer, 400, 'invalid_request');
    }
    expect(
      (await call(stack.api, 'GET', '/admin/api/users?created_from=0001-01-01&created_to=2024-02-29', { token: read }))
        .status,
    ).toBe(200);
    for (const moment of [
      '2024-02-30 00:00:00+00',
      '2024-02-30T00:00:00.000Z',
      '0000-01-01T00:00:00Z',
      '2024-01-01T24:00:00Z',
      '2024-01-01 00:00:00+99',
    ]) {
      const cursor = Buffer.from(JSON.stringify(['created', [moment, 1]])).toString('base64url');
      expect((await call(stack.api, 'GET', `/admin/api/users?limit=1&cursor=${cursor}`, { token: read })).status).toBe(
        200,
      );
    }
    const { user, uid } = await linkedUser();
    for (const body of [
      { provider: 'p'.repeat(65), uid },
      { provider: 'facebook', uid: 'u'.repeat(256) },
    ]) {
      expectError(
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
          token: write,
          body: { ...body, reason: 'ticket 4', force: true },
        }),
        400,
        'invalid_request',
      );
    }
  });

  it('a reason of invisible characters only (zero-width space, fillers) is no reason', async () => {
    const { user } = await linkedUser();
    for (const reason of ['\u200b', '\u200b\u200c\u200d\u2060\ufeff', '\u3164', '\u2800 \u00a0', '\u202e\u0301']) {
      expectError(
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/revoke-sessions`, {
          token: write,
          body: { reason },
        }),
        400,
        'reason_required',
      );
    }
    expect(
      (
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/revoke-sessions`, {
          token: write,
          body: { reason: '\u200bticket 6' },
        })
      ).status,
    ).toBe(200);
  });

  it("an export hands the user what its own history shows: operators' reads, addresses, devices, names and reasons stay out", async () => {
    const { user } = await linkedUser();
    const tool = { 'user-agent': 'InternalSupportTool/2.0' };
    await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read, headers: tool });
    expect(
      (
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/revoke-sessions`, {
          token: write,
          body: { reason: 'internal: suspected fraud ring 17' },
          headers: tool,
        })
      ).status,
    ).toBe(200);
    const exported = await call(stack.api, 'POST', `/admin/api/users/${user.id}/export`, {
      token: read,
      body: { reason: 'data-access request 12' },
      headers: tool,
    });
    expect(exported.status).toBe(200);
    const text = JSON.stringify(exported.body);
    for (const internal of [
      'InternalSupportTool',
      'fraud ring',
      'key:backend',
      'key:support-bot',
      'admin_read',
      'data-access request 12',
    ])
      expect(text).not.toContain(internal);
    const revoked = exported.body.audit.find((event: { event: string }) => event.event === 'sessions_revoked');
    expect(revoked).toMatchObject({ ip: null, user_agent: null });
    // The user's own events keep their address, as in its own history; the export is that history.
    expect(exported.body.audit.find((event: { event: string }) => event.event === 'associated')?.ip).toBe('127.0.0.1');
    // The operators still see everything in their own audit.
    const audit = await call(stack.api, 'GET', `/admin/api/users/${user.id}/audit?reads=true`, { token: read });
    expect(audit.body.find((event: { event: string }) => event.event === 'sessions_revoked')).toMatchObject({
      actor: 'key:backend',
      reason: 'internal: suspected fraud ring 17',
      user_agent: 'InternalSupportTool/2.0',
    });
  });

  it("the user's own history shows what operators did, not their reads nor their address; a refused change is audited", async () => {
    const { user } = await linkedUser();
    const tool = { 'user-agent': 'InternalSupportTool/1.0' };
    await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read, headers: tool });
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/revoke-sessions`, {
        token: read,
        body: { reason: 'curious' },
      }),
      403,
      'forbidden',
    );
    expect(
      (
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/export`, {
          token: read,
          body: { reason: 'data-access request' },
          headers: tool,
        })
      ).status,
    ).toBe(200);
    const refused = await stack.db
      .selectFrom('audit_events')
      .select(['detail', 'actor'])
      .where('user_id', '=', user.id)
      .where('event', '=', 'refused')
      .execute();
    expect(refused).toEqual([{ detail: 'forbidden', actor: 'key:support-bot' }]);

    const own = (await call(stack.api, 'GET', '/api/audit/', { token: user.access_token })).body as Array<{
      event: string;
      ip: string | null;
      user_agent: string | null;
    }>;
    expect(own.map((event) => event.event)).not.toContain('admin_read');
    const exported = own.find((event) => event.event === 'user_exported')!;
    expect(exported).toMatchObject({ ip: null, user_agent: null });
    expect(JSON.stringify(own)).not.toContain('InternalSupportTool');
    // The user's own events keep their address.
    expect(own.find((event) => event.event === 'associated')?.ip).toBe('127.0.0.1');
  });

  it('ends one session and keeps the others; a refused unlink is audited; the audit of no user is 404', async () => {
    const { user, uid } = await linkedUser();
    const detail = await call(stack.api, 'GET', `/admin/api/users/${user.id}`, { token: read });
    const [session] = detail.body.sessions as Array<{ id: string }>;
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/sessions/nope/revoke`, {
        token: write,
        body: { reason: 'lost phone' },
      }),
      404,
      'session_not_found',
    );
    expect(
      (
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/sessions/${session!.id}/revoke`, {
          token: write,
          body: { reason: 'lost phone' },
        })
      ).status,
    ).toBe(204);
    expectError(await call(stack.api, 'GET', '/api/me/', { token: user.access_token }), 401, 'invalid_access_token');
    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/sessions/${session!.id}/revoke`, {
        token: write,
        body: { reason: 'again' },
      }),
      404,
      'session_not_found',
    );

    expectError(
      await call(stack.api, 'POST', `/admin/api/users/${user.id}/unlink`, {
        token: write,
        body: { provider: 'facebook', uid, reason: 'asked' },
      }),
      409,
      'last_login_method',
    );
    const refused = await stack.db
      .selectFrom('audit_events')
      .select(['detail', 'actor', 'reason'])
      .where('user_id', '=', user.id)
      .where('event', '=', 'refused')
      .execute();
    expect(refused).toEqual([{ detail: 'last_login_method', actor: 'key:backend', reason: 'asked' }]);

    expectError(
      await call(stack.api, 'GET', '/admin/api/users/2000000000/audit', { token: read }),
      404,
      'user_not_found',
    );
  });

  it('an export holds the whole audit history, however long', async () => {
    const { user } = await linkedUser();
    const at = new Date().toISOString();
    const rows = Array.from({ length: 10_500 }, (_, i) => ({
      user_id: user.id,
      event: 'refused',
      provider: null,
      uid: null,
      detail: `old ${i}`,
      ip: null,
      user_agent: null,
      created_at: at,
      actor: null,
      reason: null,
    }));
    for (let i = 0; i < rows.length; i += 1000)
      await stack.db
        .insertInto('audit_events')
        .values(rows.slice(i, i + 1000))
        .execute();
    const exported = await call(stack.api, 'POST', `/admin/api/users/${user.id}/export`, {
      token: read,
      body: { reason: 'data-access request' },
    });
    const details = new Set(exported.body.audit.map((event: { detail: string | null }) => event.detail));
    expect(Array.from({ length: 10_500 }, (_, i) => details.has(`old ${i}`)).every(Boolean)).toBe(true);
    expect(exported.body.audit.map((event: { event: string }) => event.event)).toEqual(
      expect.arrayContaining(['user_created', 'associated']),
    );
  });

  it('numbers past a 32-bit id are no user (404, never a database error), and search them as uids', async () => {
    for (const id of ['2147483648', '321498510518019', '99999999999999999999']) {
      expectError(await call(stack.api, 'GET', `/admin/api/users/${id}`, { token: read }), 404, 'user_not_found');
      expect((await call(stack.api, 'GET', `/admin/api/users?q=${id}`, { token: read })).body.users).toEqual([]);
    }
    expectError(await call(stack.api, 'GET', '/admin/api/users/0', { token: read }), 404, 'user_not_found');
  });

  it('no key, an unknown key, a revoked key: 401 invalid_service_key; the last use is kept', async () => {
    expectError(await call(stack.api, 'GET', '/admin/api/users'), 401, 'invalid_service_key');
    expectError(
      await call(stack.api, 'GET', '/admin/api/users', { token: 'slk_not-a-key' }),
      401,
      'invalid_service_key',
    );
    // An app user's access token is no service key.
    expectError(
      await call(stack.api, 'GET', '/admin/api/users', { token: (await guest(stack.api)).access_token }),
      401,
      'invalid_service_key',
    );
    const keys = new Storage(stack.db).serviceKeys;
    const { key } = await keys.create('short-lived', ['read']);
    expect((await call(stack.api, 'GET', '/admin/api/users', { token: key })).status).toBe(200);
    expect((await keys.list()).find((entry) => entry.name === 'short-lived')?.lastUsedAt).toEqual(expect.any(String));
    expect(await keys.revoke('short-lived')).toBe(true);
    expectError(await call(stack.api, 'GET', '/admin/api/users', { token: key }), 401, 'invalid_service_key');
    // Only the hash is stored.
    const stored = await stack.db.selectFrom('service_keys').select('key_hash').execute();
    expect(stored.map((row) => row.key_hash)).not.toContain(key);
  });

  it('the admin API is in the OpenAPI document under its own tag and security scheme', async () => {
    const document = (await call(stack.api, 'GET', '/openapi.json')).body;
    expect(document.components.securitySchemes.serviceKey).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(document.tags.map((tag: { name: string }) => tag.name)).toContain('admin');
    const operation = document.paths['/admin/api/users/{id}/unlink'].post;
    expect(operation.tags).toEqual(['admin']);
    expect(operation.security).toEqual([{ serviceKey: [] }]);
    // The console's pages are not API operations.
    expect(
      Object.keys(document.paths).filter((path) => path.startsWith('/admin/') && !path.startsWith('/admin/api/')),
    ).toEqual([]);
  });
});

describe('admin off (the default)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite');
  });
  afterAll(() => stack.close());

  it('the console and the admin API are absent: 404, and not in the document', async () => {
    for (const path of ['/admin/', '/admin/login', '/admin/api/users', '/admin/static/console.css'])
      expectError(await call(stack.api, 'GET', path), 404, 'not_found');
    const document = (await call(stack.api, 'GET', '/openapi.json')).body;
    expect(Object.keys(document.paths).some((path) => path.startsWith('/admin'))).toBe(false);
    expect(document.components.securitySchemes.serviceKey).toBeUndefined();
  });
});

describe('admin API rate limit', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      SOCIAL_LINK_ADMIN: 'true',
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_ADMIN_API_PER_MINUTE: '3',
    });
  });
  afterAll(() => stack.close());

  it('each service key has its budget a minute (RATE_LIMIT_ADMIN_API_PER_MINUTE), and requests without a valid key one per client network', async () => {
    const keys = new Storage(stack.db).serviceKeys;
    const first = (await keys.create('bulk-reader', ['read'])).key;
    const second = (await keys.create('other-backend', ['read'])).key;
    for (let i = 0; i < 3; i++)
      expect((await call(stack.api, 'GET', '/admin/api/users', { token: first })).status).toBe(200);
    const limited = await call(stack.api, 'GET', '/admin/api/users', { token: first });
    expectError(limited, 429, 'rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another key's budget is its own.
    expect((await call(stack.api, 'GET', '/admin/api/users', { token: second })).status).toBe(200);
    // Guessing keys spends the address's budget.
    for (let i = 0; i < 3; i++)
      expectError(
        await call(stack.api, 'GET', '/admin/api/users', { token: `slk_guess${i}` }),
        401,
        'invalid_service_key',
      );
    expectError(await call(stack.api, 'GET', '/admin/api/users', { token: 'slk_guess3' }), 429, 'rate_limited');
  });
});

describe('SOCIAL_LINK_ADMIN_PORT: the console and the admin API on a listener of their own', () => {
  let stack: Stack;
  let admin: string;
  beforeAll(async () => {
    const { createServer } = await import('node:net');
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    stack = await startStack('sqlite', { SOCIAL_LINK_ADMIN: 'true', SOCIAL_LINK_ADMIN_PORT: String(port) });
    admin = `http://127.0.0.1:${port}`;
  });
  afterAll(() => stack.close());

  it('/admin/ and /admin/api/ answer only there (404 on the public port, as when off); the admin port serves nothing else', async () => {
    const { key } = await new Storage(stack.db).serviceKeys.create('internal', ['read']);
    const get = (base: string, path: string, headers: Record<string, string> = {}) =>
      fetch(`${base}${path}`, { headers, redirect: 'manual' });
    for (const path of [
      '/admin/',
      '/admin',
      '/admin/login',
      '/admin/users',
      '/admin/static/console.css',
      '/admin/api/users',
      '/admin/api/nope',
      '/admin/nope',
      '/%61dmin/api/users',
      '/admin/api/users?limit=1',
    ]) {
      const answer = await get(stack.api, path, { authorization: `Bearer ${key}` });
      expect([path, answer.status]).toEqual([path, 404]);
      expect(await answer.json()).toMatchObject({ code: 'not_found' });
      expect(answer.headers.get('x-request-id')).toBeTruthy();
    }
    // Nor by a form posted there.
    expect(
      (
        await fetch(`${stack.api}/admin/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'username=a&password=b',
        })
      ).status,
    ).toBe(404);
    expect((await get(admin, '/admin/api/users', { authorization: `Bearer ${key}` })).status).toBe(200);
    expect((await get(admin, '/admin/api/users')).status).toBe(401);
    expect((await get(admin, '/admin/login')).status).toBe(200);
    expect((await get(admin, '/admin/users')).status).toBe(303);
    for (const path of ['/api/users/', '/openapi.json', '/healthz', '/metrics', '/'])
      expect([path, (await get(admin, path)).status]).toEqual([path, 404]);
    // The public API goes on as before.
    expect((await call(stack.api, 'POST', '/api/users/')).status).toBe(201);
  });
});
