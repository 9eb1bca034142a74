import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Kysely } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/database.js';
import { startHaproxy, startNginx, which, type Haproxy } from './balancer.js';
import {
  canConnect,
  freePort,
  postgresAvailable,
  runCli,
  spawnServer,
  startWorld,
  warnIfSkipped,
  type ChaosWorld,
  type Env,
  type ServerProcess,
} from './harness.js';
import { postgresBinDir, startPrivatePostgres, type PrivatePostgres } from './private-postgres.js';

warnIfSkipped('test/chaos/scale-out.test.ts');

// The scale-out world: a PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port: it is stopped and
// restarted here, which the machine's shared server must never be), Redis for the rate limits (when there is
// one), three server processes behind HAProxy running deploy/haproxy.cfg, webhooks on to a receiver in this
// process, and client loops signing up, linking and signing in through the balancer.
const LOOPS = 12; // concurrent clients, each with its keep-alive connection through the balancer
const GRACE_MS = 10_000; // SOCIAL_LINK_SHUTDOWN_GRACE_MS: above haproxy's worst case to take an instance out (6 s)
// How long PostgreSQL stays stopped in scenario 1 (pg_ctl stop -m fast … pg_ctl start): long enough for haproxy to
// mark every instance DOWN (3 failed checks: 2 + 1 + 1 s), so that the fail-open backups of deploy/haproxy.cfg serve.
const PG_DOWN_MS = 6_000;
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const haveTools = Boolean(postgresBinDir()) && Boolean(which('haproxy'));
if (postgresAvailable && !haveTools)
  console.warn(
    "test/chaos/scale-out.test.ts: SKIPPED, it needs PostgreSQL's initdb/pg_ctl and haproxy (apt-get install haproxy nginx-light)",
  );

type Kind = 'guest' | 'associate' | 'sign_in';
interface Outcome {
  kind: Kind;
  /** Which client loop sent it (each has one request in flight at a time). */
  client: number;
  start: number;
  end: number;
  /** 0: no HTTP answer (the connection failed or was reset). */
  status: number;
  code?: string;
  retryAfter?: string;
  connection?: string;
  /** The client's error code when there was no answer (UND_ERR_SOCKET, ECONNRESET, ECONNREFUSED…). */
  error?: string;
}

/** What the clients were told was done: the durability checks look for each of these in the database and the webhooks. */
const made = { guests: [] as number[], links: [] as Array<{ userId: number; uid: string }> };

async function call(
  agent: Agent,
  base: string,
  client: number,
  kind: Kind,
  path: string,
  options: { token?: string; body?: unknown } = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any JSON the server answers
): Promise<{ outcome: Outcome; body: any }> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const start = Date.now();
  try {
    const response = await request(`${base}${path}`, {
      method: 'POST',
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      dispatcher: agent,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const text = await response.body.text();
    let body: any = text; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON (a balancer's own page): kept as text
    }
    const header = (name: string) => {
      const value = response.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    };
    return {
      outcome: {
        kind,
        client,
        start,
        end: Date.now(),
        status: response.statusCode,
        code: body?.code,
        retryAfter: header('retry-after'),
        connection: header('connection'),
      },
      body,
    };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    const code = (error as { code?: string }).code;
    return {
      outcome: { kind, client, start, end: Date.now(), status: 0, error: cause?.code ?? code ?? String(error) },
      body: undefined,
    };
  }
}

const ok = (outcome: Outcome) => outcome.status >= 200 && outcome.status < 300;

interface Summary {
  requests: number;
  ok: number;
  s503: number;
  other: number;
  errors: number;
  seconds: number;
  statuses: Record<string, number>;
}

function summarize(outcomes: Outcome[], startedAt: number, stoppedAt: number): Summary {
  const statuses: Record<string, number> = {};
  for (const outcome of outcomes) {
    const key =
      outcome.status === 0
        ? `error:${outcome.error}`
        : outcome.code
          ? `${outcome.status} ${outcome.code}`
          : String(outcome.status);
    statuses[key] = (statuses[key] ?? 0) + 1;
  }
  return {
    requests: outcomes.length,
    ok: outcomes.filter(ok).length,
    s503: outcomes.filter((outcome) => outcome.status === 503).length,
    other: outcomes.filter((outcome) => outcome.status !== 0 && !ok(outcome) && outcome.status !== 503).length,
    errors: outcomes.filter((outcome) => outcome.status === 0).length,
    seconds: Math.round((stoppedAt - startedAt) / 100) / 10,
    statuses,
  };
}

const line = (name: string, summary: Summary, extra = '') =>
  `scale-out ${name}: ${summary.requests} requests in ${summary.seconds} s, ${summary.ok} 2xx, ${summary.s503} 503, ${summary.other} other non-2xx, ` +
  `${summary.errors} connection errors/resets${extra ? `; ${extra}` : ''} — ${JSON.stringify(summary.statuses)}`;

/**
 * LOOPS clients through `base`, each over its own keep-alive connection (an undici Agent, as an app's HTTP
 * client keeps one): create a guest, link a new Facebook account to it, sign in with that account; again.
 * After an answer that is not 2xx, or none, a client waits 200 ms and starts over with a new guest.
 */
function startLoad(world: ChaosWorld, base: string) {
  const agent = new Agent({ keepAliveTimeout: 4_000, connections: LOOPS });
  const outcomes: Outcome[] = [];
  let stopping = false;
  const startedAt = Date.now();
  const record = <T extends { outcome: Outcome }>(result: T): T => {
    outcomes.push(result.outcome);
    return result;
  };
  const loop = async (client: number) => {
    while (!stopping) {
      const guest = record(await call(agent, base, client, 'guest', '/api/users/'));
      if (guest.outcome.status !== 201) {
        await sleep(200);
        continue;
      }
      made.guests.push(guest.body.id);
      const account = await world.emulator.mintFacebookToken();
      const linked = record(
        await call(agent, base, client, 'associate', '/api/associate/facebook/', {
          token: guest.body.access_token,
          body: { access_token: account.access_token },
        }),
      );
      if (linked.outcome.status !== 200) {
        await sleep(200);
        continue;
      }
      made.links.push({ userId: guest.body.id, uid: account.user_id });
      const signedIn = record(
        await call(agent, base, client, 'sign_in', '/api/auth/facebook/', {
          body: { access_token: account.access_token },
        }),
      );
      if (!ok(signedIn.outcome)) await sleep(200);
    }
  };
  const running = Promise.all(Array.from({ length: LOOPS }, (_, client) => loop(client)));
  return {
    outcomes,
    startedAt,
    /** Stops starting requests, waits for the ones under way, and closes the connections. */
    async stop(): Promise<{ outcomes: Outcome[]; summary: Summary }> {
      stopping = true;
      await running;
      const stoppedAt = Date.now();
      await agent.close();
      return { outcomes, summary: summarize(outcomes, startedAt, stoppedAt) };
    },
  };
}

/** Polls `condition` every 100 ms until it holds or `timeoutMs` passed; returns whether it held. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(100);
  }
  return condition();
}

describe.skipIf(!postgresAvailable || !haveTools)(
  'scale-out: private PostgreSQL, Redis, haproxy, three instances, webhooks (PostgreSQL)',
  () => {
    let world: ChaosWorld;
    let pg: PrivatePostgres;
    let db: Kysely<Database>;
    let env: Env;
    let receiver: Server;
    let haproxy: Haproxy;
    const ports: number[] = [];
    const instances: ServerProcess[] = [];
    const everyInstance: Array<{ name: string; server: ServerProcess }> = []; // replaced ones too, for their logs
    const exits = new Map<number, { code: number | null; signal: NodeJS.Signals | null }>();
    const received = new Map<string, string>(); // webhook-id → body
    let deliveries = 0;
    const badSignatures: string[] = [];

    const spawnInstance = async (i: number) => {
      const server = await spawnServer(env, { port: ports[i] });
      instances[i] = server;
      everyInstance.push({ name: `app${i + 1}`, server });
      void server.exited.then((exit) => exits.set(server.pid, exit));
      return server;
    };
    const outputs = () =>
      instances.map((server, i) => `--- app${i + 1} (pid ${server.pid}):\n${server.output().slice(-3_000)}`).join('\n');

    beforeAll(async () => {
      world = await startWorld();
      pg = await startPrivatePostgres();
      db = world.open(pg.url);

      const verifier = new Webhook(SECRET);
      receiver = createServer((req, response) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          try {
            verifier.verify(body, req.headers as Record<string, string>);
          } catch (error) {
            badSignatures.push(`${String(req.headers['webhook-id'])}: ${(error as Error).message}`);
            return void response.writeHead(400).end();
          }
          deliveries++;
          received.set(String(req.headers['webhook-id']), body);
          response.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));

      const redisUrl = process.env.TEST_REDIS_URL ?? ((await canConnect(6379)) ? 'redis://127.0.0.1:6379' : undefined);
      env = {
        ...world.serverEnv,
        DATABASE_URL: pg.url,
        SOCIAL_LINK_WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`,
        SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
        SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS: '50',
        SOCIAL_LINK_SHUTDOWN_GRACE_MS: String(GRACE_MS),
        TRUST_PROXY: '1',
        SOCIAL_LINK_INSTANCES: '3',
        // Rate limits on, shared through Redis (a key prefix of this run's own), with budgets no test client reaches:
        // every request pays its Redis round trip, as in production.
        ...(redisUrl
          ? {
              RATE_LIMIT_ENABLED: 'true',
              REDIS_URL: redisUrl,
              RATE_LIMIT_REDIS_PREFIX: `social-link-scale-out-${randomBytes(6).toString('hex')}:`,
              RATE_LIMIT_SIGN_IN_PER_MINUTE: '1000000',
              RATE_LIMIT_LINKS_PER_MINUTE: '1000000',
            }
          : {}),
      };
      const migrated = await runCli(['migrate'], env);
      expect(migrated.code, migrated.output).toBe(0);
      for (let i = 0; i < 3; i++) ports.push(await freePort());
      await Promise.all([0, 1, 2].map((i) => spawnInstance(i)));
      haproxy = await startHaproxy(ports);
      for (const name of ['app1', 'app2', 'app3']) await haproxy.waitFor(name, 'UP', 30_000);
      console.log(
        `scale-out world: PostgreSQL ${pg.url} (private cluster in ${pg.dir}), Redis ${redisUrl ?? 'none (rate limits off)'}, instances on ${ports.join(', ')}, haproxy on ${haproxy.port}`,
      );
    });

    afterAll(async () => {
      try {
        await haproxy?.stop().catch(() => {});
        await world?.close(); // kills the server processes, closes `db`
      } finally {
        await pg?.close(); // pg_ctl stop -m immediate, and its directory removed
        await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
      }
    });

    /**
     * Every guest and link a client got a 2xx for is in the database, and has its event in the outbox
     * (user.created, link.created), written in the same transaction.
     */
    async function expectKept(name: string) {
      const users = new Set((await db.selectFrom('users').select('id').execute()).map((row) => Number(row.id)));
      const links = new Set(
        (
          await db
            .selectFrom('social_associations')
            .select(['user_id', 'uid'])
            .where('provider', '=', 'facebook')
            .execute()
        ).map((row) => `${row.user_id}:${row.uid}`),
      );
      expect(
        made.guests.filter((id) => !users.has(id)),
        'guests answered 201 but not in the database',
      ).toEqual([]);
      expect(
        made.links.filter((link) => !links.has(`${link.userId}:${link.uid}`)),
        'links answered 200 but not in the database',
      ).toEqual([]);
      const events = await db
        .selectFrom('outbox')
        .select(['type', 'payload'])
        .where('type', 'in', ['user.created', 'link.created'])
        .execute();
      const told = new Set(
        events.map((event) => {
          const data = JSON.parse(event.payload).data as { user_id: number; uid?: string };
          return event.type === 'link.created' ? `link:${data.user_id}:${data.uid}` : `user:${data.user_id}`;
        }),
      );
      expect(
        made.guests.filter((id) => !told.has(`user:${id}`)),
        'guests without their user.created event',
      ).toEqual([]);
      expect(
        made.links.filter((link) => !told.has(`link:${link.userId}:${link.uid}`)),
        'links without their link.created event',
      ).toEqual([]);
      console.log(
        `scale-out ${name}, kept: ${made.guests.length} guests and ${made.links.length} links answered 2xx so far, all in the database with their event in the outbox`,
      );
    }

    it('1. PostgreSQL restarted under load: no process exits, no 500, only 503 database_unavailable (with Retry-After) during the outage, service back within seconds', async () => {
      const load = startLoad(world, haproxy.url);
      await until(() => load.outcomes.filter(ok).length >= 3 * LOOPS, 30_000);

      // Watch haproxy meanwhile: did the checked servers go DOWN (and the unchecked fail-open ones take the traffic)?
      const seen = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          for (const [name, status] of Object.entries(await haproxy.servers().catch(() => ({}))))
            seen.add(`${name} ${status}`);
          await sleep(250);
        }
      })();

      const sessionsBefore = await haproxy.sessions();
      const stopAt = Date.now();
      await pg.stop('fast');
      const stoppedAt = Date.now();
      await sleep(PG_DOWN_MS);
      const startAt = Date.now();
      await pg.start();
      const upAt = Date.now();
      // Back: answers started after PostgreSQL accepts connections again succeed (a generous cap on a busy machine).
      const back = await until(
        () => load.outcomes.filter((outcome) => outcome.start >= upAt && ok(outcome)).length >= 2 * LOOPS,
        30_000,
      );
      await sleep(2_000);
      const { outcomes, summary } = await load.stop();
      watching = false;
      await watcher;
      const sessionsAfter = await haproxy.sessions();
      const failOpen = ['app1-failopen', 'app2-failopen', 'app3-failopen'].reduce(
        (sum, name) => sum + (sessionsAfter[name] ?? 0) - (sessionsBefore[name] ?? 0),
        0,
      );

      const failed = outcomes.filter((outcome) => !ok(outcome));
      const unavailable = outcomes.filter((outcome) => outcome.status === 503);
      const firstBack = outcomes
        .filter((outcome) => outcome.start >= upAt && ok(outcome))
        .sort((a, b) => a.end - b.end)[0];
      const lastUnavailable = Math.max(...unavailable.map((outcome) => outcome.end));
      console.log(
        line(
          '1 (PostgreSQL restart)',
          summary,
          `pg_ctl stop -m fast took ${stoppedAt - stopAt} ms, down ${PG_DOWN_MS} ms, pg_ctl start took ${upAt - startAt} ms; ` +
            `503s from ${unavailable.length ? Math.min(...unavailable.map((outcome) => outcome.start)) - stopAt : '-'} ms after the stop began to ${unavailable.length ? lastUnavailable - upAt : '-'} ms after PostgreSQL was up; ` +
            `first 2xx started after it was up: ${firstBack ? firstBack.end - upAt : '-'} ms after; ${failOpen} requests went to the fail-open backups; haproxy states seen: ${[...seen].sort().join(', ')}`,
        ),
      );

      expect([...exits.values()], `server processes exited during the outage:\n${outputs()}`).toEqual([]);
      expect(
        back,
        `no success within 30 s of PostgreSQL being back: ${JSON.stringify(summary.statuses)}\n${outputs()}`,
      ).toBe(true);
      expect(summary.errors, 'connection errors/resets').toBe(0);
      // Only 503, and each the API's own: database_unavailable with Retry-After (not a 500, not the balancer's page).
      expect(
        failed.filter((outcome) => outcome.status !== 503),
        'answers other than 2xx and 503',
      ).toEqual([]);
      expect(
        unavailable.filter((outcome) => outcome.code !== 'database_unavailable' || !outcome.retryAfter),
        '503s without code database_unavailable and Retry-After',
      ).toEqual([]);
      // …and only while PostgreSQL was away: answered after the stop began, asked before it was back (+10 s: pools reconnecting on 2 busy cores).
      expect(
        unavailable.filter((outcome) => outcome.end < stopAt || outcome.start > upAt + 10_000),
        '503s outside the outage',
      ).toEqual([]);
    });

    it('2. rolling SIGTERM of each instance through haproxy: no answer other than 2xx, no connection error or reset', async () => {
      const load = startLoad(world, haproxy.url);
      await until(() => load.outcomes.filter(ok).length >= 2 * LOOPS, 30_000);
      const steps: string[] = [];
      for (let i = 0; i < 3; i++) {
        const name = `app${i + 1}`;
        const old = instances[i]!;
        const signalledAt = Date.now();
        old.kill('SIGTERM');
        const [downAt, exit] = await Promise.all([
          haproxy.waitFor(name, 'DOWN', GRACE_MS + 20_000),
          Promise.race([old.exited, sleep(GRACE_MS + 60_000).then(() => undefined)]),
        ]);
        const exitedAt = Date.now();
        expect(exit, `${name} still running ${GRACE_MS + 60_000} ms after SIGTERM:\n${old.output()}`).toBeDefined();
        expect(exit, old.output()).toEqual({ code: 0, signal: null });
        await spawnInstance(i);
        const upAt = await haproxy.waitFor(name, 'UP', 60_000);
        steps.push(
          `${name}: DOWN in haproxy ${downAt - signalledAt} ms after SIGTERM, exit 0 after ${exitedAt - signalledAt} ms, replacement UP ${upAt - exitedAt} ms after`,
        );
        // The balancer took it out before it stopped listening: the drain is long enough for this configuration.
        expect(downAt - signalledAt, `${name} was still UP in haproxy when its drain ended`).toBeLessThan(GRACE_MS);
      }
      await sleep(2_000);
      const { outcomes, summary } = await load.stop();
      console.log(line('2 (rolling SIGTERM, haproxy)', summary, steps.join('; ')));
      const bad = outcomes.filter((outcome) => !ok(outcome));
      expect(
        bad,
        `not 2xx:\n${haproxy
          .log()
          .split('\n')
          .filter((entry) => entry && !/ 20[01] /.test(entry))
          .slice(-20)
          .join('\n')}`,
      ).toEqual([]);
    });

    it('3. kill -9 of one instance under load: only requests in flight to it fail; every guest and link answered 2xx is kept with its event (their delivery: test 5)', async () => {
      const load = startLoad(world, haproxy.url);
      await until(() => load.outcomes.filter(ok).length >= 2 * LOOPS, 30_000);
      const victim = 1;
      const killAt = Date.now();
      instances[victim]!.kill('SIGKILL');
      expect((await instances[victim]!.exited).signal).toBe('SIGKILL');
      const downAt = await haproxy.waitFor('app2', 'DOWN', 30_000);
      // Traffic goes on to the others for a while, then a replacement starts (as an orchestrator would).
      await sleep(3_000);
      await spawnInstance(victim);
      const upAt = await haproxy.waitFor('app2', 'UP', 60_000);
      await sleep(2_000);
      const { outcomes, summary } = await load.stop();

      const failed = outcomes.filter((outcome) => !ok(outcome));
      console.log(
        line(
          '3 (kill -9, haproxy)',
          summary,
          `app2 DOWN in haproxy ${downAt - killAt} ms after the kill, replacement UP ${upAt - killAt} ms after; failures started ${failed.map((outcome) => outcome.start - killAt).join(', ') || '-'} ms relative to the kill`,
        ),
      );
      // At most one request per client can have been in flight to the killed instance (so at most LOOPS in all), and
      // each began before the kill or as it happened: the dying process holds its sockets, and the kernel still
      // accepts connections for it, until its memory is freed (up to ~150 ms here).
      const perClient = new Map<number, number>();
      for (const outcome of failed) perClient.set(outcome.client, (perClient.get(outcome.client) ?? 0) + 1);
      expect(
        [...perClient.entries()].filter(([, count]) => count > 1),
        'clients with more than one failure',
      ).toEqual([]);
      expect(failed.length, 'failures').toBeLessThanOrEqual(LOOPS);
      expect(
        failed.filter((outcome) => outcome.start > killAt + 1_000),
        'failures of requests sent after the kill',
      ).toEqual([]);
      expect(
        failed.filter((outcome) => outcome.status !== 0 && outcome.status !== 502),
        'failures other than a lost connection or a 502',
      ).toEqual([]);
      // Nothing lost, since the start of this file (the deliveries: the last test, once the killed instance's claims expired).
      await expectKept('1-3');
    });

    // nginx open source has no active health checks: it goes on sending to a draining instance until the instance
    // stops listening; then a refused connection is retried on the next server (proxy_next_upstream error). What
    // it cannot retry is a POST it already sent on a connection the kernel accepted just before the listener closed
    // (reset: a 502). (A connection the instance itself accepted before closing is served.) So a few requests per
    // instance may fail, all at the moment it stops listening: counted here. (Taking the instance out first instead, `down` and
    // nginx -s reload, did worse under this keep-alive load: the old workers closing clients' connections reset 1 to 11
    // requests per rolling restart, at the client.)
    it.skipIf(!which('nginx'))(
      '4. rolling SIGTERM through nginx, SIGTERM only (passive checks): no connection error at the client; failures only a 502 as an instance stops listening',
      async () => {
        const nginx = await startNginx(ports);
        try {
          const load = startLoad(world, nginx.url);
          await until(() => load.outcomes.filter(ok).length >= 2 * LOOPS, 30_000);
          const steps: string[] = [];
          const closings: Array<[number, number]> = []; // [drain over, exited] of each instance
          for (let i = 0; i < 3; i++) {
            const old = instances[i]!;
            const signalledAt = Date.now();
            old.kill('SIGTERM');
            const exit = await Promise.race([old.exited, sleep(GRACE_MS + 60_000).then(() => undefined)]);
            const exitedAt = Date.now();
            expect(exit, old.output()).toEqual({ code: 0, signal: null });
            closings.push([signalledAt + GRACE_MS, exitedAt]);
            await spawnInstance(i);
            steps.push(
              `app${i + 1}: exit 0 ${exitedAt - signalledAt} ms after SIGTERM, replacement answering ${Date.now() - exitedAt} ms after`,
            );
            // nginx learns of the new instance only by sending it requests (after fail_timeout): leave it some traffic.
            await sleep(2_000);
          }
          await sleep(2_000);
          const { outcomes, summary } = await load.stop();
          const failed = outcomes.filter((outcome) => !ok(outcome));
          const near = (outcome: Outcome) =>
            closings.some(([drained, exited]) => outcome.end >= drained - 1_000 && outcome.start <= exited + 1_000);
          console.log(
            line(
              '4 (rolling SIGTERM, nginx, SIGTERM only)',
              summary,
              `${failed.length} failed, at ${failed.map((outcome) => `${outcome.status}${outcome.code ? ` ${outcome.code}` : ''} ${Math.min(...closings.map(([drained]) => Math.abs(outcome.end - drained)))} ms from a drain's end`).join(', ') || '-'}; ${steps.join('; ')}`,
            ),
          );
          const log = `nginx error log:\n${nginx.log().slice(-4_000)}`;
          expect(summary.errors, `connection errors/resets at the client; ${log}`).toBe(0);
          expect(
            failed.filter((outcome) => outcome.status !== 502),
            `failures other than 502; ${log}`,
          ).toEqual([]);
          expect(
            failed.filter((outcome) => !near(outcome)),
            `failures away from an instance's listener closing; ${log}`,
          ).toEqual([]);
          await expectKept('1-4');
        } finally {
          await nginx.stop();
        }
      },
    );

    // Last, so that the claims the killed instance held (store/outbox.ts: 60 s) have expired meanwhile.
    it('5. every event of the outbox (scenarios 1 to 4) reached the webhook receiver, each duplicate with its webhook-id and body', async () => {
      const events = await db.selectFrom('outbox').select(['event_id', 'payload']).execute();
      const missing = () => events.filter((event) => !received.has(event.event_id));
      const waitedFrom = Date.now();
      const progress = [`${missing().length} at first`];
      // What holds them, if anything does: claimed (locked_until) by an instance that did not deliver them, or waiting to be retried.
      const pendingAtFirst = await db
        .selectFrom('webhook_deliveries as d')
        .innerJoin('outbox as o', 'o.id', 'd.outbox_id')
        .select(['o.type', 'o.created_at', 'd.attempts', 'd.locked_until', 'd.next_attempt_at', 'd.last_error'])
        .where('d.status', '=', 'pending')
        .limit(5)
        .execute();
      const at = (value: unknown) =>
        value ? `${Math.round((new Date(value as string).getTime() - waitedFrom) / 100) / 10} s` : '-';
      const pendingText = pendingAtFirst
        .map(
          (row) =>
            `${row.type} created ${at(row.created_at)}, attempts ${row.attempts}, locked until ${at(row.locked_until)}, next attempt ${at(row.next_attempt_at)}${row.last_error ? `, last error ${row.last_error}` : ''}`,
        )
        .join('; ');
      // Generous: a claim of the kill -9'd instance lasts 60 s; a busy machine delivers thousands of events.
      await until(() => {
        const elapsed = Date.now() - waitedFrom;
        if (elapsed >= progress.length * 10_000)
          progress.push(`${missing().length} after ${Math.round(elapsed / 1000)} s`);
        return missing().length === 0;
      }, 150_000);
      const lost = missing();
      // What the instances said about webhooks (LOG_LEVEL=warn: problems only), the stopped ones too.
      const said = everyInstance.flatMap(({ name, server }) =>
        server
          .output()
          .split('\n')
          .filter((entry) => /webhook/i.test(entry))
          .map((entry) => `${name} (pid ${server.pid}): ${entry.slice(0, 300)}`),
      );
      if (said.length > 0)
        console.log(`scale-out 5 (webhooks), the instances' warnings:\n${said.slice(-20).join('\n')}`);
      if (lost.length > 0) {
        const pending = await db
          .selectFrom('webhook_deliveries')
          .select(['status', 'attempts', 'locked_until', 'next_attempt_at', 'last_error'])
          .where('status', '!=', 'delivered')
          .limit(5)
          .execute();
        expect.fail(
          `${lost.length} of ${events.length} events not delivered after 150 s (undelivered: ${progress.join(', ')}; pending at first: ${pendingText}; e.g. ${JSON.stringify(pending)})`,
        );
      }
      for (const event of events) expect(received.get(event.event_id)).toBe(event.payload);
      expect(badSignatures, 'deliveries whose signature did not verify').toEqual([]);
      console.log(
        `scale-out 5 (webhooks): ${events.length} events in the outbox, all delivered: ${deliveries} deliveries for ${received.size} webhook-ids ` +
          `(${deliveries - received.size} repeated); undelivered when the check began: ${progress.join(', ')}${pendingText ? ` (pending then, times relative to the check: ${pendingText})` : ''}; all in ${Date.now() - waitedFrom} ms`,
      );
    });
  },
);
