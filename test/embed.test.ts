import { defaultPipeline } from '../src/core/pipeline.js';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorClient, startEmulator, type RunningEmulator } from '@social-link/emulator';
import { emulatedApps, emulatorOptionsFor, generateAppleKey, serverEnvFor } from '../src/config/dev.js';
import { migrateSocialLink, socialLink, type SocialLinkPluginOptions } from '../src/embed.js';
import { openDatabase } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';

// The embedding plugin's own rules, with a minimal host: its users are named by the header X-Member.

describe('the embedding plugin', () => {
  let emulator: RunningEmulator;
  let provider: EmulatorClient;
  let env: Record<string, string | undefined>;
  const dir = mkdtempSync(join(tmpdir(), 'embed-'));
  let n = 0;

  beforeAll(async () => {
    const apps = emulatedApps({}, generateAppleKey());
    emulator = await startEmulator(emulatorOptionsFor(apps));
    provider = new EmulatorClient(emulator.url);
    env = serverEnvFor(emulator.url, apps);
  });
  afterAll(async () => {
    await emulator.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function host(
    options: Partial<SocialLinkPluginOptions> = {},
    hostEnv: Record<string, string | undefined> = {},
    database = `sqlite:${join(dir, `social-link-${++n}.sqlite`)}`,
  ) {
    await migrateSocialLink(database);
    const app: FastifyInstance = Fastify();
    await app.register(socialLink, {
      prefix: '/social',
      database,
      env: { ...env, ...hostEnv },
      resolveUser: (request) => (request.headers['x-member'] as string | undefined) ?? null,
      signIn: (memberId) => ({ member: memberId }),
      ...options,
    });
    const inject = async (method: 'GET' | 'POST' | 'DELETE', url: string, member?: string, payload?: object) => {
      const answer = await app.inject({ method, url, payload, headers: member ? { 'x-member': member } : {} });
      return { status: answer.statusCode, body: answer.body ? answer.json() : undefined };
    };
    const storage = () => {
      const db = openDatabase(database);
      return { storage: new Storage(db), close: () => db.destroy() };
    };
    return { app, inject, storage };
  }

  it('never makes a user of its own: SOCIAL_AUTH_CREATE_USER without a createUser hook is 404, and leaves nothing behind', async () => {
    const { app, inject, storage } = await host(
      {},
      { SOCIAL_AUTH_CREATE_USER: 'true', DATABASE_URL: 'mysql://the-hosts-own-database' },
    );
    const fb = await provider.mintFacebookToken();
    expect((await inject('POST', '/social/auth/facebook/', undefined, { access_token: fb.access_token })).status).toBe(
      404,
    );
    const { storage: s, close } = storage();
    expect(await s.users.list(10)).toEqual([]);
    await close();
    expect((await inject('POST', '/social/associate/facebook/', 'm_1', { access_token: fb.access_token })).status).toBe(
      200,
    );
    expect((await inject('POST', '/social/auth/facebook/', undefined, { access_token: fb.access_token })).body).toEqual(
      { member: 'm_1' },
    );
    await app.close();
  });

  it("asks the host's createUser hook for an unknown account, outside its transaction, and signs that user in", async () => {
    const made: string[] = [];
    const { app, inject } = await host({ createUser: (identity) => (made.push(identity.uid), `m_new_${made.length}`) });
    const google = await provider.mintIdToken('google');
    expect((await inject('POST', '/social/auth/google/', undefined, { id_token: google.id_token })).body).toEqual({
      member: 'm_new_1',
    });
    expect((await inject('POST', '/social/auth/google/', undefined, { id_token: google.id_token })).body).toEqual({
      member: 'm_new_1',
    });
    expect(made).toEqual([google.sub]);
    expect((await inject('GET', '/social/associations/', 'm_new_1')).body).toEqual([
      expect.objectContaining({ provider: 'google', uid: google.sub, user_id: 'm_new_1' }),
    ]);
    await app.close();
  });

  it('reading or unlinking makes no user; a refused link lands in the audit log', async () => {
    const { app, inject, storage } = await host({ canRemoveLastLink: () => false });
    expect((await inject('GET', '/social/associations/', 'm_reader')).body).toEqual([]);
    expect((await inject('DELETE', '/social/associations/facebook/1/', 'm_reader')).body.code).toBe(
      'association_not_found',
    );
    const fb = await provider.mintFacebookToken();
    await inject('POST', '/social/associate/facebook/', 'm_owner', { access_token: fb.access_token });
    const refused = (await inject('POST', '/social/associate/facebook/', 'm_thief', { access_token: fb.access_token }))
      .body;
    expect(refused.code).toBe('already_associated');
    // The host's users are the host's: no merge token (this plugin has no merge route).
    expect(refused.merge_token).toBeUndefined();
    expect((await inject('DELETE', `/social/associations/facebook/${fb.user_id}/`, 'm_owner')).body.code).toBe(
      'last_login_method',
    );
    const { storage: s, close } = storage();
    expect((await s.users.list(10)).map((user) => user.username).sort()).toEqual(['app:m_owner', 'app:m_thief']);
    expect((await s.audit.list({ limit: 10 })).map((event) => event.event)).toContain('refused');
    await close();
    await app.close();
  });

  it('a user an operator disabled is answered 403 user_disabled: auth without calling the host, associate without linking', async () => {
    const signedIn: string[] = [];
    const { app, inject, storage } = await host({
      signIn: (memberId) => (signedIn.push(String(memberId)), { member: memberId }),
    });
    const fb = await provider.mintFacebookToken();
    expect(
      (await inject('POST', '/social/associate/facebook/', 'm_banned', { access_token: fb.access_token })).status,
    ).toBe(200);
    const { storage: s, close } = storage();
    const user = (await s.users.findExternal('m_banned'))!;
    // As the admin API's disable does it (this plugin serves no admin API of its own).
    await s.users.setDisabled(user.id, { reason: 'chargebacks' });
    const auth = await inject('POST', '/social/auth/facebook/', undefined, { access_token: fb.access_token });
    expect(auth).toMatchObject({ status: 403, body: { code: 'user_disabled' } });
    expect(signedIn).toEqual([]);
    const google = await provider.mintIdToken('google');
    const link = await inject('POST', '/social/associate/google/', 'm_banned', { id_token: google.id_token });
    expect(link).toMatchObject({ status: 403, body: { code: 'user_disabled' } });
    expect((await s.links.ofUser(user.id)).map((row) => row.provider)).toEqual(['facebook']);
    // Both attempts are in the user's log.
    const refused = (await s.audit.list({ userId: user.id, limit: 10 })).filter(
      (event) => event.event === 'refused' && event.detail === 'user_disabled',
    );
    expect(refused.map((event) => event.provider).sort()).toEqual(['facebook', 'google']);
    await close();
    await app.close();
  });

  it("hands the host's signIn the claims its pipeline steps added for the sign-in (for the host's own session)", async () => {
    const given: unknown[] = [];
    const { app, inject } = await host({
      pipeline: [...defaultPipeline, (context) => void (context.claims.tenant = 'acme')],
      signIn: (memberId, _request, _reply, claims) => (given.push(claims), { member: memberId }),
    });
    const fb = await provider.mintFacebookToken();
    expect(
      (await inject('POST', '/social/associate/facebook/', 'm_tenant', { access_token: fb.access_token })).status,
    ).toBe(200);
    const auth = await inject('POST', '/social/auth/facebook/', undefined, { access_token: fb.access_token });
    expect(auth).toMatchObject({ status: 200, body: { member: 'm_tenant' } });
    expect(given).toEqual([{ tenant: 'acme' }]);
    await app.close();
  });

  it("refuses the earlier plugin's ways: the `db` option, no database, and our tables among the host's", async () => {
    await expect(host({ db: {} } as never)).rejects.toThrow(/`db` option is gone/);
    await expect(host({ database: undefined })).rejects.toThrow(/database/);
    const hostDb = new Kysely<any>({ dialect: new SqliteDialect({ database: new SQLite(join(dir, 'host.sqlite')) }) }); // eslint-disable-line @typescript-eslint/no-explicit-any
    await hostDb.schema.createTable('social_link_associations').addColumn('id', 'integer').execute();
    await expect(migrateSocialLink(hostDb as never)).rejects.toThrow(/database of its own/);
    await hostDb.destroy();
  });

  it('outside production keeps its generated encryption key in ./data: an Apple grant sealed before a restart is still revoked', async () => {
    const cwd = process.cwd();
    process.chdir(dir); // the default ./data, of this test's own directory
    try {
      const database = `sqlite:${join(dir, 'restarted.sqlite')}`;
      const first = await host({}, { SOCIAL_LINK_ENCRYPTION_KEYS: undefined }, database);
      const minted = await provider.mintAppleCode();
      expect(
        (
          await first.inject('POST', '/social/associate/apple/', 'm_apple', {
            id_token: minted.id_token,
            code: minted.code,
          })
        ).status,
      ).toBe(200);
      await first.app.close();

      const restarted = await host({}, { SOCIAL_LINK_ENCRYPTION_KEYS: undefined }, database);
      const before = (await provider.appleRevocations()).revoked.length;
      const uid = (await restarted.inject('GET', '/social/associations/', 'm_apple')).body[0].uid;
      expect((await restarted.inject('DELETE', `/social/associations/apple/${uid}/`, 'm_apple')).status).toBe(204);
      expect((await provider.appleRevocations()).revoked.length).toBe(before + 1);
      expect(statSync(join(dir, 'data', 'dev-encryption-key')).mode & 0o777).toBe(0o600);
      await restarted.app.close();
    } finally {
      process.chdir(cwd);
    }
  });

  it('refuses to start in production without SOCIAL_LINK_ENCRYPTION_KEYS when it would keep Apple tokens', async () => {
    const app = Fastify();
    const database = `sqlite:${join(dir, `social-link-${++n}.sqlite`)}`;
    await migrateSocialLink(database);
    const registered = app.register(socialLink, {
      database,
      env: { ...env, NODE_ENV: 'production', SOCIAL_LINK_ENCRYPTION_KEYS: undefined },
      resolveUser: () => null,
      signIn: () => ({}),
    });
    await expect(registered.ready()).rejects.toThrow(/SOCIAL_LINK_ENCRYPTION_KEYS must be set in production/);
    await app.close();
  });
});
