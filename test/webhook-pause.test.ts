import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebhookDispatcher } from '../src/core/webhooks.js';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, freshDatabase } from './helpers.js';

// The dispatcher's rounds, run by hand (tick) on a real database and a real receiver. A receiver that is down: once a
// round has failed every attempt, the endpoint gets no new attempt until the first of those retries is due — not one
// new event a second (each failing too), nor a claim walking its growing backlog every second; the other endpoints go
// on. An endpoint with more due than a round takes is sent the rest at once.

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

describe.each(databaseKinds())('a webhook endpoint failing every attempt, on %s', (kind) => {
  let receiver: Server;
  let base: string;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let storage: Storage;
  /** POSTs received, by path; the paths in `down` answer 503. */
  const posts = new Map<string, number>();
  const down = new Set<string>();
  const warnings: string[] = [];
  let nextUser = 1;

  beforeAll(async () => {
    receiver = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        const path = request.url ?? '';
        posts.set(path, (posts.get(path) ?? 0) + 1);
        response.writeHead(down.has(path) ? 503 : 204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
    database = await freshDatabase(kind);
    const db = openDatabase(database.url);
    await migrateToLatest(db);
    storage = new Storage(db, false, [`${base}/a`, `${base}/b`]);
  });
  afterAll(async () => {
    await storage?.db.destroy();
    await database?.drop();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  });
  beforeEach(async () => {
    // Every test starts from an empty outbox.
    await storage.db.deleteFrom('webhook_deliveries').execute();
    await storage.db.deleteFrom('outbox').execute();
    posts.clear();
    down.clear();
    warnings.length = 0;
  });

  const dispatcher = (retryBaseMs: number) =>
    new WebhookDispatcher(
      storage,
      [
        { url: `${base}/a`, secret: SECRET },
        { url: `${base}/b`, secret: SECRET },
      ],
      { warn: (_fields, message) => warnings.push(message) },
      { retryBaseMs, timeoutMs: 5000 },
    );
  /** An event of a new user (no order holds it behind another): one delivery to each endpoint. */
  const emit = () => storage.transaction((trx) => trx.outbox.emit({ type: 'sign_in', userId: nextUser++, data: {} }));

  it('gets no new event until its first retry is due, while the other endpoint gets every one', async () => {
    down.add('/a');
    const webhooks = dispatcher(60_000);
    await emit();
    await emit();
    await webhooks.tick();
    expect(posts.get('/a')).toBe(2);
    expect(posts.get('/b')).toBe(2);
    expect(warnings).toEqual([
      'webhooks: every attempt of a round failed; no new attempt to this endpoint until its first retry is due',
    ]);

    // A new event: /b gets it at once; /a, resting for a minute, does not.
    await emit();
    await webhooks.tick();
    expect(posts.get('/a')).toBe(2);
    expect(posts.get('/b')).toBe(3);
    await webhooks.stop();
  });

  it('is tried again once that retry is due, and then gets the events written meanwhile, in order', async () => {
    down.add('/a');
    const webhooks = dispatcher(1);
    await emit();
    await webhooks.tick();
    expect(posts.get('/a')).toBe(1);
    // Its retry was due 1 ms later: the next round tries again, the event written meanwhile too.
    await new Promise((resolve) => setTimeout(resolve, 20));
    down.clear();
    await emit();
    await webhooks.tick();
    expect(posts.get('/a')).toBe(3);
    const pending = await storage.db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('status', '=', 'pending')
      .execute();
    expect(pending).toEqual([]);
    await webhooks.stop();
  });

  it('an only endpoint resting is tried again once its retry is due (a round with nothing to do ends all the same)', async () => {
    // A round in which every endpoint rests touches nothing: it once ended before it had begun, and the dispatcher
    // took it for a round still running, for ever: no endpoint was ever tried again.
    const only = new WebhookDispatcher(
      storage,
      [{ url: `${base}/a`, secret: SECRET }],
      { warn: (_fields, message) => warnings.push(message) },
      { retryBaseMs: 200, timeoutMs: 5000 },
    );
    down.add('/a');
    await emit();
    await only.tick();
    expect(posts.get('/a')).toBe(1);
    await only.tick(); // resting: its retry is due in 200 ms
    down.clear();
    const pendingOfA = () =>
      storage.db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('endpoint', '=', `${base}/a`)
        .where('status', '=', 'pending')
        .execute();
    // Rounds until the retry is due and made (a loaded machine may take a few more).
    for (let round = 0; round < 100 && (await pendingOfA()).length > 0; round++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      await only.tick();
    }
    expect(await pendingOfA()).toEqual([]);
    expect(posts.get('/a')).toBe(2);
    await only.stop();
  });

  /** A dispatcher of /a alone, started, its next tick by the clock an hour away; 1,100 events of as many users due. */
  async function busyEndpoint() {
    const busy = new WebhookDispatcher(
      storage,
      [{ url: `${base}/a`, secret: SECRET }],
      { warn: (_fields, message) => warnings.push(message) },
      { intervalMs: 3_600_000, timeoutMs: 5000 },
    );
    await storage.transaction(async (trx) => {
      for (let i = 0; i < 1100; i++) await trx.outbox.emit({ type: 'sign_in', userId: nextUser++, data: {} });
    });
    busy.start();
    return busy;
  }

  it('an endpoint with more due than a tick takes (20 claims of 50) is sent the rest at once, not at the next tick', async () => {
    // Else no endpoint could be sent more than 1,000 events a second, fewer than a busy server signs in.
    const busy = await busyEndpoint();
    await busy.tick();
    expect(posts.get('/a')).toBe(1000);
    for (let wait = 0; wait < 200 && (posts.get('/a') ?? 0) < 1100; wait++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(posts.get('/a')).toBe(1100);
    await busy.stop();
  });

  it('stopped between a busy round and the next, it starts no other: the database may be closing', async () => {
    const busy = await busyEndpoint();
    await busy.tick(); // 1,000 delivered; the next round is due at once
    await busy.stop();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(posts.get('/a')).toBe(1000);
    const untouched = await storage.db
      .selectFrom('webhook_deliveries')
      .select(['attempts', 'locked_until'])
      .where('endpoint', '=', `${base}/a`)
      .where('status', '=', 'pending')
      .execute();
    expect(untouched).toHaveLength(100);
    expect(untouched.filter((row) => row.attempts > 0 || row.locked_until !== null)).toEqual([]);
  });

  it('a round that delivered anything does not rest the endpoint', async () => {
    const webhooks = dispatcher(60_000);
    await emit();
    await webhooks.tick();
    expect(posts.get('/a')).toBe(1);
    // The receiver goes down after a round that delivered: the next event is still tried.
    down.add('/a');
    await emit();
    await webhooks.tick();
    expect(posts.get('/a')).toBe(2);
    expect(warnings).toHaveLength(1);
    await webhooks.stop();
  });
});
