import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kysely } from 'kysely';
import { migrateToLatest, openDatabase, type Database } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, freshDatabase } from './helpers.js';

// An access token names its session and its user: the session is read by its key alone (store/sessions.ts) and must
// still be that user's, active.
describe.each(databaseKinds())('the session of an access token, on %s', (kind) => {
  let db: Kysely<Database>;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    const database = await freshDatabase(kind);
    drop = database.drop;
    db = openDatabase(database.url);
    await migrateToLatest(db);
  });
  afterAll(async () => {
    await db.destroy();
    await drop();
  });

  it('is found for its own user only, and no longer once revoked', async () => {
    const storage = new Storage(db);
    const owner = await storage.users.create('session_owner', null);
    const other = await storage.users.create('someone_else', null);
    const id = '00000000-0000-4000-8000-0000000000a1';
    const expires = new Date(Date.now() + 60_000).toISOString();
    await storage.sessions.start(
      owner.id,
      { id, refreshTokenHash: 'c'.repeat(64), refreshExpiresAt: expires },
      { event: 'social_sign_in', userId: owner.id },
      null,
    );
    expect((await storage.sessions.findUser(id, owner.id))?.user.id).toBe(owner.id);
    expect(await storage.sessions.findUser(id, other.id)).toBeUndefined();
    await storage.sessions.revoke(id, 'logout');
    expect(await storage.sessions.findUser(id, owner.id)).toBeUndefined();
  });
});
