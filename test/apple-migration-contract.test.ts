import { createServer, type Server } from 'node:http';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { decodeJwt, importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderUnavailableError } from '../src/lib/errors.js';
import { AppleApi } from '../src/providers/apple/api.js';
import { ProviderHttp } from '../src/providers/http.js';
import { shapeDifferences } from './contract/fixtures.js';
import { startStack, type Stack } from './helpers.js';

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

const DIR = new URL('./fixtures/apple-migration/', import.meta.url);
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
