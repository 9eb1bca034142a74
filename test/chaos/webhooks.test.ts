import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Kysely } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/database.js';
import {
  newGuest,
  postgresAvailable,
  runBounded,
  runCli,
  spawnServer,
  startWorld,
  warnIfSkipped,
  type ChaosWorld,
  type Env,
} from './harness.js';

warnIfSkipped('test/chaos/webhooks.test.ts');

const USERS = 80;
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

// kill -9 while webhooks are being delivered, then a receiver that was down: after a restart every event
// arrives, and an event that arrives twice does so with the same webhook-id and body (at least once).
describe.skipIf(!postgresAvailable)('webhooks through kill -9 (PostgreSQL)', () => {
  let world: ChaosWorld;
  let db: Kysely<Database>;
  let env: Env;
  let receiver: Server;
  const received: Array<{ id: string; body: string }> = [];

  beforeAll(async () => {
    world = await startWorld();
    const verifier = new Webhook(SECRET);
    // A slow receiver (deliveries are in flight when the kill comes) that verifies every signature.
    receiver = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        verifier.verify(body, request.headers as Record<string, string>);
        setTimeout(() => {
          received.push({ id: String(request.headers['webhook-id']), body });
          response.writeHead(204).end();
        }, 20);
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const url = await world.newDatabase();
    db = world.open(url);
    env = {
      ...world.serverEnv,
      DATABASE_URL: url,
      SOCIAL_LINK_WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`,
      SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
      SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS: '50',
    };
    const migrated = await runCli(['migrate'], env);
    expect(migrated.code, migrated.output).toBe(0);
  });
  afterAll(async () => {
    await world?.close();
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
  });

  it('every event arrives after a kill -9 in the middle of deliveries; duplicates keep their id and body', async () => {
    const first = await spawnServer(env);
    await runBounded(USERS, 8, async () => void (await newGuest(first.url)));
    // Kill it while it delivers.
    for (let waited = 0; received.length < 10 && waited < 20_000; waited += 20)
      await new Promise((resolve) => setTimeout(resolve, 20));
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const beforeRestart = received.length;

    const second = await spawnServer(env);
    const written = await db.selectFrom('outbox').select(['event_id', 'payload']).execute();
    expect(written).toHaveLength(USERS); // one user.created per guest: each committed with its user
    const deadline = Date.now() + 60_000;
    while (new Set(received.map((event) => event.id)).size < USERS && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));

    const ids = new Set(received.map((event) => event.id));
    expect([...ids].sort()).toEqual(written.map((row) => row.event_id).sort());
    const payloadOf = new Map(written.map((row) => [row.event_id, row.payload]));
    for (const event of received) expect(event.body).toBe(payloadOf.get(event.id));
    console.log(
      `webhooks through kill -9: ${beforeRestart} received before the kill, ${received.length} deliveries for ${ids.size} events in all (${received.length - ids.size} repeated with their id)`,
    );
    second.kill('SIGTERM');
    await second.exited;
  });
});
