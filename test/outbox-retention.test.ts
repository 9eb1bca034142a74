import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, freshDatabase } from './helpers.js';

// Webhook events are kept until delivered everywhere, then for SOCIAL_LINK_WEBHOOK_RETENTION_DAYS: the outbox
// does not grow for ever (the sweep of core/services.ts calls purgeDelivered every minute).

describe.each(databaseKinds())('outbox retention on %s', (kind) => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let storage: Storage;
  beforeAll(async () => {
    database = await freshDatabase(kind);
    const db = openDatabase(database.url);
    await migrateToLatest(db);
    storage = new Storage(db, false, ['https://a.example/hooks', 'https://b.example/hooks']);
  });
  afterAll(async () => {
    await storage.db.destroy();
    await database.drop();
  });

  const day = 86_400_000;
  const ago = (days: number) => new Date(Date.now() - days * day).toISOString();
  const deliveriesOf = (type: string) =>
    storage.db
      .selectFrom('webhook_deliveries as d')
      .innerJoin('outbox as o', 'o.id', 'd.outbox_id')
      .select(['d.id', 'd.endpoint'])
      .where('o.type', '=', type)
      .execute();

  it('forgets old events delivered to every endpoint; keeps recent ones, and any still pending or failed', async () => {
    await storage.outbox.emit({ type: 'user.created', userId: 1, data: { case: 'old, delivered' } }, ago(10));
    await storage.outbox.emit({ type: 'user.deleted', userId: 1, data: { case: 'old, one endpoint failed' } }, ago(10));
    await storage.outbox.emit({ type: 'sign_in', userId: 1, data: { case: 'old, pending' } }, ago(10));
    await storage.outbox.emit({ type: 'link.created', userId: 1, data: { case: 'recent, delivered' } }, ago(1));
    for (const type of ['user.created', 'link.created', 'user.deleted'])
      await storage.outbox.delivered((await deliveriesOf(type)).map((delivery) => delivery.id));
    const [failing] = await deliveriesOf('user.deleted');
    await storage.outbox.attemptFailed(failing!.id, 12, 'HTTP 500', undefined);

    expect(await storage.outbox.purgeDelivered(ago(7))).toBe(1);
    const left = await storage.db.selectFrom('outbox').select('type').orderBy('id').execute();
    expect(left.map((row) => row.type)).toEqual(['user.deleted', 'sign_in', 'link.created']);
    // The deliveries of the forgotten event went with it.
    expect(await deliveriesOf('user.created')).toEqual([]);
    expect(await storage.outbox.purgeDelivered(ago(7))).toBe(0);
  });

  it('forgets at most `limit` events per call', async () => {
    for (let i = 0; i < 5; i++) await storage.outbox.emit({ type: 'session.revoked', userId: 2, data: { i } }, ago(30));
    await storage.outbox.delivered((await deliveriesOf('session.revoked')).map((delivery) => delivery.id));
    expect(await storage.outbox.purgeDelivered(ago(7), 2)).toBe(2);
    expect(await storage.outbox.purgeDelivered(ago(7), 10)).toBe(3);
  });
});
