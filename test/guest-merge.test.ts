import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// Guest merge (src/core/guest-merge.ts): a guest on a new phone proves a social account of its old user.

describe.each(databaseKinds())('guest merge on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    // Webhooks on (an endpoint nobody answers: the events are checked in the outbox, where they are written).
    stack = await startStack(kind, {
      SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
    });
  });
  afterAll(() => stack.close());

  /** The old user (with a Facebook account), and a guest on a new phone that taps "Connect Facebook". */
  async function conflict() {
    const old = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: old.access_token,
      body: { access_token: facebook.access_token },
    });
    const newPhone = await guest(stack.api);
    const refused = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: newPhone.access_token,
      body: { access_token: facebook.access_token },
    });
    return { old, newPhone, facebook, refused };
  }

  it('409 already_associated gives a guest a merge token; merging signs in as the owner, deletes the guest, emits user.merged', async () => {
    const { old, newPhone, refused } = await conflict();
    expectError(refused, 409, 'already_associated');
    expect(refused.body.merge_token).toMatch(/^slm_[\w-]{43}$/);
    expect(refused.body.merge_token_expires_in).toBe(600);
    // Nothing else of the owner is told.
    expect(Object.keys(refused.body).sort()).toEqual([
      'code',
      'errors',
      'merge_token',
      'merge_token_expires_in',
      'message',
      'request_id',
    ]);

    const merged = await call(stack.api, 'POST', '/api/users/merge/', {
      token: newPhone.access_token,
      body: { merge_token: refused.body.merge_token },
    });
    expect(merged.status).toBe(200);
    expect(merged.body).toMatchObject({ id: old.id, username: old.username, access_token: expect.any(String) });
    const links = await call(stack.api, 'GET', '/api/associations/', { token: merged.body.access_token });
    expect(links.body.map((link: { provider: string }) => link.provider)).toEqual(['facebook']);
    expect(await stack.db.selectFrom('users').select('id').where('id', '=', newPhone.id).execute()).toEqual([]);
    expectError(
      await call(stack.api, 'GET', '/api/me/', { token: newPhone.access_token }),
      401,
      'invalid_access_token',
    );

    const events = await stack.db
      .selectFrom('outbox')
      .select(['type', 'payload'])
      .where('type', '=', 'user.merged')
      .execute();
    const event = events
      .map((row) => JSON.parse(row.payload) as { data: { from: number; into: number } })
      .find((payload) => payload.data.from === newPhone.id);
    expect(event?.data).toMatchObject({ from: newPhone.id, into: old.id, provider: 'facebook' });
    const audit = await stack.db
      .selectFrom('audit_events')
      .select(['user_id', 'event'])
      .where('event', '=', 'user_merged')
      .where('user_id', 'in', [old.id, newPhone.id])
      .execute();
    expect(audit).toHaveLength(2);
    // The owner is not alarmed (no link.refused: it was the owner on a new phone, most likely); its log keeps the offer.
    const ownerEvents = (await stack.db.selectFrom('outbox').select(['type', 'payload']).execute())
      .map((row) => ({
        type: row.type,
        data: (JSON.parse(row.payload) as { data: { user_id?: number; into?: number } }).data,
      }))
      .filter((event) => event.data.user_id === old.id || event.data.into === old.id)
      .map((event) => event.type);
    expect(ownerEvents.sort()).toEqual(['link.created', 'sign_in', 'user.created', 'user.merged']);
    const offered = await stack.db
      .selectFrom('audit_events')
      .select('event')
      .where('user_id', '=', old.id)
      .where('event', 'in', ['merge_offered', 'link_refused_other_user'])
      .execute();
    expect(offered.map((row) => row.event)).toEqual(['merge_offered']);
  });

  it('a user with a linked account gets no merge token (an access token alone must not hand its accounts over)', async () => {
    const old = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: old.access_token,
      body: { access_token: facebook.access_token },
    });
    const other = await guest(stack.api);
    const twitter = await stack.emulator.mintTwitterToken({});
    await call(stack.api, 'POST', '/api/associate/twitter/', {
      token: other.access_token,
      body: { access_token: twitter.access_token, access_token_secret: twitter.access_token_secret },
    });
    const refused = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: other.access_token,
      body: { access_token: facebook.access_token },
    });
    expectError(refused, 409, 'already_associated');
    expect(refused.body.merge_token).toBeUndefined();
  });

  it('the merge token is single use and only for its guest; a user with a password gets none', async () => {
    const { refused, newPhone } = await conflict();
    const stranger = await guest(stack.api);
    expectError(
      await call(stack.api, 'POST', '/api/users/merge/', {
        token: stranger.access_token,
        body: { merge_token: refused.body.merge_token },
      }),
      400,
      'invalid_merge_token',
    );
    expect(
      (
        await call(stack.api, 'POST', '/api/users/merge/', {
          token: newPhone.access_token,
          body: { merge_token: refused.body.merge_token },
        })
      ).status,
    ).toBe(200);
    expectError(
      await call(stack.api, 'POST', '/api/users/merge/', {
        token: stranger.access_token,
        body: { merge_token: refused.body.merge_token },
      }),
      400,
      'invalid_merge_token',
    );
    expectError(
      await call(stack.api, 'POST', '/api/users/merge/', { body: { merge_token: 'slm_x' } }),
      401,
      'not_authenticated',
    );

    const owner = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: owner.access_token,
      body: { access_token: facebook.access_token },
    });
    const withPassword = await call(stack.api, 'POST', '/api/users/', {
      body: { username: `pw_${Date.now()}`, password: 'a long password 1' },
    });
    const refusedAgain = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: withPassword.body.access_token,
      body: { access_token: facebook.access_token },
    });
    expectError(refusedAgain, 409, 'already_associated');
    expect(refusedAgain.body.merge_token).toBeUndefined();
  });

  it('an account unlinked from its owner since: the merge is refused, nobody is deleted', async () => {
    const { old, newPhone, refused } = await conflict();
    const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', {
      body: { access_token: (await stack.emulator.mintFacebookToken({})).access_token },
    });
    expect(signedIn.status).toBe(404); // (another account: unknown)
    const links = await call(stack.api, 'GET', '/api/associations/', { token: old.access_token });
    const facebookUid = links.body[0].uid as string;
    // The owner sets a way in, then unlinks the account.
    await stack.db.updateTable('users').set({ password_hash: 'scrypt$x' }).where('id', '=', old.id).execute();
    expect(
      (await call(stack.api, 'DELETE', `/api/associations/facebook/${facebookUid}/`, { token: old.access_token }))
        .status,
    ).toBe(204);
    expectError(
      await call(stack.api, 'POST', '/api/users/merge/', {
        token: newPhone.access_token,
        body: { merge_token: refused.body.merge_token },
      }),
      400,
      'invalid_merge_token',
    );
    expect((await call(stack.api, 'GET', '/api/me/', { token: newPhone.access_token })).status).toBe(200);
  });
});

// A merge signs in as the owner: it must spend the ID token that proved the account as a sign-in spends it.
describe.each(databaseKinds())('a merge spends the proof it was offered for, on %s', (kind) => {
  let refuse: Stack;
  let issued: Stack;
  let allow: Stack;
  beforeAll(async () => {
    [refuse, issued, allow] = await Promise.all([
      startStack(kind, { SOCIAL_AUTH_ID_TOKEN_REPLAY: 'refuse' }),
      startStack(kind, { SOCIAL_AUTH_GOOGLE_REQUIRE_NONCE: 'issued' }),
      startStack(kind),
    ]);
  });
  afterAll(() => Promise.all([refuse.close(), issued.close(), allow.close()]));

  /** The owner links a Google account with its own token; a thief holds another token of that account. */
  async function stolen(stack: Stack, nonce?: string) {
    const owner = await guest(stack.api);
    const ownNonce = nonce && ((await call(stack.api, 'POST', '/api/nonce/')).body.nonce as string);
    const own = await stack.emulator.mintIdToken('google', {
      name: 'owner token',
      ...(ownNonce ? { nonce: ownNonce } : {}),
    });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/google/', {
          token: owner.access_token,
          body: { id_token: own.id_token, ...(ownNonce ? { nonce: ownNonce } : {}) },
        })
      ).status,
    ).toBe(200);
    const theirs = await stack.emulator.mintIdToken('google', {
      sub: own.sub,
      iat_offset: -2,
      ...(nonce ? { nonce } : {}),
    }); // another token of the account
    return { owner, body: { id_token: theirs.id_token, ...(nonce ? { nonce } : {}) } };
  }
  const offered = async (stack: Stack, body: Record<string, string>) => {
    const thief = await guest(stack.api);
    const answer = await call(stack.api, 'POST', '/api/associate/google/', {
      token: thief.access_token,
      body,
      headers: { 'user-agent': `Thief/${thief.id}` },
    });
    return { thief, answer };
  };

  it('SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse: one ID token gives one merge token; no second merge, no sign-in after it', async () => {
    const { owner, body } = await stolen(refuse);
    const first = await offered(refuse, body);
    expectError(first.answer, 409, 'already_associated');
    expect(first.answer.body.merge_token).toMatch(/^slm_/);
    const second = await offered(refuse, body);
    expectError(second.answer, 400, 'invalid_token');
    expect(second.answer.body.merge_token).toBeUndefined();
    expect(
      (
        await call(refuse.api, 'POST', '/api/users/merge/', {
          token: first.thief.access_token,
          body: { merge_token: first.answer.body.merge_token },
        })
      ).body.id,
    ).toBe(owner.id);
    expectError(
      await call(refuse.api, 'POST', '/api/auth/google/', { body, headers: { 'user-agent': 'Thief/again' } }),
      400,
      'invalid_token',
    );
  });

  it('a token carrying an issued nonce gives one merge token, whatever the replay setting', async () => {
    const nonce = (await call(issued.api, 'POST', '/api/nonce/')).body.nonce as string;
    const { body } = await stolen(issued, nonce);
    expectError((await offered(issued, body)).answer, 409, 'already_associated');
    const again = await offered(issued, body);
    expectError(again.answer, 400, 'invalid_token');
    expectError(await call(issued.api, 'POST', '/api/auth/google/', { body }), 400, 'invalid_token');
  });

  it("a token issued before Google ended the account's sessions gives no merge token", async () => {
    const { body } = await stolen(allow);
    const sub = (
      JSON.parse(Buffer.from(body.id_token!.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string }
    ).sub;
    expect(
      (
        await allow.emulator.sendGoogleSecurityEvent({
          event: 'sessions-revoked',
          sub,
          url: `${allow.api}/api/providers/google/risc`,
        })
      ).status,
    ).toBe(202);
    const answer = (await offered(allow, body)).answer;
    expectError(answer, 400, 'invalid_token');
    expect(answer.body.merge_token).toBeUndefined();
  });

  it("a merge token offered before Google ended the account's sessions merges no more", async () => {
    const { body } = await stolen(allow);
    const sub = (
      JSON.parse(Buffer.from(body.id_token!.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string }
    ).sub;
    const { thief, answer } = await offered(allow, body);
    expectError(answer, 409, 'already_associated');
    expect(
      (
        await allow.emulator.sendGoogleSecurityEvent({
          event: 'sessions-revoked',
          sub,
          url: `${allow.api}/api/providers/google/risc`,
        })
      ).status,
    ).toBe(202);
    expectError(
      await call(allow.api, 'POST', '/api/users/merge/', {
        token: thief.access_token,
        body: { merge_token: answer.body.merge_token },
      }),
      400,
      'invalid_merge_token',
    );
  });

  it('where a token may sign in again (the default), a merge gives no more than a sign-in with it would', async () => {
    const { owner, body } = await stolen(allow);
    for (let i = 0; i < 2; i++) expectError((await offered(allow, body)).answer, 409, 'already_associated');
    expect((await call(allow.api, 'POST', '/api/auth/google/', { body })).body.id).toBe(owner.id);
  });
});
