// `npm run bench:pg-driver`: which PostgreSQL client should the server use? The database work of a sign-in of a
// linked user, exactly the statements the server sends (store/ code, not copies): BEGIN, the link read with its
// user, both rows held, the session's one statement (last login, session, refresh token, audit event), COMMIT. Run in this process through Kysely with each client in turn, at
// BENCH_PG_CONCURRENCY (16 and 64) sign-ins at a time, over 32 users, on a throwaway database of BENCH_DATABASE_URL's
// server. Reports sign-ins a second and this process's CPU per sign-in (the client's cost: what the server pays),
// each round's, and the ratio postgres.js ÷ node-postgres.
//
// Through node-postgres that is 3 round trips (BEGIN goes out with the first statement: store/database.ts); until
// d3ba74c the link was read before the transaction too (4), which the figures below of earlier dates include.
//
//   node-postgres (pg): the server's client, as it opens it (store/database.ts: a named statement per SQL text).
//   postgres.js through kysely-postgres-js, the same pool size: as the dialect runs it (each query by `unsafe()`, which
//   postpones nothing but prepares nothing either: an unnamed statement parsed every time), and with each query
//   prepared (`unsafe(text, values, { prepare: true })`, as postgres.js's tagged queries are by default).
//   node-postgres over the Unix socket (BENCH_PG_SOCKET, /var/run/postgresql when it is there): the same client,
//   for a server on the same machine (DATABASE_URL postgres://user@/db?host=/var/run/postgresql).
//
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run bench:pg-driver
//   BENCH_PG_ROUNDS=3 BENCH_PG_SECONDS=8 …                     # rounds and seconds per turn (2 and 6 by default)
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Kysely } from 'kysely';
import { PostgresJSDialect } from 'kysely-postgres-js';
import postgres from 'postgres';
import { migrateToLatest, openDatabase, type Database } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';
import { runBench, treeCpuSeconds } from './processes.js';
import { throwawayPostgres } from './throwaway-database.js';

const serverUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const rounds = Number(process.env.BENCH_PG_ROUNDS ?? 2);
const seconds = Number(process.env.BENCH_PG_SECONDS ?? 6);
const concurrencies = (process.env.BENCH_PG_CONCURRENCY ?? '16,64').split(',').map(Number);
const socketDir =
  process.env.BENCH_PG_SOCKET ?? (existsSync('/var/run/postgresql/.s.PGSQL.5432') ? '/var/run/postgresql' : undefined);
const USERS = 32;
/** store/database.ts's pool size. */
const POOL_SIZE = 20;

let dropDatabase: (() => Promise<void>) | undefined;
const open: Array<Kysely<Database>> = [];

/** One sign-in of a linked user: the server's statements, through store/. */
async function signIn(storage: Storage, uid: string): Promise<void> {
  await storage.transaction(async (trx) => {
    const held = await trx.links.holdWithUser('facebook', uid);
    if (!held) throw new Error(`no link for ${uid}`);
    await trx.sessions.start(
      held.user.id,
      {
        id: randomBytes(16).toString('base64url'),
        refreshTokenHash: randomBytes(32).toString('base64url'),
        refreshExpiresAt: new Date(Date.now() + 86_400_000).toISOString(),
      },
      { event: 'social_sign_in', userId: held.user.id, provider: 'facebook', uid },
      { ip: '127.0.0.1', userAgent: 'bench' },
    );
  });
}

/**
 * `concurrency` loops signing in for `seconds`: sign-ins a second, CPU µs per sign-in of this process (the client's
 * cost) and of the PostgreSQL server's processes (`serverPid` and its children, those that exited too; 0 when it runs
 * elsewhere).
 */
async function turn(storage: Storage, uids: string[], concurrency: number, forSeconds: number, serverPid?: number) {
  const serverCpu = () => (serverPid ? treeCpuSeconds(serverPid) : 0);
  let done = 0;
  const until = performance.now() + forSeconds * 1000;
  const cpu = process.cpuUsage();
  const serverBefore = serverCpu();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      for (let i = loop; performance.now() < until; i += concurrency) {
        await signIn(storage, uids[i % uids.length]!);
        done++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return {
    perSecond: done / elapsed,
    cpuUs: (used.user + used.system) / done,
    serverCpuUs: ((serverCpu() - serverBefore) * 1e6) / done,
  };
}

async function main(): Promise<void> {
  const database = await throwawayPostgres(serverUrl, 'social_link_bench_driver');
  dropDatabase = database.drop;
  const withPg = openDatabase(database.url);
  open.push(withPg);
  await migrateToLatest(withPg);
  const postgresJs = (prepare: boolean) => {
    const sql = postgres(database.url, { max: POOL_SIZE, onnotice: () => {} });
    // The dialect calls only unsafe() and release() on a reserved connection.
    const reserve = async () => {
      const connection = await sql.reserve();
      if (!prepare) return connection;
      return {
        unsafe: (text: string, values: postgres.ParameterOrJSON<never>[]) =>
          connection.unsafe(text, values, { prepare: true }),
        release: () => connection.release(),
      };
    };
    const withReserve = new Proxy(sql, {
      get: (target, key) => (key === 'reserve' ? reserve : Reflect.get(target, key)),
    });
    const db = new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: withReserve }) });
    open.push(db);
    return db;
  };
  const clients = [
    { name: 'node-postgres', storage: new Storage(withPg) },
    { name: 'postgres.js', storage: new Storage(postgresJs(false)) },
    { name: 'postgres.js, prepared', storage: new Storage(postgresJs(true)) },
  ];
  if (socketDir) {
    const overSocket = new URL(database.url);
    overSocket.host = '';
    overSocket.searchParams.set('host', socketDir);
    const withSocket = openDatabase(overSocket.toString());
    open.push(withSocket);
    clients.push({ name: 'node-postgres, Unix socket', storage: new Storage(withSocket) });
  }

  // 32 users, each with a Facebook link (store/ code, through node-postgres).
  const seeding = new Storage(withPg);
  const uids: string[] = [];
  for (let i = 0; i < USERS; i++) {
    const user = await seeding.users.create(`bench-${i}`, null);
    const uid = String(10_000_000 + i);
    await seeding.links.insert(user.id, 'facebook', uid, { id: uid }, null);
    uids.push(uid);
  }
  // Both clients must do the same work: one sign-in each, checked in the database.
  for (const client of clients) await signIn(client.storage, uids[0]!);
  const sessions = await withPg
    .selectFrom('sessions')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .execute();
  if (Number(sessions[0]!.n) !== clients.length) throw new Error(`expected ${clients.length} sessions`);

  console.log(
    `\nPostgreSQL sign-in statements (BEGIN, holdWithUser, the session's statement, COMMIT), ${USERS} users, ` +
      `pool ${POOL_SIZE}, ${rounds} rounds × ${seconds} s per client, in turns (each after 2 s of warm-up)\n`,
  );
  console.log(
    '| concurrency | client | sign-ins/s (each round) | client CPU µs per sign-in | PostgreSQL CPU µs per sign-in |',
  );
  console.log('| ---: | --- | --- | --- | --- |');
  const summary: string[] = [];
  for (const concurrency of concurrencies) {
    const results = new Map(
      clients.map((client) => [client.name, [] as Array<{ perSecond: number; cpuUs: number; serverCpuUs: number }>]),
    );
    for (let round = 0; round < rounds; round++)
      for (const client of round % 2 === 0 ? clients : [...clients].reverse()) {
        // Warmed again just before: node-postgres closes connections idle for 10 s (pg.Pool's default), so a client
        // comes back from the others' turns with new connections, its statements not yet prepared on them.
        await turn(client.storage, uids, concurrency, 2);
        results.get(client.name)!.push(await turn(client.storage, uids, concurrency, seconds, database.serverPid));
      }
    for (const [name, runs] of results)
      console.log(
        `| ${concurrency} | ${name} | ${runs.map((r) => r.perSecond.toFixed(0)).join(' / ')} | ` +
          `${runs.map((r) => r.cpuUs.toFixed(0)).join(' / ')} | ${runs.map((r) => r.serverCpuUs.toFixed(0)).join(' / ')} |`,
      );
    const mean = (name: string, field: 'perSecond' | 'cpuUs' | 'serverCpuUs') =>
      results.get(name)!.reduce((sum, run) => sum + run[field], 0) / rounds;
    for (const { name } of clients.slice(1))
      summary.push(
        `concurrency ${concurrency}: ${name} ÷ node-postgres: sign-ins/s ×${(mean(name, 'perSecond') / mean('node-postgres', 'perSecond')).toFixed(2)}, ` +
          `client CPU per sign-in ×${(mean(name, 'cpuUs') / mean('node-postgres', 'cpuUs')).toFixed(2)}, ` +
          `PostgreSQL's ×${(mean(name, 'serverCpuUs') / mean('node-postgres', 'serverCpuUs')).toFixed(2)}`,
      );
  }
  console.log(`\n${summary.join('\n')}`);
}

async function cleanUp(): Promise<void> {
  await Promise.all(open.map((db) => db.destroy().catch(() => {})));
  await dropDatabase?.().catch((error: unknown) => console.error('could not drop the database:', error));
}

runBench('bench:pg-driver', main, cleanUp);
