import type { Kysely } from 'kysely';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/database.js';
import {
  api,
  canConnect,
  newGuest,
  postgresAvailable,
  runCli,
  spawnServer,
  startWorld,
  warnIfSkipped,
  type ChaosWorld,
  type Env,
} from './harness.js';

warnIfSkipped('test/chaos/shutdown.test.ts');

const IN_FLIGHT = 6; // slow associates in flight when SIGTERM arrives
const LATENCY_MS = 1_500; // per Facebook call, far below SOCIAL_AUTH_PROVIDER_TIMEOUT_MS (5000 by default)
const EXIT_GRACE_MS = 5_000; // "soon after the last answer": closing the pools takes milliseconds, 2 noisy cores get slack
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// A deploy sends SIGTERM: the server drains for SOCIAL_LINK_SHUTDOWN_GRACE_MS (0 here, as the harness sets it,
// unless a test says otherwise), then stops taking connections, finishes what it started (the provider answers,
// the transaction commits, the client gets its 200) and exits 0.
describe.skipIf(!postgresAvailable)('graceful shutdown on SIGTERM (PostgreSQL)', () => {
  let world: ChaosWorld;
  let db: Kysely<Database>;
  let env: Env;
  let client: Agent | undefined;

  beforeAll(async () => {
    world = await startWorld();
    const url = await world.newDatabase();
    db = world.open(url);
    env = { ...world.serverEnv, DATABASE_URL: url };
    const migrated = await runCli(['migrate'], env);
    expect(migrated.code, migrated.output).toBe(0);
  });
  afterAll(async () => {
    await client?.destroy();
    await world?.emulator.clearFaults().catch(() => {});
    await world?.close();
  });

  it('finishes the in-flight associates with 200, refuses new connections, exits 0 and keeps every link', async () => {
    const server = await spawnServer(env);
    const users = await Promise.all(Array.from({ length: IN_FLIGHT }, () => newGuest(server.url)));
    const accounts = await Promise.all(users.map(() => world.emulator.mintFacebookToken()));

    await world.emulator.setFault('facebook', { latency_ms: LATENCY_MS });
    const before = (await world.emulator.stats()).requests.facebook ?? 0;
    const answeredAt: number[] = [];
    // The in-flight requests use a pool of their own, kept alive as HTTP/1.1 clients (and proxies) do.
    client = new Agent();
    const inFlight = users.map((user, i) =>
      api(server.url, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: accounts[i]!.access_token },
        dispatcher: client,
      }).then(
        (answer) => {
          answeredAt.push(Date.now());
          return answer;
        },
        (error: unknown) => ({ status: 0, body: String((error as Error).cause ?? error) }),
      ),
    );

    // Signal only once every request is inside the server, waiting on Facebook (/me and debug_token each).
    for (let i = 0; i < 100 && ((await world.emulator.stats()).requests.facebook ?? 0) < before + 2 * IN_FLIGHT; i++)
      await sleep(50);
    expect((await world.emulator.stats()).requests.facebook).toBe(before + 2 * IN_FLIGHT);
    const signalledAt = Date.now();
    server.kill('SIGTERM');

    // Probe with raw TCP connections from the signal until the process is gone (or well past the last answer).
    // A few probes may still get in before the child handles the signal; after the first refusal, none may.
    const exit: { at?: number; code?: number | null; signal?: NodeJS.Signals | null } = {};
    void server.exited.then(({ code, signal }) => Object.assign(exit, { at: Date.now(), code, signal }));
    const answering = Promise.all(inFlight);
    let allAnswered = false;
    void answering.then(() => (allAnswered = true));
    const probes: Array<{ at: number; accepted: boolean }> = [];
    let refusedAt: number | undefined;
    let answeredWhenRefused = 0;
    while (
      exit.at === undefined &&
      Date.now() - signalledAt < 60_000 &&
      !(allAnswered && Date.now() - Math.max(...answeredAt) > EXIT_GRACE_MS)
    ) {
      const accepted = await canConnect(server.port);
      probes.push({ at: Date.now() - signalledAt, accepted });
      if (!accepted && refusedAt === undefined) {
        refusedAt = Date.now() - signalledAt;
        answeredWhenRefused = answeredAt.length;
      }
      await sleep(25);
    }
    expect(refusedAt, JSON.stringify(probes)).toBeDefined();
    expect(
      probes.filter((probe) => probe.accepted && probe.at > refusedAt!),
      'accepted after the first refusal',
    ).toEqual([]);
    // Refused while the slow requests were still running: it stopped accepting first, not at exit.
    expect(answeredWhenRefused).toBeLessThan(IN_FLIGHT);

    const answers = await answering;
    expect(
      answers.map((answer) => answer.status),
      JSON.stringify(answers.map((answer) => answer.body)),
    ).toEqual(users.map(() => 200));
    for (const [i, answer] of answers.entries())
      expect(answer.body.association).toEqual({ provider: 'facebook', uid: accounts[i]!.user_id, created: true });
    const links = await db
      .selectFrom('social_associations')
      .select(['user_id', 'uid'])
      .where('provider', '=', 'facebook')
      .execute();
    expect(new Set(links.map((link) => `${link.user_id}:${link.uid}`))).toEqual(
      new Set(users.map((user, i) => `${user.id}:${accounts[i]!.user_id}`)),
    );

    const lastAnswer = Math.max(...answeredAt);
    if (exit.at === undefined) {
      // Still running: find out whether only our idle keep-alive connections hold it (as a load balancer's would).
      const closedAt = Date.now();
      await client.destroy();
      await Promise.race([server.exited, sleep(5_000)]);
      const after =
        exit.at === undefined
          ? 'and still runs 5 s after the client closed its idle keep-alive connections'
          : `and exited (${exit.code}) ${exit.at - closedAt} ms after the client closed its idle keep-alive connections`;
      // (If so: the connections that carried the in-flight requests stay open after their answers, and
      // server.close() waits for them: up to the keep-alive timeout, 72 s with Fastify's default.)
      expect.fail(`the server still ran ${closedAt - lastAnswer} ms after its last answer, ${after}`);
    }
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at! - lastAnswer, 'exit delay after the last answer (ms)').toBeLessThan(EXIT_GRACE_MS);

    console.log(
      `shutdown: ${IN_FLIGHT} associates in flight at SIGTERM (Facebook latency ${LATENCY_MS} ms), listener refused after ${refusedAt} ms ` +
        `(${probes.length} probes, ${probes.filter((probe) => probe.accepted).length} accepted before), all ${IN_FLIGHT} answered 200 ` +
        `${lastAnswer - signalledAt} ms after the signal, exit 0 ${exit.at! - lastAnswer} ms after the last answer, ${links.length} links in the database`,
    );
  });

  it('with SOCIAL_LINK_SHUTDOWN_GRACE_MS, SIGTERM drains first: /readyz answers 503 at once while requests are still served (closing their connections), then it closes and exits 0', async () => {
    const GRACE_MS = 3_000;
    const server = await spawnServer({ ...env, SOCIAL_LINK_SHUTDOWN_GRACE_MS: String(GRACE_MS) });
    const exit: { at?: number; code?: number | null } = {};
    void server.exited.then(({ code }) => Object.assign(exit, { at: Date.now(), code }));
    const signalledAt = Date.now();
    server.kill('SIGTERM');
    let ready = await api(server.url, 'GET', '/readyz');
    for (let i = 0; i < 100 && ready.status === 200; i++) {
      await sleep(20);
      ready = await api(server.url, 'GET', '/readyz');
    }
    expect(ready).toEqual({ status: 503, body: { status: 'draining' } });
    // Still served while the balancer takes the instance out (unless the machine is so slow the grace is over).
    const created = await fetch(`${server.url}/api/users/`, { method: 'POST' });
    if (Date.now() - signalledAt < GRACE_MS) {
      expect(created.status).toBe(201);
      expect(created.headers.get('connection')).toBe('close');
    }
    const { code } = await server.exited;
    expect(code).toBe(0);
    expect(exit.at! - signalledAt).toBeGreaterThanOrEqual(GRACE_MS);
  });
});
