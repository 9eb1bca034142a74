import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { EmulatorClient, startEmulator } from '@social-link/emulator';
import { emulatedApps, emulatorOptionsFor, generateAppleKey, serverEnvFor } from '../../src/config/dev.js';
import { buildHostApp } from './app.js';

describe('social-link inside an existing Fastify app', () => {
  let host: FastifyInstance;
  let emulator: { url: string; close(): Promise<void> };
  let provider: EmulatorClient;
  let dir: string;

  beforeAll(async () => {
    const apps = emulatedApps({}, generateAppleKey());
    emulator = await startEmulator(emulatorOptionsFor(apps));
    provider = new EmulatorClient(emulator.url);
    dir = mkdtempSync(join(tmpdir(), 'host-app-'));
    host = await buildHostApp({
      databasePath: join(dir, 'host.sqlite'),
      socialLinkDatabase: `sqlite:${join(dir, 'social-link.sqlite')}`,
      env: serverEnvFor(emulator.url, apps),
    });
  });
  afterAll(async () => {
    await host.close();
    await emulator.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const inject = async (method: 'GET' | 'POST' | 'DELETE', url: string, session?: string, payload?: object) => {
    const answer = await host.inject({
      method,
      url,
      payload,
      headers: session ? { authorization: `Session ${session}` } : {},
    });
    return { status: answer.statusCode, body: answer.body ? answer.json() : undefined };
  };

  it("links a Facebook account to the host's member and signs that member in again on a new phone", async () => {
    const member = (await inject('POST', '/members', undefined, { name: 'Ada' })).body;
    const fb = await provider.mintFacebookToken();
    const linked = await inject('POST', '/social/associate/facebook/', member.session, {
      access_token: fb.access_token,
    });
    expect(linked).toEqual({
      status: 200,
      body: { success: true, association: { provider: 'facebook', uid: fb.user_id, created: true } },
    });

    const newPhone = await inject('POST', '/social/auth/facebook/', undefined, { access_token: fb.access_token });
    expect(newPhone.status).toBe(200);
    expect(newPhone.body.id).toBe(member.id); // the HOST's user id
    expect((await inject('GET', '/whoami', newPhone.body.session)).body).toEqual({ id: member.id }); // the HOST's session

    const links = await inject('GET', '/social/associations/', member.session);
    expect(links.body).toEqual([
      expect.objectContaining({ provider: 'facebook', uid: fb.user_id, user_id: member.id }),
    ]);
  });

  it("uses the host's authentication: no host session, no linking", async () => {
    const fb = await provider.mintFacebookToken();
    const answer = await inject('POST', '/social/associate/facebook/', 'not-a-session', {
      access_token: fb.access_token,
    });
    expect(answer.status).toBe(401);
    expect(answer.body.code).toBe('not_authenticated');
  });

  it("refuses another member's account, unknown accounts, forged tokens, and unlinks", async () => {
    const owner = (await inject('POST', '/members', undefined, { name: 'Owner' })).body;
    const other = (await inject('POST', '/members', undefined, { name: 'Other' })).body;
    const google = await provider.mintIdToken('google');
    await inject('POST', '/social/associate/google/', owner.session, { id_token: google.id_token });
    expect(
      (await inject('POST', '/social/associate/google/', other.session, { id_token: google.id_token })).body.code,
    ).toBe('already_associated');
    const stranger = await provider.mintFacebookToken();
    expect(
      (await inject('POST', '/social/auth/facebook/', undefined, { access_token: stranger.access_token })).status,
    ).toBe(404);
    const forged = await provider.mintIdToken('google', { forge: 'none_alg' });
    expect((await inject('POST', '/social/auth/google/', undefined, { id_token: forged.id_token })).body.code).toBe(
      'invalid_token',
    );
    expect((await inject('DELETE', `/social/associations/google/${google.sub}/`, owner.session)).status).toBe(204);
    expect((await inject('POST', '/social/auth/google/', undefined, { id_token: google.id_token })).status).toBe(404);
  });

  it("leaves the host's own routes and errors alone", async () => {
    expect((await inject('GET', '/whoami')).body).toEqual({ error: 'sign in' });
  });
});
