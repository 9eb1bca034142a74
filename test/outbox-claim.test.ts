import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { claimable, userlessDeliveries } from '../src/store/outbox.js';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, freshDatabase } from './helpers.js';

// The dispatcher claims a batch of deliveries every round, and keeps each user's events in order. Its claim must cost
// the same whatever the backlog: a claim that scanned the backlog once per candidate (before migration 0023) slowed as
// the backlog grew under sustained load, and the backlog then grew faster (bench:soak: 460 → 40 sign-ins a second).
// The evidence here is the query plan each database chooses, read from the database itself, over a backlog of 10,000
// pending deliveries of 2,000 users (and 10,000 delivered ones).

const ENDPOINT = 'https://a.example/hooks';
const USERS = 2000;

describe.each(databaseKinds())('the webhook outbox claim on %s', (kind) => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let storage: Storage;
  let unanalyzedUserlessPlan = '';
  beforeAll(async () => {
    database = await freshDatabase(kind);
    const db = openDatabase(database.url);
    await migrateToLatest(db);
    storage = new Storage(db, false, [ENDPOINT]);
    const at = new Date(Date.now() - 60_000).toISOString();
    for (let batch = 0; batch < 20; batch++)
      await storage.transaction(async (trx) => {
        for (let i = 0; i < 1000; i++)
          await trx.outbox.emit({ type: 'sign_in', userId: (batch * 1000 + i) % USERS, data: { batch, i } }, at);
      });
    await storage.db.updateTable('webhook_deliveries').set({ status: 'delivered' }).where('id', '<=', 10_000).execute();
    // PostgreSQL's autovacuum keeps statistics; SQLite is left as a server leaves it (no ANALYZE is ever run).
    if (kind === 'postgres') {
      const compiled = userlessDeliveries(ENDPOINT, true).compile(storage.db);
      const rows = await storage.db.executeQuery<Record<string, unknown>>({
        ...compiled,
        sql: `explain ${compiled.sql}`,
      });
      unanalyzedUserlessPlan = rows.rows.map((row) => String(row['QUERY PLAN'])).join('\n');
      await sql`analyze`.execute(storage.db);
    }
  }, 120_000);
  afterAll(async () => {
    await storage.db.destroy();
    await database.drop();
  });

  async function planOf(): Promise<string> {
    const compiled = claimable(ENDPOINT, new Date().toISOString(), 50, kind === 'postgres').compile(storage.db);
    const explain = kind === 'postgres' ? 'explain ' : 'explain query plan ';
    const rows = await storage.db.executeQuery<Record<string, unknown>>({ ...compiled, sql: explain + compiled.sql });
    return rows.rows.map((row) => String(row['QUERY PLAN'] ?? row.detail)).join('\n');
  }

  it("walks the endpoint's pending deliveries oldest first in their index, and stops at the batch (no scan, no sort)", async () => {
    const plan = await planOf();
    if (kind === 'postgres') {
      // PostgreSQL chooses between the two walks in outbox order by its statistics (one endpoint here: the smaller).
      expect(plan).toMatch(
        /Limit[\s\S]*Index (Only )?Scan using webhook_deliveries_(claim|pending)_idx on webhook_deliveries d/,
      );
      expect(plan).not.toMatch(/Seq Scan|Sort/);
    } else {
      expect(plan).toMatch(/SEARCH d USING (COVERING )?INDEX webhook_deliveries_claim_idx \(endpoint=\?\)/);
      expect(plan).not.toMatch(/TEMP B-TREE/);
    }
  });

  it("asks whether a user's older event is pending with one probe of webhook_deliveries_user_order_idx", async () => {
    const plan = await planOf();
    if (kind === 'postgres')
      expect(plan).toMatch(
        /Index Only Scan using webhook_deliveries_user_order_idx on webhook_deliveries e .*\n\s+Index Cond: \(\(endpoint = \(d\.endpoint\)::text\) AND \(user_id = d\.user_id\) AND \(outbox_id < d\.outbox_id\)\)/,
      );
    else
      expect(plan).toMatch(
        /SEARCH e USING COVERING INDEX webhook_deliveries_user_order_idx \(endpoint=\? AND user_id=\? AND outbox_id<\?\)/,
      );
  });

  it("a delivery written without its user (an instance not yet upgraded) is kept in order with the user's others", async () => {
    const other = 'https://old.example/hooks';
    const old = new Storage(storage.db, false, [other]);
    await old.outbox.emit({ type: 'sign_in', userId: 42, data: { n: 1 } });
    await old.outbox.emit({ type: 'user.deleted', userId: 42, data: { n: 2 } });
    await old.outbox.emit({ type: 'provider.event', userId: null, data: { n: 3 } });
    // As an instance of the version before migration 0023 writes them: no user on the first and the last.
    const rows = await storage.db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('endpoint', '=', other)
      .orderBy('id')
      .execute();
    await storage.db.updateTable('webhook_deliveries').set({ user_id: null }).where('id', '=', rows[0]!.id).execute();
    const claimed = await old.transaction((trx) => trx.outbox.claim(other, 50));
    expect(claimed.map((delivery) => JSON.parse(delivery.payload).data)).toEqual([{ n: 1 }, { n: 3 }]);
    await old.outbox.delivered(claimed.map((delivery) => delivery.id));
    const next = await old.transaction((trx) => trx.outbox.claim(other, 50));
    expect(next.map((delivery) => JSON.parse(delivery.payload).data)).toEqual([{ n: 2 }]);
  });

  it('finds the deliveries whose user is to be filled in through their own index, not a walk of the backlog', async () => {
    // The statement the claim runs, planned as it is at each run (database.ts PLANNED_EACH_RUN): with its endpoint.
    const compiled = userlessDeliveries(ENDPOINT, kind === 'postgres').compile(storage.db);
    const explain = kind === 'postgres' ? 'explain ' : 'explain query plan ';
    const plans = [];
    // PostgreSQL: with the statistics of the backlog, and as a server with autovacuum off has none (migration 0025).
    if (kind === 'postgres') plans.push(unanalyzedUserlessPlan);
    const rows = await storage.db.executeQuery<Record<string, unknown>>({ ...compiled, sql: explain + compiled.sql });
    plans.push(rows.rows.map((row) => String(row['QUERY PLAN'] ?? row.detail)).join('\n'));
    for (const plan of plans) {
      expect(plan).toMatch(/webhook_deliveries_userless_idx/);
      expect(plan).not.toMatch(/Seq Scan|SCAN d\b|webhook_deliveries_(claim|pending|user_order)_idx/);
    }
  });

  it("claims each user's oldest pending event, one per user at a time, and the next once it is delivered", async () => {
    const first = await storage.transaction((trx) => trx.outbox.claim(ENDPOINT, 50));
    const second = await storage.transaction((trx) => trx.outbox.claim(ENDPOINT, 50));
    const users = [...first, ...second].map((delivery) => delivery.userId);
    expect(new Set(users).size).toBe(100);
    // The oldest pending events are batch 10's (the first ten batches were delivered): users 0..99 in order.
    expect(users).toEqual([...Array(100).keys()]);
    expect(first.map((delivery) => JSON.parse(delivery.payload).data)).toEqual(
      [...Array(50).keys()].map((i) => ({ batch: 10, i })),
    );
    // User 0's next event (batch 12) waits while its first is claimed, and comes once that one is delivered.
    const next = () => storage.transaction((trx) => trx.outbox.claim(ENDPOINT, 2000));
    const pendingOfUser0 = (await next()).filter((delivery) => delivery.userId === 0);
    expect(pendingOfUser0).toEqual([]);
    await storage.outbox.delivered([first[0]!.id]);
    const after = (await next()).filter((delivery) => delivery.userId === 0);
    expect(after.map((delivery) => JSON.parse(delivery.payload).data)).toEqual([{ batch: 12, i: 0 }]);
  });
});
