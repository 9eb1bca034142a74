import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { serverEnvFor } from '../src/config/dev.js';
import { createServices } from '../src/core/services.js';
import { idAmong, migrateToLatest, openDatabase } from '../src/store/database.js';
import { endedBefore } from '../src/store/sessions.js';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, expectError, freshDatabase, guest, startStack, type Stack } from './helpers.js';

// Sessions and refresh tokens are forgotten SOCIAL_LINK_SESSION_RETENTION_DAYS after they ended (the sweep of
// core/services.ts calls purgeEnded every minute): a row per sign-in and one per refresh, tables that would otherwise
// only grow. A session ends when its newest refresh token expires (each refresh moves it) or when it is revoked.

describe.each(databaseKinds())('session retention on %s', (kind) => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let storage: Storage;
  let userId: number;
  beforeAll(async () => {
    database = await freshDatabase(kind);
    const db = openDatabase(database.url);
    await migrateToLatest(db);
    storage = new Storage(db);
    userId = (await storage.users.create(`retention_${kind}`, null)).id;
  });
  afterAll(async () => {
    await storage.db.destroy();
    await database.drop();
  });

  const day = 86_400_000;
  const at = (days: number) => new Date(Date.now() + days * day).toISOString();
  const hash = () => randomUUID().replaceAll('-', '').padEnd(64, '0');
  /** A session whose first refresh token expires `expiresInDays` from now (negative: expired). */
  async function session(expiresInDays: number, refreshExpiresAt = at(expiresInDays)): Promise<string> {
    const id = randomUUID();
    await storage.sessions.start(
      userId,
      { id, refreshTokenHash: hash(), refreshExpiresAt },
      { event: 'social_sign_in', userId },
      null,
    );
    return id;
  }
  const endOf = async (id: string) => {
    const row = await storage.db.selectFrom('sessions').select('expires_at').where('id', '=', id).executeTakeFirst();
    return row && (row.expires_at === null ? null : new Date(row.expires_at).toISOString());
  };
  const tokensOf = async (id: string) =>
    (await storage.db.selectFrom('refresh_tokens').select('id').where('session_id', '=', id).execute()).length;

  it('a session ends when its newest refresh token expires (each rotation moves it), or when it is revoked', async () => {
    const first = at(30);
    const id = await session(30, first);
    expect(await endOf(id)).toBe(first);
    // A rotation that moves the end by less than an hour leaves the row alone (written once an hour, not at each).
    await storage.sessions.addRefreshToken(id, hash(), new Date(Date.parse(first) + 10 * 60_000).toISOString());
    expect(await endOf(id)).toBe(first);
    const later = at(45);
    await storage.sessions.addRefreshToken(id, hash(), later);
    expect(await endOf(id)).toBe(later);
    const before = Date.now();
    await storage.sessions.revoke(id, 'logout');
    expect(Date.parse((await endOf(id))!)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse((await endOf(id))!)).toBeLessThanOrEqual(Date.now() + 1000);
  });

  it('forgets sessions ended before the retention, with their tokens, and expired tokens of live sessions', async () => {
    const ended = await session(-40);
    const endedRecently = await session(-5);
    const live = await session(20);
    // A live session rotated long ago: its first token expired 40 days ago; its newest is good for 20 more days.
    const rotated = await session(-40);
    await storage.sessions.addRefreshToken(rotated, hash(), at(20));
    const revokedLongAgo = await session(20);
    await storage.sessions.revoke(revokedLongAgo, 'logout');
    await storage.db
      .updateTable('sessions')
      .set({ revoked_at: at(-31), expires_at: at(-31) })
      .where('id', '=', revokedLongAgo)
      .execute();
    const revokedRecently = await session(20);
    await storage.sessions.revoke(revokedRecently, 'logout');

    const purged = await storage.sessions.purgeEnded(at(-30));
    expect(purged.sessions).toBe(2);
    for (const id of [ended, revokedLongAgo]) {
      expect(await endOf(id)).toBeUndefined();
      expect(await tokensOf(id)).toBe(0);
    }
    for (const id of [endedRecently, live, revokedRecently]) expect(await tokensOf(id)).toBe(1);
    expect(await tokensOf(rotated)).toBe(1);
    expect(purged.refreshTokens).toBe(2); // the ended session's, and the rotated one's first
    // Nothing left to forget: another sweep forgets nothing.
    expect(await storage.sessions.purgeEnded(at(-30))).toEqual({ sessions: 0, refreshTokens: 0 });
  });

  it('gives sessions from before migration 0027 their end, then forgets them as the others', async () => {
    const old = await session(-40);
    const oldRevoked = await session(20);
    await storage.sessions.revoke(oldRevoked, 'logout');
    const liveUntil = at(10);
    const oldLive = await session(10, liveUntil);
    const oldWithoutTokens = await session(-40);
    await storage.db.deleteFrom('refresh_tokens').where('session_id', '=', oldWithoutTokens).execute();
    await storage.db
      .updateTable('sessions')
      .set({ expires_at: null, created_at: at(-60) })
      .where('id', 'in', [old, oldRevoked, oldLive, oldWithoutTokens])
      .execute();
    await storage.db
      .updateTable('sessions')
      .set({ revoked_at: at(-35) })
      .where('id', '=', oldRevoked)
      .execute();
    await storage.sessions.purgeEnded(at(-30));
    for (const id of [old, oldRevoked, oldWithoutTokens]) expect(await endOf(id)).toBeUndefined();
    // Its refresh token's expiry: kept, and now known.
    expect(await endOf(oldLive)).toBe(liveUntil);
  });

  it('a revocation ends a session now, or when it ended if earlier; a rotation after it moves nothing', async () => {
    const other = (await storage.users.create(`revoked_${kind}`, null)).id;
    const start = async (refreshExpiresAt: string) => {
      const id = randomUUID();
      await storage.sessions.start(
        other,
        { id, refreshTokenHash: hash(), refreshExpiresAt },
        { event: 'social_sign_in', userId: other },
        null,
      );
      return id;
    };
    const live = await start(at(20));
    const expiredAt = at(-5);
    const expired = await start(expiredAt);
    const before = Date.now();
    // As an operator's disable or a provider's event does: every session of the user.
    expect(await storage.sessions.revokeAllOfUser(other, 'user_disabled')).toBe(2);
    const ended = Date.parse((await endOf(live))!);
    expect(ended).toBeGreaterThanOrEqual(before - 1000);
    expect(ended).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await endOf(expired)).toBe(expiredAt);
    // A rotation that raced the revocation (its token was read before it) leaves the revoked session's end.
    await storage.sessions.addRefreshToken(live, hash(), at(30));
    expect(Date.parse((await endOf(live))!)).toBe(ended);
  });

  it('forgets in batches until none is left', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await session(-40));
    expect((await storage.sessions.purgeEnded(at(-30), 2)).sessions).toBe(5);
    for (const id of ids) expect(await endOf(id)).toBeUndefined();
  });

  it('finds what to forget through the index of its end, the oldest first: no scan of the table', async () => {
    // Planned at each run (database.ts PLANNED_EACH_RUN), on tables never analyzed. PostgreSQL rightly scans and sorts
    // a table of a few thousand rows; the plan that matters is the one over a large table: 100,000 sessions here.
    if (kind === 'postgres')
      await sql`
        with s as (
          insert into sessions (id, user_id, created_at, expires_at)
          select gen_random_uuid()::text, ${userId}, now(), now() + (g % 90 - 60) * interval '1 day'
          from generate_series(1, 100000) g returning id, expires_at)
        insert into refresh_tokens (session_id, token_hash, created_at, expires_at)
        select id, md5(id), now(), expires_at from s`.execute(storage.db);
    for (const table of ['sessions', 'refresh_tokens'] as const) {
      const ids = endedBefore(table, at(-30), 1000);
      const compiled = sql`delete from ${sql.table(table)} where ${idAmong(kind === 'postgres', ids)}`.compile(
        storage.db,
      );
      const explain = kind === 'postgres' ? 'explain ' : 'explain query plan ';
      const rows = await storage.db.executeQuery<Record<string, unknown>>({ ...compiled, sql: explain + compiled.sql });
      const plan = rows.rows.map((row) => String(row['QUERY PLAN'] ?? row.detail)).join('\n');
      expect(plan).toMatch(new RegExp(`${table}_expires_at_idx`));
      expect(plan).not.toMatch(/Seq Scan|^SCAN \w+$|TEMP B-TREE|Sort/m);
    }
  });
});

describe.each(databaseKinds())('the server forgets ended sessions, on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  /** The server's services (their sweep runs every minute by itself): the same configuration and database. */
  const servicesWith = (retentionDays: string) => {
    const config = loadConfig({
      ...serverEnvFor(stack.emulatorUrl, stack.apps),
      DATABASE_URL: stack.databaseUrl,
      SOCIAL_LINK_SESSION_RETENTION_DAYS: retentionDays,
    });
    return createServices({ config, db: stack.db, log: { warn: () => {} } });
  };
  /** The sweep, run now. */
  const sweep = async (retentionDays: string) => {
    const services = servicesWith(retentionDays);
    await services.sweep();
    await services.close();
  };

  it('runs one sweep at a time: asked while one runs, it answers that one', async () => {
    const services = servicesWith('30');
    const first = services.sweep();
    expect(services.sweep()).toBe(first);
    await first;
    const next = services.sweep();
    expect(next).not.toBe(first);
    await next;
    await services.close();
  });
  const endOf = async (userId: number) =>
    (await stack.db.selectFrom('sessions').select('expires_at').where('user_id', '=', userId).execute()).map((row) =>
      row.expires_at === null ? null : new Date(row.expires_at).getTime(),
    );

  it('a refresh moves its session’s end; SOCIAL_LINK_SESSION_RETENTION_DAYS after it ended, the session is gone', async () => {
    const user = await guest(stack.api);
    // Signed in two hours ago: a refresh now moves the end (by more than its step of an hour).
    await stack.db
      .updateTable('sessions')
      .set({ expires_at: new Date(Date.now() + 30 * 86_400_000 - 7_200_000).toISOString() })
      .where('user_id', '=', user.id)
      .execute();
    const [started] = await endOf(user.id);
    const refreshed = await call(stack.api, 'POST', '/api/token/refresh/', {
      body: { refresh_token: user.refresh_token },
    });
    expect(refreshed.status).toBe(200);
    const [moved] = await endOf(user.id);
    expect(moved).toBeGreaterThan(started!);
    // Ended 11 days ago (as if its last token had expired then).
    const elevenDaysAgo = new Date(Date.now() - 11 * 86_400_000).toISOString();
    const sessionIds = stack.db.selectFrom('sessions').select('id').where('user_id', '=', user.id);
    await stack.db.updateTable('sessions').set({ expires_at: elevenDaysAgo }).where('user_id', '=', user.id).execute();
    await stack.db
      .updateTable('refresh_tokens')
      .set({ expires_at: elevenDaysAgo })
      .where('session_id', 'in', sessionIds)
      .execute();
    // Within the retention (30 days): kept, and the rotated token coming back is still seen for what it is.
    await sweep('30');
    expect(await endOf(user.id)).toHaveLength(1);
    expectError(
      await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
      401,
      'refresh_token_reused',
    );
    // Past it (10 days): forgotten, with its refresh tokens; they are now unknown.
    await sweep('10');
    expect(await endOf(user.id)).toEqual([]);
    expect(
      await stack.db.selectFrom('refresh_tokens').select('id').where('session_id', 'in', sessionIds).execute(),
    ).toEqual([]);
    for (const token of [user.refresh_token, refreshed.body.refresh_token])
      expectError(
        await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: token } }),
        401,
        'invalid_refresh_token',
      );
  });
});
