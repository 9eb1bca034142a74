import { randomBytes } from 'node:crypto';
import { createServer as createTcpServer } from 'node:net';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Storage } from '../src/store/storage.js';
import { call, databaseKinds, expectError, guest, startStack, type Answer, type Stack } from './helpers.js';

// Blocking hooks (src/core/blocking-hooks.ts): the app's own backend, asked before a sign-in's or a link's
// transaction, may refuse it (403 hook_refused, nothing written) or add claims to its session. Here that backend is
// a real HTTP server on loopback that verifies each call's signature with the Standard Webhooks library, as an
// app's would; it answers what each test tells it to, or holds the request open, or is not there at all. A hook
// that fails refuses with 503 hook_unavailable (fail closed, the default) or lets the sign-in go on (fail open),
// is counted in /metrics, and is never a provider's failure.

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
/** before_link's own secret (SOCIAL_LINK_HOOK_BEFORE_LINK_SECRET) in the main stack: the others share SECRET. */
const LINK_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
/** Our access tokens' own names. */
const OURS = ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'sid'];
const HOOK_METRIC = 'social_link_blocking_hook_duration_seconds_count';

interface HookEvent {
  type: string;
  timestamp: string;
  data: {
    provider: string;
    uid: string;
    user: { id: number; username: string; claims: Record<string, unknown> } | null;
    new_user: boolean;
    profile: Record<string, unknown>;
    facts: Record<string, unknown>;
    client: { ip: string | null; user_agent: string | null };
  };
}

/** One call the receiver got, its signature verified. */
interface HookCall {
  /** The stack it came from: main, closed, open. */
  stack: string;
  hook: string;
  headers: IncomingHttpHeaders;
  body: string;
  event: HookEvent;
}

/** What the receiver answers: a status and a body (JSON, or `raw` text), or nothing at all (`hold`). */
type Reply = { status: number; body?: unknown; raw?: string; headers?: Record<string, string> } | 'hold';

const allow = (claims?: Record<string, unknown>): Reply => ({
  status: 200,
  body: claims ? { decision: 'allow', claims } : { decision: 'allow' },
});
const refuse = (code?: string, message?: string): Reply => ({
  status: 200,
  body: { decision: 'refuse', ...(code ? { code } : {}), ...(message ? { message } : {}) },
});

/** A port nothing listens on (the hook's backend is down). */
async function closedPort(): Promise<number> {
  const probe = createTcpServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The value of a metric's sample with exactly these labels in Prometheus text (0 when absent). */
function metricValue(text: string, metric: string, labels: Record<string, string>): number {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  for (const line of text.split('\n')) {
    const match = /^([^{\s]+)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== metric) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (JSON.stringify(Object.entries(found).sort()) === wanted) return Number(match[3]);
  }
  return 0;
}

describe.each(databaseKinds())('blocking hooks on %s', (kind) => {
  let receiver: Server;
  let base: string;
  /** Every call, in order. */
  const calls: HookCall[] = [];
  /** Calls whose signature did not verify (none expected: the test fails in afterEach). */
  const forged: string[] = [];
  /** Requests held open (a hook that never answers in time), ended after each test. */
  const held: ServerResponse[] = [];
  /** The answer to each call; by default 204 (allow). */
  let reply: (call: HookCall) => Reply = () => ({ status: 204 });

  let main: Stack;
  let closed: Stack;
  let open: Stack;

  beforeAll(async () => {
    receiver = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        const [, stack = '', hook = ''] = (request.url ?? '').split('/');
        const secret = stack === 'main' && hook === 'before_link' ? LINK_SECRET : SECRET;
        let event: HookEvent;
        try {
          event = new Webhook(secret).verify(body, request.headers as Record<string, string>) as HookEvent;
        } catch {
          forged.push(`${request.url}: ${body}`);
          return void response.writeHead(401).end();
        }
        const hookCall: HookCall = { stack, hook, headers: request.headers, body, event };
        calls.push(hookCall);
        const answer = reply(hookCall);
        if (answer === 'hold') return void held.push(response);
        const text = answer.raw ?? (answer.body === undefined ? '' : JSON.stringify(answer.body));
        response
          .writeHead(answer.status, {
            ...(answer.body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...answer.headers,
          })
          .end(text);
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
    const down = `http://127.0.0.1:${await closedPort()}/before_link`;

    main = await startStack(kind, {
      SOCIAL_AUTH_CREATE_USER: 'true',
      // An ID token signs in once: a refused sign-in must not use it up.
      SOCIAL_AUTH_ID_TOKEN_REPLAY: 'refuse',
      SOCIAL_LINK_HOOK_SECRET: SECRET,
      // Generous: the receiver answers at once, however busy the machine.
      SOCIAL_LINK_HOOK_TIMEOUT_MS: '15000',
      SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: `${base}/main/before_sign_in`,
      SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_URL: `${base}/main/before_user_created`,
      SOCIAL_LINK_HOOK_BEFORE_LINK_URL: `${base}/main/before_link`,
      SOCIAL_LINK_HOOK_BEFORE_LINK_SECRET: LINK_SECRET,
    });
    // Failing hooks: before_user_created waits 300 ms (its receiver holds the request open), before_link's
    // backend is down; a few failed sign-ins must not open Facebook's circuit (threshold 3).
    const failing = (name: string, fail: 'closed' | 'open') => ({
      SOCIAL_AUTH_CREATE_USER: 'true',
      SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '3',
      SOCIAL_LINK_HOOK_SECRET: SECRET,
      SOCIAL_LINK_HOOK_TIMEOUT_MS: '15000',
      SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL: `${base}/${name}/before_sign_in`,
      SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_FAIL: fail,
      SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_URL: `${base}/${name}/before_user_created`,
      SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_TIMEOUT_MS: '300',
      SOCIAL_LINK_HOOK_BEFORE_USER_CREATED_FAIL: fail,
      SOCIAL_LINK_HOOK_BEFORE_LINK_URL: down,
      SOCIAL_LINK_HOOK_BEFORE_LINK_FAIL: fail,
    });
    closed = await startStack(kind, failing('closed', 'closed'));
    open = await startStack(kind, failing('open', 'open'));
  });
  afterAll(async () => {
    await Promise.all([main, closed, open].map((stack) => stack?.close()));
    receiver.closeAllConnections();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  });
  beforeEach(() => {
    calls.length = 0;
    reply = () => ({ status: 204 });
  });
  afterEach(() => {
    for (const response of held.splice(0)) response.destroy();
    expect(forged.splice(0)).toEqual([]);
  });

  const hooksOf = (stack: string) => calls.filter((hookCall) => hookCall.stack === stack).map((c) => c.hook);

  /** A guest with a Facebook account linked (before_link allowed it): its uid signs it in again. */
  async function linkedUser(stack: Stack) {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: facebook.access_token },
    });
    expect(linked.status, JSON.stringify(linked.body)).toBe(200);
    return { user, uid: facebook.user_id, facebookToken: facebook.access_token };
  }

  /** A Facebook sign-in with a fresh token of the account (a new phone). */
  async function signIn(stack: Stack, uid?: string, agent = 'Phone/1'): Promise<Answer & { facebookToken: string }> {
    const facebook = await stack.emulator.mintFacebookToken(uid ? { user: { id: uid } } : {});
    const answer = await call(stack.api, 'POST', '/api/auth/facebook/', {
      body: { access_token: facebook.access_token },
      headers: { 'user-agent': agent },
    });
    return { ...answer, facebookToken: facebook.access_token };
  }

  async function verified(stack: Stack, accessToken: string): Promise<JWTPayload> {
    const jwks = createRemoteJWKSet(new URL(`${stack.api}/.well-known/jwks.json`));
    return (await jwtVerify(accessToken, jwks, { issuer: 'social-link', audience: 'social-link' })).payload;
  }
  const custom = (payload: JWTPayload) =>
    Object.fromEntries(Object.entries(payload).filter(([name]) => !OURS.includes(name)));

  async function count(
    stack: Stack,
    table: 'users' | 'sessions' | 'social_associations' | 'audit_events',
    where: { column: 'user_id' | 'uid' | 'event'; value: string | number } | undefined = undefined,
  ): Promise<number> {
    let query = stack.db.selectFrom(table).select((eb) => eb.fn.countAll().as('n'));
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a column of whichever table
    if (where) query = query.where(where.column as any, '=', where.value);
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  /** What a refused or failed sign-in must not have written: users, links, sessions, sign-in events. */
  const footprint = async (stack: Stack) => ({
    users: await count(stack, 'users'),
    links: await count(stack, 'social_associations'),
    sessions: await count(stack, 'sessions'),
    signIns: await count(stack, 'audit_events', { column: 'event', value: 'social_sign_in' }),
  });

  const scrape = async (stack: Stack) => {
    const answer = await fetch(`${stack.api}/metrics`);
    expect(answer.status).toBe(200);
    return answer.text();
  };
  const hookCount = async (stack: Stack, hook: string, outcome: string) =>
    metricValue(await scrape(stack), HOOK_METRIC, { hook, outcome });

  describe('allow', () => {
    it('200 {"decision":"allow"} and 204 let the sign-in through; the hook is told the documented body, signed, and never a token', async () => {
      const { user, uid, facebookToken: linkToken } = await linkedUser(main);
      // The link asked before_link about the signed-in guest.
      expect(hooksOf('main')).toEqual(['before_link']);
      const link = calls[0]!;
      expect(link.event.data.user).toEqual({ id: user.id, username: user.username, claims: {} });
      for (const secret of [user.access_token, user.refresh_token, linkToken]) expect(link.body).not.toContain(secret);

      const allowedBefore = await hookCount(main, 'before_sign_in', 'allowed');
      for (const answer of [allow(), { status: 204 } as const]) {
        calls.length = 0;
        reply = () => answer;
        const signedIn = await signIn(main, uid, 'Phone/7');
        expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
        expect(signedIn.body.id).toBe(user.id);
        expect(hooksOf('main')).toEqual(['before_sign_in']);
        const [asked] = calls;
        expect(asked!.headers).toMatchObject({
          'content-type': 'application/json',
          'webhook-id': expect.stringMatching(/^msg_/),
          'webhook-timestamp': expect.stringMatching(/^\d+$/),
          'webhook-signature': expect.stringMatching(/^v1,/),
        });
        const { event } = asked!;
        expect(Object.keys(event).sort()).toEqual(['data', 'timestamp', 'type']);
        expect(event.type).toBe('before_sign_in');
        expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp);
        expect(Object.keys(event.data).sort()).toEqual(
          ['client', 'facts', 'new_user', 'profile', 'provider', 'uid', 'user'].sort(),
        );
        expect(event.data).toMatchObject({
          provider: 'facebook',
          uid,
          user: { id: user.id, username: user.username, claims: {} },
          new_user: false,
          profile: expect.any(Object),
          facts: expect.any(Object),
          client: { ip: '127.0.0.1', user_agent: 'Phone/7' },
        });
        // No token of the app's: not the Facebook token it sent, not ours.
        for (const secret of [signedIn.facebookToken, user.access_token, user.refresh_token])
          expect(asked!.body).not.toContain(secret);
        expect(asked!.body).not.toContain(signedIn.facebookToken.slice(0, 24));
      }
      expect((await hookCount(main, 'before_sign_in', 'allowed')) - allowedBefore).toBe(2);
    });
  });

  describe('refuse', () => {
    it("403 hook_refused with the hook's message and code as reason; nothing written", async () => {
      const { user, uid } = await linkedUser(main);
      const before = await footprint(main);
      const ownSessions = await count(main, 'sessions', { column: 'user_id', value: user.id });
      const refusedBefore = await hookCount(main, 'before_sign_in', 'refused');

      reply = () => refuse('banned_device', 'This device is blocked');
      const refused = await signIn(main, uid);
      expectError(refused, 403, 'hook_refused');
      expect(refused.body).toMatchObject({
        code: 'hook_refused',
        message: 'This device is blocked',
        reason: 'banned_device',
      });
      // Without a code or message of its own: the defaults.
      reply = () => refuse();
      const plain = await signIn(main, uid);
      expectError(plain, 403, 'hook_refused');
      expect(plain.body).toMatchObject({ reason: 'refused', message: 'Refused by the rules of this app' });

      expect(await footprint(main)).toEqual(before);
      expect(await count(main, 'sessions', { column: 'user_id', value: user.id })).toBe(ownSessions);
      const audit = await call(main.api, 'GET', '/api/audit/', { token: user.access_token });
      expect(audit.body.filter((event: { event: string }) => event.event === 'social_sign_in')).toEqual([]);
      expect((await hookCount(main, 'before_sign_in', 'refused')) - refusedBefore).toBe(2);

      reply = () => ({ status: 204 });
      expect((await signIn(main, uid)).status).toBe(200);
      expect(await count(main, 'sessions', { column: 'user_id', value: user.id })).toBe(ownSessions + 1);
    });

    it('an ID token refused so is not used up: the same Google ID token signs in, from another phone, once the hook allows', async () => {
      const user = await guest(main.api);
      const seed = await main.emulator.mintIdToken('google');
      expect(
        (
          await call(main.api, 'POST', '/api/associate/google/', {
            token: user.access_token,
            body: { id_token: seed.id_token },
          })
        ).status,
      ).toBe(200);
      const token = await main.emulator.mintIdToken('google', { sub: seed.sub, name: 'another token' });
      const auth = (agent: string) =>
        call(main.api, 'POST', '/api/auth/google/', {
          body: { id_token: token.id_token },
          headers: { 'user-agent': agent },
        });

      calls.length = 0;
      reply = () => refuse('banned_device', 'This device is blocked');
      expectError(await auth('Phone/1'), 403, 'hook_refused');
      expect(calls.map((c) => c.body).join('\n')).not.toContain(token.id_token.split('.')[2]!);

      reply = () => allow();
      // Another client: not a retry of the same one (which SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse lets through).
      const signedIn = await auth('Phone/2');
      expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
      expect(signedIn.body.id).toBe(user.id);
      // Now it is used up.
      const thief = await auth('Thief/1');
      expectError(thief, 400, 'invalid_token');
      expect(thief.body.detail).toMatch(/used already/);
    });
  });

  describe('enrich', () => {
    it("before_sign_in's claims are in the access token over the user's, in /api/me/, and kept by a refresh", async () => {
      const { user, uid } = await linkedUser(main);
      await new Storage(main.db).users.setClaims(user.id, { role: 'editor', tier: 'silver' });
      const added = { tier: 'gold', 'https://example.com/risk': { score: 0.2, checks: ['device'] } };
      reply = () => allow(added);
      calls.length = 0;
      const signedIn = await signIn(main, uid);
      expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
      // The hook was told the user's own claims.
      expect(calls[0]!.event.data.user?.claims).toEqual({ role: 'editor', tier: 'silver' });
      const expected = { role: 'editor', ...added };
      const payload = await verified(main, signedIn.body.access_token);
      expect(custom(payload)).toEqual(expected);
      expect(payload.sub).toBe(String(user.id));
      const me = await call(main.api, 'GET', '/api/me/', { token: signedIn.body.access_token });
      expect(me.body.claims).toEqual(expected);

      calls.length = 0;
      reply = () => refuse('not_asked', 'A refresh asks no hook');
      const refreshed = await call(main.api, 'POST', '/api/token/refresh/', {
        body: { refresh_token: signedIn.body.refresh_token },
      });
      expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
      expect(calls).toEqual([]);
      const again = await verified(main, refreshed.body.access_token);
      expect(custom(again)).toEqual(expected);
      expect(again.sid).toBe(payload.sid);
      expect((await call(main.api, 'GET', '/api/me/', { token: refreshed.body.access_token })).body.claims).toEqual(
        expected,
      );

      // Another sign-in whose hook adds nothing: the user's own claims only.
      reply = () => ({ status: 204 });
      const plain = await signIn(main, uid);
      expect(custom(await verified(main, plain.body.access_token))).toEqual({ role: 'editor', tier: 'silver' });
    });

    it('claims that cannot be kept are a malformed answer: reserved, too big, not an object, or from before_link (fail closed: 503)', async () => {
      const { user, uid } = await linkedUser(main);
      const before = await footprint(main);
      const malformedBefore = await hookCount(main, 'before_sign_in', 'malformed');
      const bad: unknown[] = [{ sub: '1' }, { scope: 'admin', tier: 'gold' }, { big: 'x'.repeat(1000) }, 'gold', [1]];
      for (const claims of bad) {
        reply = () => ({ status: 200, body: { decision: 'allow', claims } });
        const answer = await signIn(main, uid);
        expectError(answer, 503, 'hook_unavailable');
      }
      expect((await hookCount(main, 'before_sign_in', 'malformed')) - malformedBefore).toBe(bad.length);
      expect(await footprint(main)).toEqual(before);
      expect(main.logs.some((line) => line.includes('reserved claim name sub'))).toBe(true);

      // before_link starts no session: claims there are malformed too; nothing is linked.
      const linkMalformed = await hookCount(main, 'before_link', 'malformed');
      reply = () => allow({ tier: 'gold' });
      const facebook = await main.emulator.mintFacebookToken({});
      expectError(
        await call(main.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        }),
        503,
        'hook_unavailable',
      );
      expect(await count(main, 'social_associations', { column: 'uid', value: facebook.user_id })).toBe(0);
      expect((await hookCount(main, 'before_link', 'malformed')) - linkMalformed).toBe(1);
    });
  });

  describe('before_user_created', () => {
    it('an unknown account with SOCIAL_AUTH_CREATE_USER=true: before_user_created, then before_sign_in, both of a user not made yet; their claims go with the session', async () => {
      const facebook = await main.emulator.mintFacebookToken({ user: { name: 'Ada Lovelace' } });
      reply = ({ hook }) =>
        hook === 'before_user_created' ? allow({ plan: 'trial', tier: 'bronze' }) : allow({ tier: 'gold' });
      calls.length = 0;
      const created = await call(main.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: facebook.access_token },
        headers: { 'user-agent': 'NewPhone/1' },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(hooksOf('main')).toEqual(['before_user_created', 'before_sign_in']);
      for (const { event } of calls) {
        expect(event.data).toMatchObject({
          provider: 'facebook',
          uid: facebook.user_id,
          user: null,
          new_user: true,
          client: { ip: '127.0.0.1', user_agent: 'NewPhone/1' },
        });
        expect(JSON.stringify(event)).not.toContain(facebook.access_token);
      }
      expect(calls[0]!.event.type).toBe('before_user_created');
      // The sign-in's claims over the user-created's.
      expect(custom(await verified(main, created.body.access_token))).toEqual({ plan: 'trial', tier: 'gold' });
      // Asked once the user exists, the next sign-in tells before_sign_in who it is.
      calls.length = 0;
      reply = () => ({ status: 204 });
      expect((await signIn(main, facebook.user_id)).status).toBe(200);
      expect(hooksOf('main')).toEqual(['before_sign_in']);
      expect(calls[0]!.event.data).toMatchObject({
        user: { id: created.body.id, claims: {} },
        new_user: false,
      });
    });

    it("its refusal (or before_sign_in's) creates no user and no link", async () => {
      const before = await footprint(main);
      const facebook = await main.emulator.mintFacebookToken({});
      reply = ({ hook }) => (hook === 'before_user_created' ? refuse('waitlist', 'Sign-ups are closed') : allow());
      calls.length = 0;
      const refused = await call(main.api, 'POST', '/api/auth/facebook/', {
        body: { access_token: facebook.access_token },
      });
      expectError(refused, 403, 'hook_refused');
      expect(refused.body).toMatchObject({ message: 'Sign-ups are closed', reason: 'waitlist' });
      // Refused first: before_sign_in was not asked.
      expect(hooksOf('main')).toEqual(['before_user_created']);
      expect(await footprint(main)).toEqual(before);

      reply = ({ hook }) => (hook === 'before_sign_in' ? refuse('region_blocked', 'Not in your region') : allow());
      calls.length = 0;
      expectError(
        await call(main.api, 'POST', '/api/auth/facebook/', { body: { access_token: facebook.access_token } }),
        403,
        'hook_refused',
      );
      expect(hooksOf('main')).toEqual(['before_user_created', 'before_sign_in']);
      expect(await footprint(main)).toEqual(before);
      expect(await count(main, 'social_associations', { column: 'uid', value: facebook.user_id })).toBe(0);
    });
    // Two answers within the limit each, over it together: the second hook's answer is malformed (its fail mode).
    it('claims of before_user_created and before_sign_in within 1000 bytes each but not together: a malformed answer (503), not a 500', async () => {
      const before = await footprint(main);
      reply = ({ hook }) => allow(hook === 'before_user_created' ? { a: 'x'.repeat(600) } : { b: 'y'.repeat(600) });
      const answer = await signIn(main);
      expectError(answer, 503, 'hook_unavailable');
      expect(await footprint(main)).toEqual(before);
    });
  });

  describe('before_link', () => {
    it('POST /api/associate/{provider}/: a refusal is 403 and links nothing; allowed, it links', async () => {
      const user = await guest(main.api);
      const facebook = await main.emulator.mintFacebookToken({});
      const before = await footprint(main);
      reply = () => refuse('one_account_per_device', 'This device has an account already');
      calls.length = 0;
      const refused = await call(main.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
      expectError(refused, 403, 'hook_refused');
      expect(refused.body).toMatchObject({
        message: 'This device has an account already',
        reason: 'one_account_per_device',
      });
      expect(hooksOf('main')).toEqual(['before_link']);
      expect(calls[0]!.event.data).toMatchObject({
        provider: 'facebook',
        uid: facebook.user_id,
        user: { id: user.id, username: user.username, claims: {} },
        new_user: false,
      });
      expect(calls[0]!.body).not.toContain(user.access_token);
      expect(calls[0]!.body).not.toContain(facebook.access_token);
      expect(await footprint(main)).toEqual(before);
      expect((await call(main.api, 'GET', '/api/associations/', { token: user.access_token })).body).toEqual([]);
      // Nobody's account: its sign-in would make a new user.
      expect(await count(main, 'social_associations', { column: 'uid', value: facebook.user_id })).toBe(0);

      reply = () => allow();
      const linked = await call(main.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
      expect(linked.status).toBe(200);
      expect(linked.body.association).toEqual({ provider: 'facebook', uid: facebook.user_id, created: true });
    });

    it('linking with a link token (POST /api/associate/link-token/) asks before_link too', async () => {
      const email = `rin.${randomBytes(4).toString('hex')}@gmail.com`;
      const owner = await guest(main.api);
      const google = await main.emulator.mintIdToken('google', { email, email_verified: true });
      expect(
        (
          await call(main.api, 'POST', '/api/associate/google/', {
            token: owner.access_token,
            body: { id_token: google.id_token },
          })
        ).status,
      ).toBe(200);
      // Sign in with Apple, same verified e-mail: 409 link_required (and no hook asked: nothing signs in).
      const apple = await main.emulator.mintIdToken('apple', { email, email_verified: true });
      calls.length = 0;
      const required = await call(main.api, 'POST', '/api/auth/apple/', { body: { id_token: apple.id_token } });
      expectError(required, 409, 'link_required');
      expect(calls).toEqual([]);
      const linkToken = required.body.link_token as string;

      reply = ({ hook }) =>
        hook === 'before_link' ? refuse('no_apple', 'Apple accounts are not linked here') : allow();
      calls.length = 0;
      const refused = await call(main.api, 'POST', '/api/associate/link-token/', {
        token: owner.access_token,
        body: { link_token: linkToken },
      });
      expectError(refused, 403, 'hook_refused');
      expect(refused.body.reason).toBe('no_apple');
      expect(hooksOf('main')).toEqual(['before_link']);
      expect(calls[0]!.event.data).toMatchObject({ provider: 'apple', uid: apple.sub, user: { id: owner.id } });
      expect(calls[0]!.body).not.toContain(linkToken);
      expect(await count(main, 'social_associations', { column: 'uid', value: apple.sub })).toBe(0);

      reply = () => allow();
      const linked = await call(main.api, 'POST', '/api/associate/link-token/', {
        token: owner.access_token,
        body: { link_token: linkToken },
      });
      expect(linked.status, JSON.stringify(linked.body)).toBe(200);
      expect(linked.body.association).toMatchObject({ provider: 'apple', uid: apple.sub, created: true });
    });
  });

  describe('a guest merged into the owner of the account it proved', () => {
    it('before_sign_in decides, told of the owner: refused, both users stay; allowed, the guest signs in as the owner', async () => {
      const { user: owner, uid } = await linkedUser(main);
      const newPhone = await guest(main.api);
      const facebook = await main.emulator.mintFacebookToken({ user: { id: uid } });
      const offered = await call(main.api, 'POST', '/api/associate/facebook/', {
        token: newPhone.access_token,
        body: { access_token: facebook.access_token },
      });
      expectError(offered, 409, 'already_associated');
      const mergeToken = offered.body.merge_token as string;
      expect(mergeToken).toMatch(/^slm_/);

      reply = ({ hook }) => (hook === 'before_sign_in' ? refuse('banned_device', 'This device is blocked') : allow());
      calls.length = 0;
      const refused = await call(main.api, 'POST', '/api/users/merge/', {
        token: newPhone.access_token,
        body: { merge_token: mergeToken },
      });
      expectError(refused, 403, 'hook_refused');
      expect(hooksOf('main')).toEqual(['before_sign_in']);
      expect(calls[0]!.event.data).toMatchObject({
        provider: 'facebook',
        uid,
        user: { id: owner.id, username: owner.username },
        new_user: false,
      });
      expect(calls[0]!.body).not.toContain(mergeToken);
      expect(calls[0]!.body).not.toContain(newPhone.access_token);
      // The guest is still there, still signed in.
      expect((await call(main.api, 'GET', '/api/me/', { token: newPhone.access_token })).body.id).toBe(newPhone.id);

      reply = () => allow({ merged: true });
      const merged = await call(main.api, 'POST', '/api/users/merge/', {
        token: newPhone.access_token,
        body: { merge_token: mergeToken },
      });
      expect(merged.status, JSON.stringify(merged.body)).toBe(200);
      expect(merged.body.id).toBe(owner.id);
      expect(custom(await verified(main, merged.body.access_token))).toEqual({ merged: true });
    });
  });

  describe('the account changes while the hook thinks', () => {
    /** Holds before_sign_in's call until `answer` is called; the sign-in meanwhile. */
    async function heldSignIn(uid: string) {
      reply = (hookCall) => (hookCall.hook === 'before_sign_in' ? 'hold' : { status: 204 });
      const token = (await main.emulator.mintFacebookToken({ user: { id: uid } })).access_token;
      const answer = call(main.api, 'POST', '/api/auth/facebook/', { body: { access_token: token } });
      await expect.poll(() => held.length, { timeout: 30_000 }).toBe(1);
      return {
        answer,
        release: (verdict: unknown) =>
          held.pop()!.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(verdict)),
      };
    }

    it("a link removed meanwhile: 503 hook_unavailable, and no new user gets the verdict or the claims of the link's user", async () => {
      const username = `judged${Date.now()}${Math.floor(Math.random() * 1000)}`;
      const user = (await call(main.api, 'POST', '/api/users/', { body: { username, password: 'a long password 1' } }))
        .body;
      const facebook = await main.emulator.mintFacebookToken({});
      reply = () => ({ status: 204 });
      const linked = await call(main.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
      expect(linked.status).toBe(200);

      const signIn = await heldSignIn(facebook.user_id);
      // The user (it has a password) unlinks Facebook while its sign-in waits on the hook: no lock is held.
      const unlinked = await call(main.api, 'DELETE', `/api/associations/facebook/${facebook.user_id}/`, {
        token: user.access_token,
      });
      expect(unlinked.status).toBe(204);
      const before = await footprint(main);
      signIn.release({ decision: 'allow', claims: { role: 'admin' } });
      // SOCIAL_AUTH_CREATE_USER is on: without the check, a new user would be made, before_user_created never asked.
      expectError(await signIn.answer, 503, 'hook_unavailable');
      expect(await footprint(main)).toEqual(before);
    });

    it("a link moved to another user meanwhile: 503, the other user is not signed in on the first one's verdict", async () => {
      const [first, second] = [await guest(main.api), await guest(main.api)];
      const facebook = await main.emulator.mintFacebookToken({});
      reply = () => ({ status: 204 });
      const link = (token: string) =>
        call(main.api, 'POST', '/api/associate/facebook/', {
          token,
          body: { access_token: facebook.access_token },
        });
      expect((await link(first.access_token)).status).toBe(200);

      const signIn = await heldSignIn(facebook.user_id);
      // Moved: the first user's link removed in the database (a guest may not unlink its last way in), then the
      // second user links the account.
      await main.db.deleteFrom('social_associations').where('uid', '=', facebook.user_id).execute();
      expect((await link(second.access_token)).status).toBe(200);
      const before = await footprint(main);
      signIn.release({ decision: 'allow' });
      expectError(await signIn.answer, 503, 'hook_unavailable');
      expect(await footprint(main)).toEqual(before);
      // Asked again, the hook judges the second user.
      reply = () => ({ status: 204 });
      const again = await call(main.api, 'POST', '/api/auth/facebook/', {
        body: {
          access_token: (await main.emulator.mintFacebookToken({ user: { id: facebook.user_id } })).access_token,
        },
      });
      expect(again.status).toBe(200);
      expect(again.body.id).toBe(second.id);
    });
  });

  describe('a hook that fails', () => {
    /** A linked user of the stack (its before_link backend is down: linked in the database directly). */
    async function linkedInDatabase(stack: Stack): Promise<{ userId: number; uid: string }> {
      const user = await guest(stack.api);
      const uid = `9${Array.from(randomBytes(12), (byte) => byte % 10).join('')}`;
      const at = new Date().toISOString();
      await stack.db
        .insertInto('social_associations')
        .values({
          user_id: user.id,
          provider: 'facebook',
          uid,
          extra_data: '{}',
          provider_tokens: null,
          verified_email: null,
          created_at: at,
          updated_at: at,
        })
        .execute();
      return { userId: user.id, uid };
    }

    const failures: Array<{ name: string; answer: Reply; outcome: string }> = [
      { name: 'not JSON', answer: { status: 200, raw: 'OK, let them in' }, outcome: 'malformed' },
      { name: 'no decision', answer: { status: 200, body: { allow: true } }, outcome: 'malformed' },
      { name: 'an unknown decision', answer: { status: 200, body: { decision: 'maybe' } }, outcome: 'malformed' },
      { name: 'not an object', answer: { status: 200, body: ['allow'] }, outcome: 'malformed' },
      {
        name: 'a refusal with a bad code',
        answer: refuse('Banned Device!', 'This device is blocked'),
        outcome: 'malformed',
      },
      {
        name: 'a refusal with an empty message',
        answer: { status: 200, body: { decision: 'refuse', code: 'banned', message: '' } },
        outcome: 'malformed',
      },
      { name: 'status 500', answer: { status: 500, body: { decision: 'allow' } }, outcome: 'unavailable' },
      {
        name: 'status 302',
        answer: { status: 302, headers: { location: `http://127.0.0.1:1/allow` } },
        outcome: 'unavailable',
      },
      { name: 'status 403', answer: { status: 403, body: { decision: 'allow' } }, outcome: 'unavailable' },
    ];

    it('fail closed: malformed answers, 5xx, a redirect are 503 hook_unavailable, counted; nothing written; no provider circuit opens', async () => {
      const { userId, uid } = await linkedInDatabase(closed);
      const before = await footprint(closed);
      const metrics = await scrape(closed);
      for (const { name, answer, outcome } of failures) {
        reply = () => answer;
        const signedIn = await signIn(closed, uid);
        expect([name, signedIn.status, signedIn.body.code]).toEqual([name, 503, 'hook_unavailable']);
        expectError(signedIn, 503, 'hook_unavailable');
        expect(closed.logs.some((line) => line.includes(`"outcome":"${outcome}"`))).toBe(true);
      }
      const after = await scrape(closed);
      for (const outcome of ['malformed', 'unavailable']) {
        const labels = { hook: 'before_sign_in', outcome };
        expect(metricValue(after, HOOK_METRIC, labels) - metricValue(metrics, HOOK_METRIC, labels)).toBe(
          failures.filter((failure) => failure.outcome === outcome).length,
        );
      }
      expect(await footprint(closed)).toEqual(before);

      // More failed hook calls than the circuit breaker's threshold (3): Facebook is still called, sign-ins work.
      expect(failures.length).toBeGreaterThanOrEqual(6);
      reply = () => allow();
      const signedIn = await signIn(closed, uid);
      expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
      expect(signedIn.body.id).toBe(userId);
    });

    it('fail closed: a hook that does not answer in time (before_user_created, 300 ms) is 503, counted as timeout; no user', async () => {
      const before = await footprint(closed);
      const timeouts = await hookCount(closed, 'before_user_created', 'timeout');
      reply = ({ hook }) => (hook === 'before_user_created' ? 'hold' : allow());
      calls.length = 0;
      const answer = await signIn(closed);
      expectError(answer, 503, 'hook_unavailable');
      expect(hooksOf('closed')).toEqual(['before_user_created']);
      expect((await hookCount(closed, 'before_user_created', 'timeout')) - timeouts).toBe(1);
      expect(await footprint(closed)).toEqual(before);
    });

    it('fail closed: a backend that is down (a closed port) is 503 for a link, counted as unavailable; nothing linked', async () => {
      const user = await guest(closed.api);
      const unavailable = await hookCount(closed, 'before_link', 'unavailable');
      const facebook = await closed.emulator.mintFacebookToken({});
      for (let i = 0; i < 2; i++)
        expectError(
          await call(closed.api, 'POST', '/api/associate/facebook/', {
            token: user.access_token,
            body: { access_token: facebook.access_token },
          }),
          503,
          'hook_unavailable',
        );
      expect((await hookCount(closed, 'before_link', 'unavailable')) - unavailable).toBe(2);
      expect(await count(closed, 'social_associations', { column: 'user_id', value: user.id })).toBe(0);
    });

    it('fail open: slow, down and malformed hooks let the sign-in or the link go on, each counted', async () => {
      const metrics = await scrape(open);
      const delta = async (hook: string, outcome: string) =>
        metricValue(await scrape(open), HOOK_METRIC, { hook, outcome }) -
        metricValue(metrics, HOOK_METRIC, { hook, outcome });

      // Slow: before_user_created holds; before_sign_in allows: the new user is made and signed in.
      reply = ({ hook }) => (hook === 'before_user_created' ? 'hold' : allow({ tier: 'gold' }));
      calls.length = 0;
      const created = await signIn(open);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(hooksOf('open')).toEqual(['before_user_created', 'before_sign_in']);
      expect(custom(await verified(open, created.body.access_token))).toEqual({ tier: 'gold' });
      expect(await delta('before_user_created', 'timeout')).toBe(1);

      // Down: before_link's backend is not there; the link is made.
      const user = await guest(open.api);
      const facebook = await open.emulator.mintFacebookToken({});
      const linked = await call(open.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
      expect(linked.status, JSON.stringify(linked.body)).toBe(200);
      expect(linked.body.association.created).toBe(true);
      expect(await delta('before_link', 'unavailable')).toBe(1);

      // Malformed, and 500: the sign-in goes on, with no claims from the hook.
      for (const answer of [
        { status: 200, raw: 'not json' },
        { status: 200, body: { decision: 'allow', claims: { sub: 'admin' } } },
        { status: 500 },
      ] satisfies Reply[]) {
        reply = () => answer;
        const signedIn = await signIn(open, facebook.user_id);
        expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
        expect(signedIn.body.id).toBe(user.id);
        const payload = await verified(open, signedIn.body.access_token);
        expect(custom(payload)).toEqual({});
        expect(payload.sub).toBe(String(user.id));
      }
      expect(await delta('before_sign_in', 'malformed')).toBe(2);
      expect(await delta('before_sign_in', 'unavailable')).toBe(1);
      expect(open.logs.some((line) => line.includes('the sign-in goes on (fail open)'))).toBe(true);

      // A refusal is no failure: it refuses, open or not.
      reply = () => refuse('banned_device', 'This device is blocked');
      expectError(await signIn(open, facebook.user_id), 403, 'hook_refused');
    });
  });
});
