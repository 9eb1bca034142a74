import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverEnvFor } from '../src/config/dev.js';
import { AppleApi } from '../src/providers/apple/api.js';
import { ProviderHttp } from '../src/providers/http.js';
import { call, databaseKinds, guest, runCli, startStack, type Stack } from './helpers.js';

// Sign in with Apple team transfer (src/core/apple-transfer.ts), through the real CLI against the emulator's
// migration endpoints (recorded in test/fixtures/apple-migration/), then real sign-ins over HTTP.

const NEW_TEAM = 'NEWTEAM987';
const NEW_KEY_ID = 'NEWKEY0001';
const newTeamKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const newTeamPem = newTeamKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const encryptionKey = randomBytes(32).toString('base64');

const cli = runCli;

describe.each(databaseKinds())('Apple team transfer on %s', (kind) => {
  let stack: Stack;
  let oldTeamEnv: Record<string, string>;
  let newTeamEnv: Record<string, string>;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_LINK_ENCRYPTION_KEYS: encryptionKey });
    oldTeamEnv = {
      ...serverEnvFor(stack.emulatorUrl, stack.apps),
      DATABASE_URL: stack.databaseUrl,
      SOCIAL_LINK_ENCRYPTION_KEYS: encryptionKey,
    } as Record<string, string>;
    newTeamEnv = {
      ...oldTeamEnv,
      SOCIAL_AUTH_APPLE_TEAM_ID: NEW_TEAM,
      SOCIAL_AUTH_APPLE_KEY_ID: NEW_KEY_ID,
      SOCIAL_AUTH_APPLE_PRIVATE_KEY: newTeamPem,
    };
    await stack.emulator.addAppleTeam(NEW_TEAM, {
      [NEW_KEY_ID]: createPublicKey(newTeamKey.privateKey).export({ format: 'jwk' }) as Record<string, unknown>,
    });
  });
  afterAll(() => stack.close());

  const appleSignIn = async (sub: string, claims: Record<string, unknown> = {}) =>
    call(stack.api, 'POST', '/api/auth/apple/', {
      body: { id_token: (await stack.emulator.mintIdToken('apple', { sub, claims })).id_token },
    });
  const appleUids = async () =>
    await stack.db
      .selectFrom('social_associations')
      .select(['uid', 'user_id', 'provider_tokens'])
      .where('provider', '=', 'apple')
      .orderBy('user_id')
      .execute();

  it("export then import moves every Apple link to the new team's ids; the same people sign in after it; runs again change nothing", async () => {
    // Three Apple users (one with a kept refresh token, from a code), and one link Apple does not know.
    const users: Array<{ id: number; oldSub: string }> = [];
    for (let i = 0; i < 3; i++) {
      const user = await guest(stack.api);
      const body =
        i === 0
          ? { code: (await stack.emulator.mintAppleCode({})).code }
          : { id_token: (await stack.emulator.mintIdToken('apple', {})).id_token };
      const linked = await call(stack.api, 'POST', '/api/associate/apple/', { token: user.access_token, body });
      expect(linked.status).toBe(200);
      users.push({ id: user.id, oldSub: linked.body.association.uid as string });
    }
    const stranger = await guest(stack.api);
    await stack.db
      .insertInto('social_associations')
      .values({
        user_id: stranger.id,
        provider: 'apple',
        uid: '000999.00000000000000000000000000000000.0000',
        extra_data: '{}',
        provider_tokens: null,
        verified_email: null,
        created_at: new Date().toISOString(),
        updated_at: new Date().toISOString(),
      })
      .execute();
    const sealedBefore = (await appleUids()).find((row) => row.user_id === users[0]!.id)!.provider_tokens;
    expect(sealedBefore).toBeTruthy();

    const exported = await cli(
      ['apple', 'transfer', 'export', '--target', NEW_TEAM, '--json', '--batch', '2'],
      oldTeamEnv,
    );
    expect(exported.stderr).toBe('');
    expect(exported.status, 'the refused link makes it exit 2').toBe(2);
    const exportReport = JSON.parse(exported.stdout);
    expect(exportReport).toMatchObject({
      exported: 3,
      failed: [{ uid: '000999.00000000000000000000000000000000.0000', error: 'invalid_request' }],
    });

    // Nothing moves before the import: the old team's ids still sign in.
    expect((await appleSignIn(users[1]!.oldSub)).body.id).toBe(users[1]!.id);

    // With the old team's key, the new team's ids cannot be had.
    const wrongTeam = await cli(['apple', 'transfer', 'import', '--json'], oldTeamEnv);
    expect(JSON.parse(wrongTeam.stdout)).toMatchObject({ imported: 0 });

    const imported = await cli(['apple', 'transfer', 'import', '--json'], newTeamEnv);
    expect(imported.status, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ imported: 3, failed: [] });

    const after = await appleUids();
    for (const user of users) {
      const row = after.find((link) => link.user_id === user.id)!;
      expect(row.uid).not.toBe(user.oldSub);
      expect(row.uid).toMatch(/^\d{6}\.[0-9a-f]{32}\.\d{4}$/);
      // The same person signs in with the new team's id; the old one is unknown now.
      const signedIn = await appleSignIn(row.uid);
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.id).toBe(user.id);
    }
    expect((await appleSignIn(users[2]!.oldSub)).status).toBe(404);
    // The kept refresh token went with the link, sealed for its new uid.
    const moved = after.find((row) => row.user_id === users[0]!.id)!;
    expect(moved.provider_tokens).toBeTruthy();
    expect(moved.provider_tokens).not.toBe(sealedBefore);

    // Again: nothing more to do.
    const again = await cli(['apple', 'transfer', 'import', '--json'], newTeamEnv);
    expect(JSON.parse(again.stdout)).toMatchObject({ imported: 0, failed: [] });
    const exportAgain = await cli(['apple', 'transfer', 'export', '--target', NEW_TEAM, '--json'], oldTeamEnv);
    expect(JSON.parse(exportAgain.stdout)).toMatchObject({ exported: 0 });
    expect(await appleUids()).toEqual(after);

    const status = await cli(['apple', 'transfer', 'status', '--json'], newTeamEnv);
    expect(JSON.parse(status.stdout).rows).toMatchObject({ imported: 3, failed: 1 });
  });

  it('during the window, an ID token with transfer_sub moves its exported link at sign-in, before any import', async () => {
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', '/api/associate/apple/', {
      token: user.access_token,
      body: { id_token: (await stack.emulator.mintIdToken('apple', {})).id_token },
    });
    const oldSub = linked.body.association.uid as string;
    const exported = await cli(['apple', 'transfer', 'export', '--target', NEW_TEAM, '--json'], oldTeamEnv);
    expect(exported.status, exported.stderr).toBe(2); // the unknown link of the first test is refused again
    const row = await stack.db
      .selectFrom('apple_transfers')
      .selectAll()
      .where('old_sub', '=', oldSub)
      .executeTakeFirstOrThrow();

    // The app, now the new team's, gets an ID token with the new sub and the transfer_sub claim.
    const http = new ProviderHttp('apple', { timeoutMs: 2000 });
    const api = new AppleApi(http, `${stack.emulatorUrl}/apple`, {
      teamId: NEW_TEAM,
      keyId: NEW_KEY_ID,
      privateKeyPem: newTeamPem,
    });
    const clientId = stack.apps.apple.clientIds[0]!;
    const answer = await api.migrationInfo(clientId, await api.migrationToken(clientId), {
      transfer_sub: row.transfer_sub!,
    });
    await http.close();
    const newSub = 'body' in answer ? String(answer.body.sub) : '';
    expect(newSub).toMatch(/^\d{6}\./);

    const signedIn = await appleSignIn(newSub, { transfer_sub: row.transfer_sub });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.id).toBe(user.id);
    expect((await appleUids()).find((link) => link.user_id === user.id)!.uid).toBe(newSub);
    const audit = await call(stack.api, 'GET', '/api/audit/', { token: signedIn.body.access_token });
    expect(JSON.stringify(audit.body)).toContain('uid_moved');

    // A transfer_sub nobody exported proves nothing: unknown.
    expect(
      (
        await appleSignIn('111111.22222222222222222222222222222222.3333', {
          transfer_sub: '444444.55555555555555555555555555555555.6666',
        })
      ).status,
    ).toBe(404);
  });
});
