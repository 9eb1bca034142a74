import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { decodeJwt, importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverEnvFor } from '../../src/config/dev.js';
import { ProviderUnavailableError } from '../../src/lib/errors.js';
import { AppleApi } from '../../src/providers/apple/api.js';
import { ProviderHttp } from '../../src/providers/http.js';
import { shapeDifferences } from '../contract/fixtures.js';
import { call, databaseKinds, guest, runCli, startStack, type Stack } from '../helpers.js';

// Sign in with Apple team transfer, in two parts: Apple's recorded exchanges, then the transfer itself. (Apple's sign-in,
// codes and notifications: apple.test.ts.)

// Apple's user-migration exchanges as the cited sources record them (test/fixtures/apple-migration/): our
// client reads each recorded answer right, and the emulator answers each situation in the same shape.

interface MigrationFixture {
  file: string;
  endpoint: 'token' | 'usermigrationinfo' | 'id_token';
  situation: string;
  sources: Array<{ url?: string; repo?: string; path?: string; says: string }>;
  request?: { body: Record<string, string> };
  response?: { status: number; headers?: Record<string, string>; body: Record<string, unknown> };
  token?: { header: Record<string, unknown>; claims: Record<string, unknown> };
  match?: string[];
  optional?: string[];
}

const DIR = new URL('../fixtures/apple-migration/', import.meta.url);
const fixtures: MigrationFixture[] = readdirSync(DIR)
  .filter((name) => name.endsWith('.json'))
  .map((name) => ({
    ...(JSON.parse(readFileSync(new URL(name, DIR), 'utf8')) as Omit<MigrationFixture, 'file'>),
    file: name,
  }));
const fixture = (file: string) => fixtures.find((candidate) => candidate.file === file)!;

const teamKey = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('Apple migration fixtures', () => {
  it('each is cited and has an answer', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(6);
    for (const f of fixtures) {
      expect(f.sources.length, f.file).toBeGreaterThan(0);
      expect(Boolean(f.response) !== Boolean(f.token), f.file).toBe(true);
    }
  });
});

describe('our Apple client, answered exactly as recorded', () => {
  let server: Server;
  let url: string;
  let answer: MigrationFixture;
  const seen: Array<{ path: string; authorization?: string; form: Record<string, string> }> = [];
  beforeAll(async () => {
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        seen.push({
          path: request.url ?? '',
          authorization: request.headers.authorization,
          form: Object.fromEntries(new URLSearchParams(body)),
        });
        const recorded = answer.response!;
        response.writeHead(recorded.status, { 'content-type': 'application/json', ...recorded.headers });
        response.end(JSON.stringify(recorded.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const client = () =>
    new AppleApi(new ProviderHttp('apple', { timeoutMs: 2000 }), url, {
      teamId: 'OLDTEAM123',
      keyId: 'KEY1234567',
      privateKeyPem: teamKey(),
    });

  it('token.client_credentials: asks as recorded, reads the access token', async () => {
    answer = fixture('token.client_credentials.json');
    seen.length = 0;
    expect(await client().migrationToken('com.mytest.app')).toBe(answer.response!.body.access_token);
    const asked = seen[0]!;
    expect(asked.path).toBe(answer.request!.body && '/auth/token');
    expect(Object.keys(asked.form).sort()).toEqual(Object.keys(answer.request!.body).sort());
    expect(asked.form).toMatchObject({
      grant_type: 'client_credentials',
      scope: 'user.migration',
      client_id: 'com.mytest.app',
    });
    expect(decodeJwt(asked.form.client_secret!)).toMatchObject({
      iss: 'OLDTEAM123',
      sub: 'com.mytest.app',
      aud: 'https://appleid.apple.com',
    });
  });

  it("token.invalid_client: the operator must fix the team key (502, never the user's fault)", async () => {
    answer = fixture('token.invalid_client.json');
    const refused = await client()
      .migrationToken('com.mytest.app')
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ProviderUnavailableError);
    expect((refused as ProviderUnavailableError).failure).toBe('app_refused');
  });

  it('usermigrationinfo.transfer_sub and .sub: asks as recorded (Bearer, form), reads the identifiers', async () => {
    for (const file of ['usermigrationinfo.transfer_sub.json', 'usermigrationinfo.sub.json']) {
      answer = fixture(file);
      seen.length = 0;
      const form = answer.request!.body;
      const ask =
        'transfer_sub' in form ? { transfer_sub: form.transfer_sub! } : { sub: form.sub!, target: 'NEWTEAM987' };
      expect(await client().migrationInfo('com.mytest.app', 'the-token', ask)).toEqual({ body: answer.response!.body });
      expect(seen[0]!.path).toBe('/auth/usermigrationinfo');
      expect(seen[0]!.authorization).toBe('Bearer the-token');
      expect(Object.keys(seen[0]!.form).sort()).toEqual(Object.keys(form).sort());
    }
  });

  it("usermigrationinfo errors: invalid_request and invalid_grant are answered as refusals; invalid_client is the operator's", async () => {
    answer = fixture('usermigrationinfo.invalid_request.json');
    expect(await client().migrationInfo('com.mytest.app', 't', { sub: 'x', target: 'NEWTEAM987' })).toEqual({
      refused: 'invalid_request',
    });
    answer = fixture('usermigrationinfo.invalid_grant.json');
    expect(await client().migrationInfo('com.mytest.app', 't', { sub: 'x', target: 'NEWTEAM987' })).toEqual({
      refused: 'invalid_grant',
    });
    answer = fixture('usermigrationinfo.invalid_client.json');
    await expect(client().migrationInfo('com.mytest.app', 't', { transfer_sub: 'x' })).rejects.toBeInstanceOf(
      ProviderUnavailableError,
    );
  });
});

describe('the emulator answers each recorded situation in the same shape', () => {
  let stack: Stack;
  const newTeam = { id: 'NEWTEAM987', keyId: 'NEWKEY0001', pem: teamKey() };
  beforeAll(async () => {
    stack = await startStack('sqlite');
    await stack.emulator.addAppleTeam(newTeam.id, {
      [newTeam.keyId]: createPublicKey(createPrivateKey(newTeam.pem)).export({ format: 'jwk' }) as Record<
        string,
        unknown
      >,
    });
  });
  afterAll(() => stack.close());

  const secret = async (team: { id: string; keyId: string; pem: string }) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: team.keyId })
      .setIssuer(team.id)
      .setSubject(clientId())
      .setAudience('https://appleid.apple.com')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(await importPKCS8(team.pem, 'ES256'));
  const clientId = () => stack.apps.apple.clientIds[0]!;
  const oldTeam = () => ({
    id: stack.apps.apple.teamId,
    keyId: stack.apps.apple.keyId,
    pem: stack.apps.apple.privateKeyPem,
  });
  const post = async (path: string, form: Record<string, string>, bearer?: string) => {
    const response = await fetch(`${stack.emulatorUrl}/apple${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
      },
      body: new URLSearchParams(form).toString(),
    });
    return {
      status: response.status,
      headers: response.headers,
      body: (await response.json()) as Record<string, unknown>,
    };
  };
  const token = async (team: { id: string; keyId: string; pem: string }) =>
    (
      await post('/auth/token', {
        grant_type: 'client_credentials',
        scope: 'user.migration',
        client_id: clientId(),
        client_secret: await secret(team),
      })
    ).body.access_token as string;
  const expectRecorded = (file: string, got: { status: number; headers: Headers; body: Record<string, unknown> }) => {
    const recorded = fixture(file);
    expect(got.status, file).toBe(recorded.response!.status);
    expect(got.headers.get('content-type')?.split(';')[0]).toBe('application/json');
    expect(shapeDifferences(recorded.response!.body, got.body, recorded.match, recorded.optional), file).toEqual([]);
  };

  it('token.client_credentials and token.invalid_client', async () => {
    expectRecorded(
      'token.client_credentials.json',
      await post('/auth/token', {
        grant_type: 'client_credentials',
        scope: 'user.migration',
        client_id: clientId(),
        client_secret: await secret(oldTeam()),
      }),
    );
    const forged = { ...oldTeam(), pem: teamKey() };
    expectRecorded(
      'token.invalid_client.json',
      await post('/auth/token', {
        grant_type: 'client_credentials',
        scope: 'user.migration',
        client_id: clientId(),
        client_secret: await secret(forged),
      }),
    );
  });

  it('usermigrationinfo: transfer_sub, sub, and the refusals', async () => {
    const user = await stack.emulator.mintIdToken('apple', { email: 'ep9ks2tnph@privaterelay.appleid.com' });
    const asked = await post(
      '/auth/usermigrationinfo',
      { sub: user.sub, target: newTeam.id, client_id: clientId(), client_secret: await secret(oldTeam()) },
      await token(oldTeam()),
    );
    expectRecorded('usermigrationinfo.transfer_sub.json', asked);
    const exchanged = await post(
      '/auth/usermigrationinfo',
      { transfer_sub: String(asked.body.transfer_sub), client_id: clientId(), client_secret: await secret(newTeam) },
      await token(newTeam),
    );
    expectRecorded('usermigrationinfo.sub.json', exchanged);
    expect(exchanged.body.sub).not.toBe(user.sub);

    expectRecorded(
      'usermigrationinfo.invalid_request.json',
      await post(
        '/auth/usermigrationinfo',
        { sub: oldTeam().id, target: newTeam.id, client_id: clientId(), client_secret: await secret(oldTeam()) },
        await token(oldTeam()),
      ),
    );
    expectRecorded(
      'usermigrationinfo.invalid_grant.json',
      await post(
        '/auth/usermigrationinfo',
        { sub: user.sub, target: newTeam.id, client_id: clientId(), client_secret: await secret(oldTeam()) },
        'expired-or-unknown',
      ),
    );
    expectRecorded(
      'usermigrationinfo.invalid_client.json',
      await post(
        '/auth/usermigrationinfo',
        {
          transfer_sub: String(asked.body.transfer_sub),
          client_id: clientId(),
          client_secret: await secret({ ...newTeam, pem: teamKey() }),
        },
        await token(newTeam),
      ),
    );
  });

  it('id_token.transfer_sub: a minted token carries the recorded claims', async () => {
    const recorded = fixture('id_token.transfer_sub.json').token!;
    const minted = await stack.emulator.mintIdToken('apple', {
      email: 'ep9ks2tnph@privaterelay.appleid.com',
      claims: { transfer_sub: recorded.claims.transfer_sub },
    });
    const claims = decodeJwt(minted.id_token);
    const fx = fixture('id_token.transfer_sub.json');
    expect(
      shapeDifferences(recorded.claims, claims, fx.match, [...(fx.optional ?? []), 'nonce', 'c_hash', 'at_hash']),
    ).toEqual([]);
  });
});

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
