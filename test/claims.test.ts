import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { MemoryTokenStore, SocialLinkClient } from '../client/src/index.js';
import { defaultPipeline } from '../src/core/pipeline.js';
import type { PipelineStep } from '../src/core/pipeline-step.js';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// Custom claims (src/core/claims.ts): the user's own, set by an operator through the admin API (PUT replaces,
// PATCH merges, null removes), in each access token of the user from its next sign-in or refresh, and in
// GET /api/me/; those an operator's pipeline step adds for one sign-in, kept with its session. Audited
// (claims_changed) and told to the app's backend (webhook user.claims_changed), received by a real HTTP server
// that verifies each signature with the Standard Webhooks library.

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
/** The names our access tokens carry of their own: never custom claims. */
const OURS = ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'sid'];

/** What the operator's pipeline step adds to the claims of the sign-ins that run while it is set. */
let stepAdds: Record<string, unknown> | undefined;
const addClaims: PipelineStep = (context) => {
  if (context.mode === 'auth' && stepAdds) Object.assign(context.claims, stepAdds);
};

interface Received {
  type: string;
  data: Record<string, unknown>;
}

describe.each(databaseKinds())('custom claims on %s', (kind) => {
  let stack: Stack;
  let receiver: Server;
  let read: string;
  let write: string;
  const received: Received[] = [];
  /** Deliveries whose signature did not verify (none expected). */
  const forged: string[] = [];

  beforeAll(async () => {
    const verifier = new Webhook(SECRET);
    receiver = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        try {
          const event = verifier.verify(body, request.headers as Record<string, string>) as Received;
          received.push({ type: event.type, data: event.data });
          response.writeHead(204).end();
        } catch {
          forged.push(body);
          response.writeHead(400).end();
        }
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    stack = await startStack(
      kind,
      {
        SOCIAL_LINK_ADMIN: 'true',
        SOCIAL_LINK_WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`,
        SOCIAL_LINK_WEBHOOK_SECRET: SECRET,
        SOCIAL_LINK_WEBHOOK_RETRY_BASE_MS: '50',
      },
      { pipeline: [...defaultPipeline, addClaims] },
    );
    const keys = new Storage(stack.db).serviceKeys;
    read = (await keys.create('support-bot', ['read'])).key;
    write = (await keys.create('backend', ['read', 'write'])).key;
  });
  afterAll(async () => {
    await stack.close();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  });
  beforeEach(() => {
    stepAdds = undefined;
  });
  afterEach(() => expect(forged.splice(0)).toEqual([]));

  const eventually = async (check: () => void | Promise<void>, timeoutMs = 15_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await check();
      } catch (error) {
        if (Date.now() > until) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };

  /** A guest with a Facebook account linked: its uid signs it in again. */
  async function linkedUser() {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: facebook.access_token },
    });
    expect(linked.status).toBe(200);
    return { user, uid: facebook.user_id };
  }

  /** A sign-in on a new phone: a fresh Facebook token of the same account. */
  async function signIn(uid: string): Promise<{ id: number; access_token: string; refresh_token: string }> {
    const facebook = await stack.emulator.mintFacebookToken({ user: { id: uid } });
    const answer = await call(stack.api, 'POST', '/api/auth/facebook/', {
      body: { access_token: facebook.access_token },
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body;
  }

  async function refresh(refreshToken: string): Promise<{ access_token: string; refresh_token: string }> {
    const answer = await call(stack.api, 'POST', '/api/token/refresh/', { body: { refresh_token: refreshToken } });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body;
  }

  /** The token's payload, its signature checked against the server's published keys (as an app's backend does). */
  async function verified(accessToken: string): Promise<JWTPayload> {
    const jwks = createRemoteJWKSet(new URL(`${stack.api}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(accessToken, jwks, { issuer: 'social-link', audience: 'social-link' });
    return payload;
  }

  /** The custom claims of a verified token: whatever is not ours. */
  const custom = (payload: JWTPayload) =>
    Object.fromEntries(Object.entries(payload).filter(([name]) => !OURS.includes(name)));

  /** The token is ours for this user: sub its id, sid one of its sessions, still open. */
  async function expectOurs(payload: JWTPayload, userId: number) {
    expect(payload.sub).toBe(String(userId));
    expect(typeof payload.sid).toBe('string');
    const session = await stack.db
      .selectFrom('sessions')
      .select(['user_id', 'revoked_at'])
      .where('id', '=', payload.sid as string)
      .executeTakeFirst();
    expect(session).toEqual({ user_id: userId, revoked_at: null });
  }

  /** reason null: none sent. */
  const setClaims = (method: 'PUT' | 'PATCH', userId: number, claims: unknown, reason: string | null = 'ticket') =>
    call(stack.api, method, `/admin/api/users/${userId}/claims`, {
      token: write,
      body: reason === null ? { claims } : { claims, reason },
    });

  const storedClaims = async (userId: number) =>
    (await call(stack.api, 'GET', `/admin/api/users/${userId}`, { token: read })).body.user.claims;

  const claimsEvents = async (userId: number) =>
    (
      (await call(stack.api, 'GET', `/admin/api/users/${userId}/audit`, { token: read })).body as Array<{
        event: string;
        detail: string | null;
        actor: string | null;
        reason: string | null;
      }>
    ).filter((event) => event.event === 'claims_changed');

  it("PUT sets the user's claims: the next sign-in's access token carries them, verified with the JWKS, and GET /api/me/ shows them", async () => {
    const { user, uid } = await linkedUser();
    const claims = {
      role: 'editor',
      plan: 'pro',
      orgs: [3, 5],
      'https://example.com/tenant': { id: 7, region: 'eu' },
    };
    const set = await setClaims('PUT', user.id, claims, 'ticket 4121');
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.user).toMatchObject({ id: user.id, claims });
    expect(await storedClaims(user.id)).toEqual(claims);

    // The guest's token was signed before: it carries none.
    expect(custom(await verified(user.access_token))).toEqual({});
    const signedIn = await signIn(uid);
    expect(signedIn.id).toBe(user.id);
    const payload = await verified(signedIn.access_token);
    expect(custom(payload)).toEqual(claims);
    await expectOurs(payload, user.id);

    const me = await call(stack.api, 'GET', '/api/me/', { token: signedIn.access_token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: user.id, claims });
  });

  it('PATCH removes a claim with null and sets another; a refresh brings what changed after the sign-in; PUT {} removes them all', async () => {
    const { user, uid } = await linkedUser();
    expect((await setClaims('PUT', user.id, { role: 'editor', plan: 'free' })).status).toBe(200);
    const signedIn = await signIn(uid);
    const first = await verified(signedIn.access_token);
    expect(custom(first)).toEqual({ role: 'editor', plan: 'free' });

    const patched = await setClaims('PATCH', user.id, { plan: null, beta: true });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body.user.claims).toEqual({ role: 'editor', beta: true });

    const refreshed = await refresh(signedIn.refresh_token);
    const second = await verified(refreshed.access_token);
    expect(custom(second)).toEqual({ role: 'editor', beta: true });
    // The same session: the same user and session id.
    expect([second.sub, second.sid]).toEqual([first.sub, first.sid]);
    await expectOurs(second, user.id);
    expect((await call(stack.api, 'GET', '/api/me/', { token: refreshed.access_token })).body.claims).toEqual({
      role: 'editor',
      beta: true,
    });

    const cleared = await setClaims('PUT', user.id, {});
    expect(cleared.status).toBe(200);
    expect(cleared.body.user.claims).toEqual({});
    const third = await verified((await refresh(refreshed.refresh_token)).access_token);
    expect(custom(third)).toEqual({});
    expect(third.sid).toBe(first.sid);
    expect((await call(stack.api, 'GET', '/api/me/', { token: refreshed.access_token })).body.claims).toEqual({});
    // Stored as none at all.
    const row = await stack.db.selectFrom('users').select('claims').where('id', '=', user.id).executeTakeFirst();
    expect(row?.claims ?? null).toBeNull();
  });

  it('refused with 400 invalid_claims, and nothing changes: reserved names, more than 1000 bytes of JSON (set, or once patched)', async () => {
    const { user, uid } = await linkedUser();
    const before = { role: 'editor', note: 'n'.repeat(500) };
    expect((await setClaims('PUT', user.id, before)).status).toBe(200);
    const refused: Array<['PUT' | 'PATCH', Record<string, unknown>]> = [
      ['PUT', { sub: '1' }],
      ['PUT', { scope: 'admin' }],
      ['PUT', { role: 'admin', sid: 'other-session' }],
      ['PATCH', { iss: 'https://evil.example' }],
      ['PATCH', { sub: null }],
      ['PUT', { aud: 'x', exp: 9_999_999_999, jti: 'x', client_id: 'x', typ: 'x' }],
      ['PUT', { big: 'x'.repeat(1000) }],
      // Each value fits, but not the user's claims once patched.
      ['PATCH', { more: 'm'.repeat(500) }],
      ['PUT', { '': 'empty name' }],
      ['PUT', { ['n'.repeat(129)]: 'long name' }],
    ];
    for (const [method, claims] of refused) {
      const answer = await setClaims(method, user.id, claims);
      expectError(answer, 400, 'invalid_claims');
    }
    // The message says why.
    expect((await setClaims('PUT', user.id, { sub: '1' })).body.message).toMatch(/reserved claim name sub/);
    expect((await setClaims('PUT', user.id, { scope: 'x', sid: 'y' })).body.message).toMatch(/scope, sid/);
    expect((await setClaims('PATCH', user.id, { more: 'm'.repeat(500) })).body.message).toMatch(/more than 1000/);

    // Not an object of claims: refused by the schema, before anything.
    for (const claims of ['role=admin', ['role', 'admin'], null, 7, true]) {
      for (const method of ['PUT', 'PATCH'] as const)
        expectError(await setClaims(method, user.id, claims), 400, 'invalid_request');
    }
    expectError(
      await call(stack.api, 'PUT', `/admin/api/users/${user.id}/claims`, { token: write, body: { reason: 'none' } }),
      400,
      'invalid_request',
    );

    expect(await storedClaims(user.id)).toEqual(before);
    expect(custom(await verified((await signIn(uid)).access_token))).toEqual(before);
    // Only the first PUT was a change.
    expect(await claimsEvents(user.id)).toHaveLength(1);

    // 1000 bytes exactly are fine.
    const limit = { big: 'x'.repeat(1000 - JSON.stringify({ big: '' }).length) };
    expect(Buffer.byteLength(JSON.stringify(limit))).toBe(1000);
    expect((await setClaims('PUT', user.id, limit)).status).toBe(200);
    expect(custom(await verified((await signIn(uid)).access_token))).toEqual(limit);
  });

  it('an unknown user is 404 user_not_found, a read-only key 403 forbidden, no reason 400 reason_required: nothing changes', async () => {
    const { user } = await linkedUser();
    expect((await setClaims('PUT', user.id, { role: 'viewer' })).status).toBe(200);
    for (const method of ['PUT', 'PATCH'] as const) {
      expectError(await setClaims(method, 2_000_000_000, { role: 'admin' }), 404, 'user_not_found');
      expectError(
        await call(stack.api, method, `/admin/api/users/${user.id}/claims`, {
          token: read,
          body: { claims: { role: 'admin' }, reason: 'curious' },
        }),
        403,
        'forbidden',
      );
      expectError(await setClaims(method, user.id, { role: 'admin' }, null), 400, 'reason_required');
      expectError(await setClaims(method, user.id, { role: 'admin' }, '   '), 400, 'reason_required');
      expectError(
        await call(stack.api, method, `/admin/api/users/${user.id}/claims`, {
          body: { claims: { role: 'admin' }, reason: 'no key' },
        }),
        401,
        'invalid_service_key',
      );
      // The user's own access token is no service key.
      expectError(
        await call(stack.api, method, `/admin/api/users/${user.id}/claims`, {
          token: user.access_token,
          body: { claims: { role: 'admin' }, reason: 'self-service' },
        }),
        401,
        'invalid_service_key',
      );
    }
    expect(await storedClaims(user.id)).toEqual({ role: 'viewer' });
    expect(await claimsEvents(user.id)).toHaveLength(1);
  });

  it('audited with the names changed, a change that changes nothing writes nothing; the webhook user.claims_changed lists the names', async () => {
    const { user } = await linkedUser();
    expect((await setClaims('PUT', user.id, { role: 'editor', plan: 'pro' }, 'ticket 1')).status).toBe(200);
    // The same claims, in another order; a PATCH to the same value; a PATCH removing what is not there.
    expect((await setClaims('PUT', user.id, { plan: 'pro', role: 'editor' }, 'again')).status).toBe(200);
    expect((await setClaims('PATCH', user.id, { role: 'editor' }, 'again')).status).toBe(200);
    const unchanged = await setClaims('PATCH', user.id, { absent: null }, 'again');
    expect(unchanged.status).toBe(200);
    expect(unchanged.body.user.claims).toEqual({ role: 'editor', plan: 'pro' });
    expect((await setClaims('PATCH', user.id, { plan: null, tier: 'gold' }, 'ticket 2')).status).toBe(200);

    const events = await claimsEvents(user.id);
    // Newest first.
    expect(events).toEqual([
      expect.objectContaining({ detail: '["plan","tier"]', actor: 'key:backend', reason: 'ticket 2' }),
      expect.objectContaining({ detail: '["role","plan"]', actor: 'key:backend', reason: 'ticket 1' }),
    ]);
    // The user's own history shows it too.
    const own = await call(stack.api, 'GET', '/api/audit/', { token: user.access_token });
    expect(own.body.filter((event: { event: string }) => event.event === 'claims_changed')).toHaveLength(2);

    await eventually(() =>
      expect(
        received
          .filter((event) => event.type === 'user.claims_changed' && event.data.user_id === user.id)
          .map((event) => event.data),
      ).toEqual([
        { user_id: user.id, changed: ['role', 'plan'], actor: 'key:backend' },
        { user_id: user.id, changed: ['plan', 'tier'], actor: 'key:backend' },
      ]),
    );
    // Never the values: the token carries those.
    expect(JSON.stringify(received.filter((event) => event.data.user_id === user.id))).not.toContain('gold');
    const outbox = await stack.db
      .selectFrom('outbox')
      .select('type')
      .where('user_id', '=', user.id)
      .where('type', '=', 'user.claims_changed')
      .execute();
    expect(outbox).toHaveLength(2);
  });

  // The audit row's detail is short text; the webhook carries the names whole (a name may hold ", ").
  it('the webhook lists every name changed, whole, however many and whatever they hold', async () => {
    const { user } = await linkedUser();
    const claims: Record<string, number> = { 'tier, plan': 1 };
    for (let i = 0; i < 60; i++) claims[`claim_${String(i).padStart(2, '0')}`] = 0;
    expect(Buffer.byteLength(JSON.stringify(claims))).toBeLessThan(1000);
    expect((await setClaims('PUT', user.id, claims)).status).toBe(200);
    const [row] = await stack.db
      .selectFrom('outbox')
      .select('payload')
      .where('user_id', '=', user.id)
      .where('type', '=', 'user.claims_changed')
      .execute();
    expect(JSON.parse(row!.payload).data.changed).toEqual(Object.keys(claims));
  });

  it("a pipeline step's claims are in that sign-in's access tokens over the user's, kept by its refreshes, not in another sign-in's", async () => {
    const { user, uid } = await linkedUser();
    expect((await setClaims('PUT', user.id, { tier: 'silver', role: 'editor' })).status).toBe(200);

    stepAdds = { tier: 'gold' };
    const gold = await signIn(uid);
    const goldPayload = await verified(gold.access_token);
    expect(custom(goldPayload)).toEqual({ tier: 'gold', role: 'editor' });
    await expectOurs(goldPayload, user.id);
    expect((await call(stack.api, 'GET', '/api/me/', { token: gold.access_token })).body.claims).toEqual({
      tier: 'gold',
      role: 'editor',
    });

    stepAdds = undefined;
    const plain = await signIn(uid);
    expect(custom(await verified(plain.access_token))).toEqual({ tier: 'silver', role: 'editor' });
    expect((await call(stack.api, 'GET', '/api/me/', { token: plain.access_token })).body.claims).toEqual({
      tier: 'silver',
      role: 'editor',
    });

    // The gold sign-in's refresh keeps its claims (the step did not run again), with the user's as they are now.
    expect((await setClaims('PATCH', user.id, { role: 'admin' })).status).toBe(200);
    const refreshed = await refresh(gold.refresh_token);
    const refreshedPayload = await verified(refreshed.access_token);
    expect(custom(refreshedPayload)).toEqual({ tier: 'gold', role: 'admin' });
    expect(refreshedPayload.sid).toBe(goldPayload.sid);
    expect(custom(await verified((await refresh(plain.refresh_token)).access_token))).toEqual({
      tier: 'silver',
      role: 'admin',
    });
  });

  it('a step that adds a reserved name or too many bytes: the sign-in answers 500 internal_error and writes nothing', async () => {
    const { user, uid } = await linkedUser();
    const count = async (table: 'sessions' | 'audit_events' | 'outbox') =>
      Number(
        (
          await stack.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as('n'))
            .where('user_id', '=', user.id)
            .executeTakeFirstOrThrow()
        ).n,
      );
    const before = {
      sessions: await count('sessions'),
      audit: await count('audit_events'),
      outbox: await count('outbox'),
    };
    const lastLogin = async () =>
      (await stack.db.selectFrom('users').select('last_login_at').where('id', '=', user.id).executeTakeFirst())
        ?.last_login_at;
    const loginBefore = await lastLogin();

    for (const adds of [{ sub: 'admin' }, { scope: 'everything' }, { big: 'x'.repeat(1001) }]) {
      stepAdds = adds;
      const facebook = await stack.emulator.mintFacebookToken({ user: { id: uid } });
      const answer = await call(stack.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: facebook.access_token },
      });
      expectError(answer, 500, 'internal_error');
      // What went wrong is the operator's to read in the log, not the client's.
      expect(JSON.stringify(answer.body)).not.toMatch(/claim/);
    }
    expect(stack.logs.some((line) => line.includes('a pipeline step added claims that cannot be kept'))).toBe(true);
    expect({
      sessions: await count('sessions'),
      audit: await count('audit_events'),
      outbox: await count('outbox'),
    }).toEqual(before);
    expect(await lastLogin()).toEqual(loginBefore);

    stepAdds = undefined;
    expect(custom(await verified((await signIn(uid)).access_token))).toEqual({});
    expect(await count('sessions')).toBe(before.sessions + 1);
  });

  it('the client SDK: claims() reads them from the stored token, me().claims is typed as the app declares them', async () => {
    const { user, uid } = await linkedUser();
    expect((await setClaims('PUT', user.id, { role: 'admin', seats: 3 })).status).toBe(200);
    const client = new SocialLinkClient<{ role: string; seats: number }>({
      baseUrl: stack.api,
      tokenStore: new MemoryTokenStore(),
    });
    expect(await client.claims()).toBeNull();

    const facebook = await stack.emulator.mintFacebookToken({ user: { id: uid } });
    expect((await client.authWith('facebook', { access_token: facebook.access_token })).id).toBe(user.id);
    const claims = await client.claims();
    expect(claims).toEqual({ role: 'admin', seats: 3 });
    expectTypeOf(claims).toEqualTypeOf<Partial<{ role: string; seats: number }> | null>();

    const me = await client.me();
    const role = me.claims.role;
    expectTypeOf(role).toEqualTypeOf<string | undefined>();
    expectTypeOf(me.claims.seats).toEqualTypeOf<number | undefined>();
    expect(role).toBe('admin');
    expect(me.claims).toEqual({ role: 'admin', seats: 3 });

    // A change reaches the device's token with its next refresh.
    expect((await setClaims('PATCH', user.id, { role: 'editor', seats: null })).status).toBe(200);
    expect(await client.claims()).toEqual({ role: 'admin', seats: 3 });
    expect((await client.me()).claims).toEqual({ role: 'editor' });
    await client.refresh();
    expect(await client.claims()).toEqual({ role: 'editor' });
    await client.logout();
    expect(await client.claims()).toBeNull();
  });

  it('a reserved name in a stored row (hand-edited SQL, an import) never reaches a token: iat, sub and exp stay ours', async () => {
    const { user, uid } = await linkedUser();
    const far = 4_000_000_000;
    await stack.db
      .updateTable('users')
      .set({ claims: JSON.stringify({ iat: far, sub: '1', exp: far, role: 'editor' }) })
      .where('id', '=', user.id)
      .execute();
    const payload = await verified((await signIn(uid)).access_token);
    expect(payload.sub).toBe(String(user.id));
    expect(payload.iat).toBeLessThan(far / 2);
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(custom(payload)).toEqual({ role: 'editor' });
  });
});
