import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/database.js';
import { migrationProvider } from '../../src/store/migrations.js';
import {
  api,
  newGuest,
  postgresAvailable,
  runCli,
  spawnServer,
  startWorld,
  warnIfSkipped,
  type ChaosWorld,
  type ServerProcess,
} from './harness.js';

warnIfSkipped('test/chaos/races.test.ts');

/** The session id (`sid`) of one of our access tokens, read without verifying (the server verified it). */
const sessionOf = (accessToken: string): string =>
  JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()).sid;

// Two server processes on ONE PostgreSQL database: only the database can decide races between them,
// and nothing a process keeps in memory may matter (any instance must serve any client).
describe.skipIf(!postgresAvailable)('two server processes on one PostgreSQL database', () => {
  let world: ChaosWorld;
  let db: Kysely<Database>;
  let a: ServerProcess;
  let b: ServerProcess;
  const either = (i: number) => (i % 2 === 0 ? a : b).url;

  beforeAll(async () => {
    world = await startWorld();
    const url = await world.newDatabase();
    db = world.open(url);
    const env = { ...world.serverEnv, DATABASE_URL: url };
    const migrated = await runCli(['migrate'], env);
    expect(migrated.code, migrated.output).toBe(0);
    [a, b] = await Promise.all([spawnServer(env), spawnServer(env)]);
  });
  afterAll(async () => {
    await world?.close();
  });

  // One social account per round, 50 different users, half on each process, all at once.
  const rounds = [
    {
      provider: 'facebook',
      mint: async () => {
        const fb = await world.emulator.mintFacebookToken();
        return { uid: fb.user_id, body: { access_token: fb.access_token } };
      },
    },
    {
      provider: 'twitter',
      mint: async () => {
        const tw = await world.emulator.mintTwitterToken();
        return {
          uid: tw.user_id,
          body: { access_token: tw.access_token, access_token_secret: tw.access_token_secret },
        };
      },
    },
    {
      provider: 'github',
      mint: async () => {
        const gh = await world.emulator.mintGithubToken();
        return { uid: String(gh.user_id), body: { access_token: gh.access_token } };
      },
    },
    {
      provider: 'facebook',
      mint: async () => {
        const fb = await world.emulator.mintFacebookToken();
        return { uid: fb.user_id, body: { access_token: fb.access_token } };
      },
    },
  ];

  it.each(rounds.map((round, i) => [`${round.provider} #${i + 1}`, round] as const))(
    'concurrent associates of one %s account by 50 users on both processes leave exactly one link',
    async (_name, round) => {
      const users = await Promise.all(Array.from({ length: 50 }, (_, i) => newGuest(either(i))));
      const account = await round.mint();
      const answers = await Promise.all(
        users.map((user, i) =>
          api(either(i), 'POST', `/api/associate/${round.provider}/`, { token: user.access_token, body: account.body }),
        ),
      );

      const statuses = answers.map(
        (answer) => `${answer.status} ${answer.body?.code ?? answer.body?.association?.created}`,
      );
      const winners = answers.flatMap((answer, i) => (answer.status === 200 ? [i] : []));
      expect(winners, statuses.join(', ')).toHaveLength(1);
      expect(answers[winners[0]!]!.body.association).toEqual({
        provider: round.provider,
        uid: account.uid,
        created: true,
      });
      const refused = answers.filter((answer) => answer.status === 409 && answer.body?.code === 'already_associated');
      expect(refused.length, statuses.join(', ')).toBe(users.length - 1);

      const links = await db
        .selectFrom('social_associations')
        .selectAll()
        .where('provider', '=', round.provider)
        .where('uid', '=', account.uid)
        .execute();
      expect(links).toHaveLength(1);
      expect(links[0]!.user_id).toBe(users[winners[0]!]!.id);
    },
  );

  it('concurrent refreshes of one refresh token on both processes give at most one new pair', async () => {
    let totalWinners = 0;
    for (let round = 0; round < 5; round++) {
      const user = await newGuest(either(round));
      const sid = sessionOf(user.access_token);
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          api(either(i + round), 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
        ),
      );

      const winners = answers.filter((answer) => answer.status === 200);
      const statuses = answers.map((answer) => `${answer.status} ${answer.body?.code ?? ''}`).join(', ');
      expect(winners.length, statuses).toBeLessThanOrEqual(1);
      for (const answer of answers) {
        if (answer.status === 200) continue;
        expect(answer.status, statuses).toBe(401);
        expect(['refresh_token_reused', 'invalid_refresh_token'], statuses).toContain(answer.body?.code);
        expect(typeof answer.body?.message).toBe('string');
      }
      totalWinners += winners.length;

      // The session holds its first token and at most the one it was rotated to.
      const tokens = await db
        .selectFrom('refresh_tokens')
        .select(['id', 'used_at'])
        .where('session_id', '=', sid)
        .execute();
      expect(tokens.length - 1, statuses).toBe(winners.length);
      // A replay among the losers revokes the whole session: the winner's new pair is dead too.
      if (answers.some((answer) => answer.body?.code === 'refresh_token_reused')) {
        const session = await db
          .selectFrom('sessions')
          .select(['revoked_at', 'revoked_reason'])
          .where('id', '=', sid)
          .executeTakeFirstOrThrow();
        expect(session.revoked_at).not.toBeNull();
        if (winners[0])
          expect((await api(a.url, 'GET', '/api/me/', { token: winners[0].body.access_token })).status).toBe(401);
      }
    }
    console.log(
      `refresh race: 5 rounds of 20 concurrent refreshes, ${totalWinners} rotation(s) in all (at most one per round)`,
    );
  });

  // Account deletion racing the user's other writes: each transaction takes the user's row first, so they
  // take turns (no deadlock), and a write that finds its user gone is 401, never a foreign-key 500.
  const TRIALS = 50;
  const deletionRaces = [
    {
      name: 'a refresh of its session',
      other: async (base: string, user: Awaited<ReturnType<typeof newGuest>>) =>
        api(base, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } }),
      expected: ['200', '401 invalid_refresh_token', '401 refresh_token_reused'],
    },
    {
      name: 'a link of a social account',
      other: async (base: string, user: Awaited<ReturnType<typeof newGuest>>, fb: { access_token: string }) =>
        api(base, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: fb.access_token },
        }),
      expected: ['200', '401 invalid_access_token'],
      // The link asks Facebook first: the deletion starts a little later now and then, so both orders happen.
      deleteAfterMs: (trial: number) => (trial % 3) * 8,
    },
    {
      name: 'a sign-in with its linked account',
      prepare: async (base: string, user: Awaited<ReturnType<typeof newGuest>>, fb: { access_token: string }) => {
        expect(
          (
            await api(base, 'POST', '/api/associate/facebook/', {
              token: user.access_token,
              body: { access_token: fb.access_token },
            })
          ).status,
        ).toBe(200);
      },
      other: async (base: string, _user: Awaited<ReturnType<typeof newGuest>>, fb: { access_token: string }) =>
        api(base, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } }),
      expected: ['200', '404 user_not_found'],
      deleteAfterMs: (trial: number) => (trial % 3) * 4,
    },
  ];

  it.each(deletionRaces.map((race) => [race.name, race] as const))(
    `DELETE /api/me/ racing %s: ${TRIALS} trials, no 500`,
    async (_name, race) => {
      const seen = new Map<string, number>();
      for (let trial = 0; trial < TRIALS; trial++) {
        const user = await newGuest(either(trial));
        const fb = await world.emulator.mintFacebookToken();
        await race.prepare?.(either(trial), user, fb);
        const deletion = async () => {
          await new Promise((resolve) => setTimeout(resolve, race.deleteAfterMs?.(trial) ?? 0));
          return api(either(trial), 'DELETE', '/api/me/', { token: user.access_token });
        };
        const [deleted, other] = await Promise.all([deletion(), race.other(either(trial + 1), user, fb)]);
        const outcome = `${other.status}${other.status === 200 ? '' : ` ${other.body?.code}`}`;
        seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
        expect(deleted.status, JSON.stringify(deleted.body)).toBe(204);
        expect(race.expected, `${outcome}: ${JSON.stringify(other.body)}`).toContain(outcome);
        // Whatever the order, nothing of the user is left.
        expect(await db.selectFrom('users').select('id').where('id', '=', user.id).executeTakeFirst()).toBeUndefined();
        expect(
          await db.selectFrom('social_associations').select('id').where('user_id', '=', user.id).executeTakeFirst(),
        ).toBeUndefined();
      }
      console.log(`deletion racing ${race.name}: ${[...seen].map(([outcome, n]) => `${n} × ${outcome}`).join(', ')}`);
    },
  );

  it('is stateless: tokens of process A work on B, and a logout on B ends the session on A at once', async () => {
    const user = await newGuest(a.url);
    const me = await api(b.url, 'GET', '/api/me/', { token: user.access_token });
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(user.id);

    const refreshed = await api(b.url, 'POST', '/api/token/refresh/', { body: { refresh_token: user.refresh_token } });
    expect(refreshed.status).toBe(200);
    const pair = refreshed.body as { access_token: string; refresh_token: string };
    expect((await api(a.url, 'GET', '/api/me/', { token: pair.access_token })).body.id).toBe(user.id);

    // A social account linked through A signs the user in on B.
    const fb = await world.emulator.mintFacebookToken();
    expect(
      (
        await api(a.url, 'POST', '/api/associate/facebook/', {
          token: pair.access_token,
          body: { access_token: fb.access_token },
        })
      ).status,
    ).toBe(200);
    const signIn = await api(b.url, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    expect(signIn.status).toBe(200);
    expect(signIn.body.id).toBe(user.id);

    expect((await api(b.url, 'POST', '/api/logout/', { token: pair.access_token })).status).toBe(204);
    const after = await api(a.url, 'GET', '/api/me/', { token: pair.access_token });
    expect(after.status).toBe(401);
    expect(after.body.code).toBe('invalid_access_token');
    const refreshAfter = await api(a.url, 'POST', '/api/token/refresh/', {
      body: { refresh_token: pair.refresh_token },
    });
    expect(refreshAfter.status).toBe(401);
    expect(refreshAfter.body.code).toBe('invalid_refresh_token');
    // The other session (the sign-in on B) is not affected.
    expect((await api(a.url, 'GET', '/api/me/', { token: signIn.body.access_token })).status).toBe(200);
  });

  it('two `serve` started at the same moment on a fresh database both migrate, start and answer', async () => {
    for (let round = 1; round <= 3; round++) {
      const url = await world.newDatabase();
      const env = { ...world.serverEnv, DATABASE_URL: url };
      const [first, second] = await Promise.all([spawnServer(env), spawnServer(env)]);
      try {
        const [one, two] = await Promise.all([newGuest(first.url), newGuest(second.url)]);
        expect((await api(second.url, 'GET', '/api/me/', { token: one.access_token })).body.id).toBe(one.id);
        expect((await api(first.url, 'GET', '/api/me/', { token: two.access_token })).body.id).toBe(two.id);

        // Every migration applied exactly once.
        const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
          world.open(url),
        );
        expect(applied.rows.map((row) => row.name)).toEqual(
          Object.keys(await migrationProvider.getMigrations()).sort(),
        );
      } finally {
        first.kill('SIGKILL');
        second.kill('SIGKILL');
        await Promise.all([first.exited, second.exited]);
      }
    }
  });
});
