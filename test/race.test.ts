import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { SecretBox } from '../src/auth/secret-box.js';
import { defaultPipeline, runPipeline } from '../src/core/pipeline.js';
import type { PipelineContext } from '../src/core/pipeline-step.js';
import { openDatabase } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, freshDatabase, guest, startStack, type Stack } from './helpers.js';

// On PostgreSQL these requests truly run at once (a pool of connections); the unique (provider, uid)
// constraint, not a read before the write, must decide the winner.
describe.each(databaseKinds())('concurrent linking on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_AUTH_CREATE_USER: 'true' });
  });
  afterAll(() => stack.close());

  it('concurrent associates of one social account to different users leave exactly one link', async () => {
    const users = await Promise.all(Array.from({ length: 12 }, () => guest(stack.api)));
    const fb = await stack.emulator.mintFacebookToken();
    const answers = await Promise.all(
      users.map((user) =>
        call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: fb.access_token },
        }),
      ),
    );
    const winners = answers.filter((answer) => answer.status === 200);
    expect(winners).toHaveLength(1);
    expect(winners[0]!.body.association.created).toBe(true);
    expect(answers.filter((answer) => answer.status === 409 && answer.body.code === 'already_associated')).toHaveLength(
      users.length - 1,
    );

    const links = await stack.db
      .selectFrom('social_associations')
      .selectAll()
      .where('provider', '=', 'facebook')
      .where('uid', '=', fb.user_id)
      .execute();
    expect(links).toHaveLength(1);
    const owner = users[answers.findIndex((answer) => answer.status === 200)]!;
    expect(links[0]!.user_id).toBe(owner.id);
    // One 'associated' event: the losers' (written with their link, if at all) were rolled back with it.
    const events = await stack.db
      .selectFrom('audit_events')
      .select('user_id')
      .where('event', '=', 'associated')
      .where('uid', '=', fb.user_id)
      .execute();
    expect(events).toEqual([{ user_id: owner.id }]);
  });

  it('concurrent first sign-ins with one new account create exactly one user', async () => {
    const usersBefore = await stack.db.selectFrom('users').select('id').execute();
    const fb = await stack.emulator.mintFacebookToken();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } }),
      ),
    );
    for (const answer of answers) expect([200, 201]).toContain(answer.status);
    expect(new Set(answers.map((answer) => answer.body.id)).size).toBe(1);
    const usersAfter = await stack.db.selectFrom('users').select('id').execute();
    expect(usersAfter.length - usersBefore.length).toBe(1); // the losers' users were rolled back
  });

  it('concurrent unlinks never leave a password-less user without a way to sign in', async () => {
    const user = await guest(stack.api);
    const accounts = await Promise.all(Array.from({ length: 6 }, () => stack.emulator.mintTwitterToken()));
    for (const tw of accounts) {
      await call(stack.api, 'POST', '/api/associate/twitter/', {
        token: user.access_token,
        body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
      });
    }
    const answers = await Promise.all(
      accounts.map((tw) =>
        call(stack.api, 'DELETE', `/api/associations/twitter/${tw.user_id}/`, { token: user.access_token }),
      ),
    );
    expect(answers.filter((answer) => answer.status === 204)).toHaveLength(accounts.length - 1);
    expect(answers.filter((answer) => answer.status === 409 && answer.body.code === 'last_login_method')).toHaveLength(
      1,
    );
    expect((await call(stack.api, 'GET', '/api/associations/', { token: user.access_token })).body).toHaveLength(1);
  });
});

// With hooks or an embedding host, a sign-in reads the account's link before its transaction (readLink) and carries it
// in (`known`): what changed between the two must be seen, so that the account's owner at the time of the transaction
// signs in — never nobody, never the one before.
describe.each(databaseKinds())('a link that changed after readLink, on %s', (kind) => {
  let database: { url: string; drop(): Promise<void> };
  let storage: Storage;
  beforeAll(async () => {
    database = await freshDatabase(kind, { migrated: true });
    storage = new Storage(openDatabase(database.url));
  });
  afterAll(async () => {
    await storage.db.destroy();
    await database.drop();
  });

  let account = 0;
  const run = (mode: 'associate' | 'auth', uid: string, extra: Partial<PipelineContext> = {}) =>
    runPipeline(defaultPipeline, storage, {
      mode,
      provider: 'p',
      identity: { uid, details: {}, extraData: {} },
      client: { ip: '127.0.0.1', userAgent: 'test' },
      secrets: SecretBox.fromSetting(SecretBox.generateKey()),
      replay: { refuse: false, retrySeconds: 10 },
      options: { createUser: false },
      ...extra,
    });
  const signedIn = async (uid: string, known: PipelineContext['known']) =>
    (await run('auth', uid, { known })).context.user?.id;

  it('none when read, linked since: its owner signs in (not 404)', async () => {
    const uid = `u${++account}`;
    const owner = await storage.users.create(`owner${account}`, null);
    await run('associate', uid, { user: owner });
    expect(await signedIn(uid, null)).toBe(owner.id);
  });

  it("one user's when read, moved to another since: the new owner signs in", async () => {
    const uid = `u${++account}`;
    const before = await storage.users.create(`before${account}`, null);
    const after = await storage.users.create(`after${account}`, null);
    await run('associate', uid, { user: before });
    const known = (await storage.links.find('p', uid)) ?? null;
    await storage.links.delete(before.id, 'p', uid);
    await run('associate', uid, { user: after });
    expect(await signedIn(uid, known)).toBe(after.id);
  });

  it('unlinked since: the account is unknown (404)', async () => {
    const uid = `u${++account}`;
    const owner = await storage.users.create(`gone${account}`, null);
    await run('associate', uid, { user: owner });
    const known = (await storage.links.find('p', uid)) ?? null;
    await storage.links.delete(owner.id, 'p', uid);
    await expect(signedIn(uid, known)).rejects.toMatchObject({ code: 'user_not_found' });
  });
});

// A hot user (several devices, a retrying app, a shared test account): its sign-ins must not queue behind each
// other on its row. Each holds the row only as a key share (a deletion waits for them; they do not wait for each
// other); the last-login write is skipped while another transaction writes the row, never waited for.
describe.skipIf(!databaseKinds().includes('postgres'))('a hot user on postgres', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('postgres');
  });
  afterAll(() => stack.close());

  async function linkedFacebookUser() {
    const user = await guest(stack.api);
    const fb = await stack.emulator.mintFacebookToken();
    const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
    });
    expect(linked.status).toBe(200);
    const signIn = async () =>
      call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: (await stack.emulator.mintFacebookToken({ user: { id: fb.user_id } })).access_token },
      });
    const lastLogin = async () =>
      (await stack.db.selectFrom('users').select('last_login_at').where('id', '=', user.id).executeTakeFirstOrThrow())
        .last_login_at;
    const link = await stack.db
      .selectFrom('social_associations')
      .select(['id', 'uid'])
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    return { user, link, signIn, lastLogin };
  }

  /** `signIn` answers 200, as `userId`, while another transaction holds a row (`lock` of `id`) for a write. */
  async function signsInWhileHeld(
    lock: string,
    id: number,
    signIn: () => ReturnType<typeof call>,
    userId: number,
  ): Promise<void> {
    const other = new pg.Client({ connectionString: stack.databaseUrl });
    await other.connect();
    try {
      await other.query('begin');
      await other.query(lock, [id]);
      // Queued behind it, the sign-in would wait until DATABASE_QUERY_TIMEOUT_MS and answer 503.
      const answer = await signIn();
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.id).toBe(userId);
    } finally {
      await other.query('rollback');
      await other.end();
    }
  }

  /**
   * Another transaction's `statements`, not yet committed; `request` sent meanwhile waits for a row they hold; then they
   * commit. The request's answer.
   */
  async function answerAcrossCommit(
    statements: Array<[string, unknown[]]>,
    request: () => ReturnType<typeof call>,
  ): ReturnType<typeof call> {
    const writer = new pg.Client({ connectionString: stack.databaseUrl });
    await writer.connect();
    try {
      await writer.query('begin');
      for (const [text, values] of statements) await writer.query(text, values);
      const answering = request();
      // Answered without waiting (not what the test means to show): its answer, not a poll until the test times out.
      let answered = false;
      answering.then(
        () => (answered = true),
        () => (answered = true),
      );
      await until(async () => answered || (await waitingOnLocks(writer)) > 0);
      await writer.query('commit');
      return await answering;
    } finally {
      await writer.end();
    }
  }

  /** An unlink's statements (core/unlink.ts): the user's row taken first, then the link deleted. */
  const unlinking = (userId: number, linkId: number): Array<[string, unknown[]]> => [
    ['select id from users where id = $1 for update', [userId]],
    ['delete from social_associations where id = $1', [linkId]],
  ];

  it("signs in while another transaction writes the user's row (another sign-in's last login): no wait", async () => {
    const { user, signIn, lastLogin } = await linkedFacebookUser();
    expect((await signIn()).status).toBe(200);
    const before = await lastLogin();
    // Another sign-in of this user between its last-login write and its commit: the row locked for a write.
    await signsInWhileHeld('select id from users where id = $1 for no key update', user.id, signIn, user.id);
    // Its last-login write was skipped (the other transaction's stands for it); the next one writes.
    expect(await lastLogin()).toEqual(before);
    expect((await signIn()).status).toBe(200);
    const time = (value: unknown) => new Date(value as Date | string).getTime();
    expect(time(await lastLogin())).toBeGreaterThan(time(before));
  });

  it("signs in while another transaction writes the link's facts (another sign-in of the account): no wait", async () => {
    const { user, link } = await linkedFacebookUser();
    const expiresAt = async () =>
      (
        (
          await stack.db
            .selectFrom('social_associations')
            .select('extra_data')
            .where('id', '=', link.id)
            .executeTakeFirstOrThrow()
        ).extra_data as unknown as { expires_at: number }
      ).expires_at;
    // A token of another expiry: new facts to keep.
    const signInExpiringIn = async (seconds: number) =>
      call(stack.api, 'POST', '/api/auth/facebook/', {
        body: {
          access_token: (await stack.emulator.mintFacebookToken({ user: { id: link.uid }, expires_in: seconds }))
            .access_token,
        },
      });
    const before = await expiresAt();
    // Another sign-in of this account between its write of the facts and its commit: the link's row locked for a write.
    const lock = 'select id from social_associations where id = $1 for no key update';
    await signsInWhileHeld(lock, link.id, () => signInExpiringIn(7_200), user.id);
    // Its facts were not written (the other transaction's stand for them); the next sign-in's are.
    expect(await expiresAt()).toBe(before);
    expect((await signInExpiringIn(9_000)).status).toBe(200);
    expect(await expiresAt()).toBeGreaterThan(before);
  });

  it('a link removed while an associate waits for the user: the associate links it again (not "already linked")', async () => {
    const { user, link } = await linkedFacebookUser();
    // An unlink under way: the user's row taken first (as core/unlink.ts does), the link deleted, not yet committed.
    // The associate waits for the user's row (its statement's snapshot predates the delete): then the unlink commits.
    const again = (await stack.emulator.mintFacebookToken({ user: { id: link.uid } })).access_token;
    const answer = await answerAcrossCommit(unlinking(user.id, link.id), () =>
      call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: again },
      }),
    );
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.association.created).toBe(true);
    const links = await stack.db.selectFrom('social_associations').select('id').where('uid', '=', link.uid).execute();
    expect(links).toHaveLength(1);
  });

  it('a link removed while a sign-in waits for the user: the account is unknown (404), no session', async () => {
    const { user, link } = await linkedFacebookUser();
    const sessionsOf = async () =>
      (await stack.db.selectFrom('sessions').select('id').where('user_id', '=', user.id).execute()).length;
    const before = await sessionsOf();
    // An unlink under way (as core/unlink.ts: the user's row taken first, the link deleted), not yet committed. The
    // sign-in's statement waits for the user's row (its snapshot predates the delete); then the unlink commits.
    const token = (await stack.emulator.mintFacebookToken({ user: { id: link.uid } })).access_token;
    const answer = await answerAcrossCommit(unlinking(user.id, link.id), () =>
      call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: token } }),
    );
    expect(answer.status, JSON.stringify(answer.body)).toBe(404);
    expect(answer.body.code).toBe('user_not_found');
    expect(await sessionsOf()).toBe(before);
  });

  it("a provider ending the account's sessions while a sign-in waits for the user: its older ID token is refused", async () => {
    const user = await guest(stack.api);
    const first = await stack.emulator.mintIdToken('google');
    const linked = await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: first.id_token },
    });
    expect(linked.status).toBe(200);
    const link = await stack.db
      .selectFrom('social_associations')
      .select('id')
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    // An ID token issued a minute ago: older than the provider's notice below.
    const older = await stack.emulator.mintIdToken('google', { sub: first.sub, iat_offset: -60 });
    // The notice under way (as core/provider-callbacks.ts heldLink, then endSessions): the user's row, then the link's,
    // taken first; the link's sign_in_after set; not yet committed. The sign-in waits for the user's row.
    const answer = await answerAcrossCommit(
      [
        ['select id from users where id = $1 for update', [user.id]],
        ['select id from social_associations where id = $1 for update', [link.id]],
        ['update social_associations set sign_in_after = now(), updated_at = now() where id = $1', [link.id]],
      ],
      () => call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: older.id_token } }),
    );
    expect(answer.status, JSON.stringify(answer.body)).toBe(400);
    expect(answer.body.code).toBe('invalid_token');
  });

  it('64 concurrent sign-ins of one user all sign in, each with its own session', async () => {
    const { user, signIn } = await linkedFacebookUser();
    const answers = await Promise.all(Array.from({ length: 64 }, () => signIn()));
    expect(answers.map((answer) => answer.status)).toEqual(answers.map(() => 200));
    const sessions = await stack.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    // The guest's own session, the link's sign-in none, and 64 more.
    expect(Number(sessions.n)).toBe(65);
  });
});

/** How many other sessions of this database wait for a lock (an associate queued behind `client`'s transaction). */
/** How many backends wait for a lock `client`'s transaction holds. */
async function waitingOnLocks(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    `select count(*) as n from pg_stat_activity where pg_backend_pid() = any(pg_blocking_pids(pid))`,
  );
  return Number(rows[0]!.n);
}

/** Polls until `condition` holds (the test's own timeout bounds it; no wall-clock budget of its own). */
async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}
