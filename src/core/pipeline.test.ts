import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SecretBox } from '../auth/secret-box.js';
import { migrateToLatest, openDatabase } from '../store/database.js';
import { Links } from '../store/links.js';
import { Storage, type User } from '../store/storage.js';
import { profileIsStale } from '../providers/profile.js';
import type { SocialIdentity } from '../providers/types.js';
import {
  authAllowed,
  defaultPipeline,
  runBeforeTransaction,
  runPipeline,
  signInPipeline,
  socialUser,
  startSession,
} from './pipeline.js';
import type { PipelineContext, PipelineStep } from './pipeline-step.js';
import { BlockingHooks } from './blocking-hooks.js';

// The steps on a real (in-memory) SQLite database, as the server runs them.
let storage: Storage;
beforeEach(async () => {
  const db = openDatabase('sqlite::memory:');
  await migrateToLatest(db);
  storage = new Storage(db);
});
afterEach(async () => {
  vi.restoreAllMocks(); // spies on Links, even after a failed test
  await storage.db.destroy();
});

const secrets = SecretBox.fromSetting(SecretBox.generateKey());
const replay = { refuse: true, retrySeconds: 10 };
const client = { ip: '127.0.0.1', userAgent: 'test' };
const identity = (extraData: Record<string, unknown>, more: Partial<SocialIdentity> = {}): SocialIdentity => ({
  uid: 'u1',
  details: { username: 'Ada' },
  extraData,
  ...more,
});
const run = (
  mode: 'associate' | 'auth',
  id: SocialIdentity,
  extra: Partial<Pick<PipelineContext, 'user' | 'options' | 'known'>> = {},
) =>
  runPipeline(defaultPipeline, storage, {
    mode,
    provider: 'p',
    identity: id,
    client,
    secrets,
    replay,
    options: { createUser: false },
    ...extra,
  });

/** Links account `uid` of provider p, with these kept facts, to the user (associate). */
const linkTo = (store: Storage, user: User, uid: string, extraData: Record<string, unknown>) =>
  runPipeline(defaultPipeline, store, {
    mode: 'associate',
    provider: 'p',
    identity: { uid, details: {}, extraData },
    client,
    secrets,
    replay,
    options: { createUser: false },
    user,
  });

describe('the default pipeline', () => {
  it('links in associate mode, is idempotent, and refuses an account linked to another user (409)', async () => {
    const ada = await storage.users.create('ada', null);
    const bob = await storage.users.create('bob', null);
    expect((await run('associate', identity({ a: 1 }), { user: ada })).context.isNewAssociation).toBe(true);
    expect((await run('associate', identity({ a: 1 }), { user: ada })).context.isNewAssociation).toBe(false);
    await expect(run('associate', identity({ a: 1 }), { user: bob })).rejects.toMatchObject({
      code: 'already_associated',
      statusCode: 409,
    });
    expect((await storage.audit.list({ userId: ada.id, limit: 10 })).map((event) => event.event)).toEqual([
      'associated',
    ]);
  });

  it("auth finds the linked user; an unknown account is 404, or a new user when allowed (the host's, when it makes them)", async () => {
    await expect(run('auth', identity({}))).rejects.toMatchObject({ code: 'user_not_found', statusCode: 404 });
    const created = await run('auth', identity({}), { options: { createUser: true } });
    expect(created.context).toMatchObject({ isNewUser: true, isNewAssociation: true });
    expect(created.context.user?.username).toMatch(/^Ada_[0-9a-f]{12}$/);
    expect((await run('auth', identity({}))).context.user?.id).toBe(created.context.user?.id);
    const hosted = await run(
      'auth',
      { ...identity({}), uid: 'u2' },
      { options: { createUser: true, newUser: (trx) => trx.users.ofExternal('host-42') } },
    );
    expect(await storage.users.externalIdOf(hosted.context.user!.id)).toBe('host-42');
  });

  it('replaces the kept facts with what a sign-in read, keeps those it did not read, and writes nothing when they are the same', async () => {
    const ada = await storage.users.create('ada', null);
    await run('associate', identity({ name: 'Ada', scopes: ['a'], limited_login: true }), { user: ada });
    await run('auth', identity({ scopes: ['b'] }, { keptFacts: ['name'] }));
    const link = await storage.links.find('p', 'u1');
    expect(link?.extraData).toEqual({ name: 'Ada', scopes: ['b'] }); // limited_login is gone, name is kept
    await run('auth', identity({ scopes: ['b'], name: 'Ada' }));
    expect((await storage.links.find('p', 'u1'))?.updatedAt).toBe(link?.updatedAt);
  });

  it('writes nothing when a step refuses: the user it made and its link roll back', async () => {
    const refuse = () => {
      throw new Error('policy');
    };
    await expect(
      runPipeline([...defaultPipeline, refuse], storage, {
        mode: 'auth',
        provider: 'p',
        identity: identity({}),
        client,
        secrets,
        replay,
        options: { createUser: true },
      }),
    ).rejects.toThrow('policy');
    expect(await storage.users.list(10)).toEqual([]);
    expect(await storage.links.find('p', 'u1')).toBeUndefined();
  });

  it('carries the link read before the transaction in, and checks it there', async () => {
    const ada = await storage.users.create('ada', null);
    await run('associate', identity({}), { user: ada });
    const link = await storage.links.find('p', 'u1');
    // Read before, still there: its user signs in.
    expect((await run('auth', identity({}), { known: link })).context.user?.id).toBe(ada.id);
    // Read before, unlinked since: the account is unknown now.
    await storage.links.delete(ada.id, 'p', 'u1');
    await expect(run('auth', identity({}), { known: link })).rejects.toMatchObject({ code: 'user_not_found' });
    // None before, linked since: the new user's link loses at the insert, and the run again finds the winner's.
    await run('associate', identity({}), { user: ada });
    const raced = await run('auth', identity({}), { known: null, options: { createUser: true } });
    expect(raced.context).toMatchObject({ isNewUser: false, user: { id: ada.id } });
    expect(await storage.users.list(10)).toHaveLength(1);
  });

  it('SQLite: the link read first in the transaction decides the profile; a call it needs comes after a rollback', async () => {
    const ada = await storage.users.create('ada', null);
    await run('associate', identity({ name: 'Ada', profile_read_at: Math.floor(Date.now() / 1000) }), { user: ada });
    const loadProfile = vi.fn(async () => ({
      details: { username: 'ada.king', fullname: 'Ada King' },
      extraData: { name: 'Ada King' },
    }));
    const reads = vi.spyOn(Links.prototype, 'holdWithUser');
    // loadProfile's decision, left to the transaction (the link was not read before it).
    const needsProfile = (link: { extraData: Record<string, unknown> } | undefined) =>
      link ? profileIsStale(link.extraData, 3600) : true;
    const signIn = (uid: string, createUser = false) =>
      runPipeline(
        defaultPipeline,
        storage,
        {
          mode: 'auth',
          provider: 'p',
          identity: { uid, details: {}, extraData: {}, loadProfile },
          client,
          secrets,
          replay,
          options: { createUser },
          needsProfile,
        },
        startSession(async (trx, user, audit) => trx.audit.record(audit, client)),
      );
    const signInsOf = async (userId: number) =>
      (await storage.audit.list({ userId, limit: 10 })).filter((entry) => entry.event === 'social_sign_in');

    // Kept and fresh: no call; the details are the kept profile's; the link read once (socialUser takes it).
    const kept = await signIn('u1');
    expect(kept.context.user?.id).toBe(ada.id);
    expect(kept.context.identity.details.fullname).toBe('Ada');
    expect(loadProfile).not.toHaveBeenCalled();
    expect(reads).toHaveBeenCalledTimes(1);

    // Stale: rolled back, read, run again — one call, one sign-in written, the new profile kept.
    const link = (await storage.links.find('p', 'u1'))!;
    await storage.links.updateExtraData(link.id, { name: 'Ada', profile_read_at: 1 }, null);
    const stale = await signIn('u1');
    expect(stale.context.identity.details.fullname).toBe('Ada King');
    expect(loadProfile).toHaveBeenCalledTimes(1);
    expect((await storage.links.find('p', 'u1'))?.extraData).toMatchObject({ name: 'Ada King' });
    expect(await signInsOf(ada.id)).toHaveLength(2);

    // Unknown, and a user may be made: the profile first, then one user, named after it.
    loadProfile.mockClear();
    const made = await signIn('u2', true);
    expect(loadProfile).toHaveBeenCalledTimes(1);
    expect(made.context.isNewUser).toBe(true);
    expect(made.context.user?.username).toMatch(/^ada\.king_/);
    expect(await storage.users.list(10)).toHaveLength(2);
    expect(await signInsOf(made.context.user!.id)).toHaveLength(1);
  });

  it("SQLite: a rule of the operator's before socialUser may change the link: socialUser reads it again then", async () => {
    const ada = await storage.users.create('ada', null);
    const fresh = { name: 'Ada', profile_read_at: Math.floor(Date.now() / 1000) };
    await linkTo(storage, ada, 'old', fresh);
    // The app moved its accounts to new ids: a step before socialUser moves the link as its account signs in.
    const moveToNewId: PipelineStep = async (context) => {
      await context.storage.links.moveUid('p', 'old', context.identity.uid, null);
    };
    const { context } = await runPipeline([moveToNewId, ...defaultPipeline], storage, {
      mode: 'auth',
      provider: 'p',
      identity: { uid: 'new', details: {}, extraData: {}, loadProfile: async () => ({ details: {}, extraData: {} }) },
      client,
      secrets,
      replay,
      options: { createUser: false },
      needsProfile: (link) => (link ? profileIsStale(link.extraData, 3600) : false),
    });
    expect(context.user?.id).toBe(ada.id);

    // socialUser twice, a rule between that links the account: the second one reads for itself.
    const linkLegacy: PipelineStep = async (context) => {
      if (!(await context.storage.links.find('p', context.identity.uid)))
        await context.storage.links.insert(ada.id, 'p', context.identity.uid, fresh, null);
    };
    const [, ...rest] = defaultPipeline;
    const again = await runPipeline([authAllowed, socialUser, linkLegacy, ...rest], storage, {
      mode: 'auth',
      provider: 'p',
      identity: {
        uid: 'legacy',
        details: {},
        extraData: {},
        loadProfile: async () => ({ details: {}, extraData: {} }),
      },
      client,
      secrets,
      replay,
      options: { createUser: false },
      needsProfile: () => false,
    });
    expect(again.context.user?.id).toBe(ada.id);
  });

  it('SQLite: the steps before the transaction leave the link and the profile to it; the profile is read with no write lock held', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'social-link-pipeline-'));
    const fileStorage = new Storage(openDatabase(`sqlite:${join(dir, 'db.sqlite')}`));
    const other = new SQLite(join(dir, 'db.sqlite'));
    try {
      await migrateToLatest(fileStorage.db);
      const ada = await fileStorage.users.create('ada', null);
      const stale = { name: 'Ada', profile_read_at: 1 };
      await linkTo(fileStorage, ada, 'u1', stale);
      // Another connection takes the write lock, and gives it back, if nobody holds it.
      other.pragma('busy_timeout = 0');
      const writeLockFree = () => {
        try {
          other.exec('BEGIN IMMEDIATE; ROLLBACK');
          return true;
        } catch {
          return false;
        }
      };
      await fileStorage.transaction(async () => expect(writeLockFree()).toBe(false));
      const lockFreeAtCalls: boolean[] = [];
      const loadProfile = vi.fn(async () => {
        lockFreeAtCalls.push(writeLockFree());
        return { details: { fullname: 'Ada King' }, extraData: { name: 'Ada King' } };
      });
      const reads = [vi.spyOn(Links.prototype, 'find'), vi.spyOn(Links.prototype, 'holdWithUser')];
      const draft = await runBeforeTransaction({
        mode: 'auth',
        provider: { name: 'p', verify: () => Promise.reject(new Error('proven already')) },
        input: {},
        client,
        storage: fileStorage,
        secrets,
        profileMaxAgeSeconds: 3600,
        createUser: false,
        hooks: new BlockingHooks([], console as never),
        identity: { uid: 'u1', details: {}, extraData: {}, loadProfile },
      });
      expect(draft.link).toBeUndefined();
      expect(loadProfile).not.toHaveBeenCalled();
      for (const read of reads) expect(read).not.toHaveBeenCalled();

      const { context } = await runPipeline(defaultPipeline, fileStorage, {
        mode: 'auth',
        provider: 'p',
        identity: draft.identity,
        needsProfile: draft.needsProfile,
        client,
        secrets,
        replay,
        options: { createUser: false },
      });
      expect(context.user?.id).toBe(ada.id);
      expect(context.identity.details.fullname).toBe('Ada King');
      expect(lockFreeAtCalls).toEqual([true]);
    } finally {
      other.close();
      await fileStorage.db.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('auth ends with startSession: the user found (not disabled) and its session, typed, in the same commit', async () => {
    const ada = await storage.users.create('ada', null);
    await run('associate', identity({}), { user: ada });
    const input = { mode: 'auth' as const, provider: 'p', identity: identity({}), client, secrets, replay };
    const options = { createUser: false };
    const { result } = await runPipeline(
      defaultPipeline,
      storage,
      { ...input, options },
      startSession(async (_trx, user, audit) => `${user.username}:${audit.event}`),
    );
    expect(result).toEqual({ user: expect.objectContaining({ id: ada.id }), session: 'ada:social_sign_in' });
    // Nobody found: 404; a disabled user: 403, its session never started.
    const never = startSession(async () => 'never');
    await expect(
      runPipeline(defaultPipeline, storage, { ...input, identity: { ...identity({}), uid: 'u3' }, options }, never),
    ).rejects.toMatchObject({ code: 'user_not_found' });
    await storage.users.setDisabled(ada.id, { reason: 'test' });
    await expect(runPipeline(defaultPipeline, storage, { ...input, options }, never)).rejects.toMatchObject({
      code: 'user_disabled',
    });
  });

  it('is listed: two phases, named steps with a why each; Apple alone has its team transfer', () => {
    const apple = signInPipeline('apple');
    expect(apple.beforeTransaction.map((step) => step.name)).toEqual([
      'proveToken',
      'appleTeamTransfer',
      'readLink',
      'loadProfile',
      'askTheApp',
      'hostUser',
    ]);
    expect(signInPipeline('facebook').beforeTransaction.map((step) => step.name)).toEqual([
      'proveToken',
      'readLink',
      'loadProfile',
      'askTheApp',
      'hostUser',
    ]);
    expect(apple.inTransaction.map((step) => step.name)).toEqual([
      'holdUser',
      'spendProof',
      'authAllowed',
      'socialUser',
      'emailLinkRequired',
      'createUser',
      'associateUser',
      'loadExtraData',
      'endedSessions',
      'record',
      'startSession',
    ]);
    for (const step of [...apple.beforeTransaction, ...apple.inTransaction]) expect(step.why).toMatch(/\w/);
    // An operator's own step is listed where it runs.
    const onlyCompany = () => {};
    expect(signInPipeline('google', [onlyCompany, ...defaultPipeline]).inTransaction[2]?.name).toBe('onlyCompany');
  });
});
