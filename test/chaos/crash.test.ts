import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/database.js';
import {
  api,
  newGuest,
  postgresAvailable,
  runBounded,
  runCli,
  spawnServer,
  startWorld,
  warnIfSkipped,
  type ChaosWorld,
  type Env,
  type ServerProcess,
} from './harness.js';

warnIfSkipped('test/chaos/crash.test.ts');

const REQUESTS = 300; // associates per crash run, each by a new guest with a new Facebook account
const CONCURRENCY = 20;
const KILL_AFTER = 100; // answers before kill -9
const RUNS = 3;

// kill -9 in the middle of a load of links: what the server answered 200 must be durable (it answers
// after COMMIT), what it did not finish must vanish whole (one transaction), and the database must take
// new work from a restarted process.
describe.skipIf(!postgresAvailable)('kill -9 during a load of associates (PostgreSQL)', () => {
  let world: ChaosWorld;
  let db: Kysely<Database>;
  let env: Env;

  beforeAll(async () => {
    world = await startWorld();
    const url = await world.newDatabase();
    db = world.open(url);
    env = { ...world.serverEnv, DATABASE_URL: url };
    const migrated = await runCli(['migrate'], env);
    expect(migrated.code, migrated.output).toBe(0);
  });
  afterAll(async () => {
    await world?.close();
  });

  it(`keeps every answered link through ${RUNS} crashes and takes new work after each restart`, async () => {
    let server: ServerProcess = await spawnServer(env);
    for (let run = 1; run <= RUNS; run++) {
      // What each task did, by index: the guest it created, the Facebook account it linked, the answer.
      const tasks: Array<{ userId?: number; uid: string; token: string; status?: number; lost?: boolean }> = [];
      for (let i = 0; i < REQUESTS; i++) {
        const fb = await world.emulator.mintFacebookToken();
        tasks.push({ uid: fb.user_id, token: fb.access_token });
      }
      let answered = 0;
      let killed = false;
      const failures: string[] = [];
      const victim = server;

      await runBounded(
        REQUESTS,
        CONCURRENCY,
        async (i) => {
          const task = tasks[i]!;
          try {
            const user = await newGuest(victim.url);
            task.userId = user.id;
            const answer = await api(victim.url, 'POST', '/api/associate/facebook/', {
              token: user.access_token,
              body: { access_token: task.token },
            });
            task.status = answer.status;
            if (++answered === KILL_AFTER) {
              killed = true;
              victim.kill('SIGKILL');
            }
          } catch (error) {
            // The connection died with the process; before the kill it would be a bug of its own.
            if (!killed) failures.push(String((error as Error).cause ?? error));
            task.lost = true;
          }
        },
        () => killed,
      );
      expect((await victim.exited).signal).toBe('SIGKILL');

      // Restart on the same database (a new port: no stale keep-alive connection to the dead one).
      server = await spawnServer(env);

      const ok = tasks.filter((task) => task.status === 200);
      const lost = tasks.filter((task) => task.lost);
      const answeredOther = tasks.filter((task) => task.status !== undefined && task.status !== 200);
      expect(answeredOther.map((task) => task.status)).toEqual([]); // distinct users and accounts: every answer is a success
      expect(failures).toEqual([]);
      expect(lost.length).toBeLessThanOrEqual(CONCURRENCY); // only what was in flight at the kill

      const byUid = new Map(tasks.map((task) => [task.uid, task]));
      const links = await db
        .selectFrom('social_associations')
        .select(['user_id', 'provider', 'uid'])
        .where('provider', '=', 'facebook')
        .where('uid', 'in', [...byUid.keys()])
        .execute();
      const linkOf = new Map(links.map((link) => [link.uid, link]));

      // Every 200 survived, exactly as answered.
      for (const task of ok)
        expect(linkOf.get(task.uid), `answered link of uid ${task.uid}`).toEqual({
          user_id: task.userId,
          provider: 'facebook',
          uid: task.uid,
        });
      // Every link found was asked for by a task that got as far as sending it, for the user it created.
      for (const link of links) {
        const task = byUid.get(link.uid)!;
        expect(task.status === 200 || task.lost, `link of uid ${link.uid} without a request`).toBe(true);
        if (task.userId !== undefined) expect(link.user_id).toBe(task.userId);
      }
      expect(links.length).toBeLessThanOrEqual(ok.length + lost.length);

      // Whole database: no link without its user, no (provider, uid) twice.
      const orphans = await db
        .selectFrom('social_associations')
        .leftJoin('users', 'users.id', 'social_associations.user_id')
        .select('social_associations.id')
        .where('users.id', 'is', null)
        .execute();
      expect(orphans).toEqual([]);
      const duplicates = await sql<{ provider: string; uid: string }>`
        select provider, uid from social_associations group by provider, uid having count(*) > 1`.execute(db);
      expect(duplicates.rows).toEqual([]);

      // The restarted process takes new work on that database.
      const user = await newGuest(server.url);
      const fb = await world.emulator.mintFacebookToken();
      const fresh = await api(server.url, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: fb.access_token },
      });
      expect(fresh.status).toBe(200);
      expect(fresh.body.association.created).toBe(true);

      console.log(
        `crash run ${run}/${RUNS}: ${answered} associates answered (${ok.length} × 200) before kill -9, ` +
          `${lost.length} lost connections, ${links.length} links found after restart (all ${ok.length} answered ones present, ` +
          `${links.length - ok.length} committed but unanswered)`,
      );
    }
    server.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  });
});
