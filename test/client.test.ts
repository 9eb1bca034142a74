import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  AlreadyAssociatedError,
  API_ERROR_CODES,
  ENDPOINTS,
  LinkRequiredError,
  MemoryTokenStore,
  SocialLinkClient,
  SocialLinkError,
  type Endpoint,
  type ResponseShape,
} from '../client/src/index.js';
import {
  CLIENT_CONTRACT_FILES,
  renderClientErrorCodes,
  renderDocument,
  renderTypes,
} from '../scripts/client-contract.js';
import { ERRORS } from '../src/lib/errors.js';
import { call, startStack, type Stack } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** A fetch that records "METHOD /path" of every request, optionally answering some itself. */
function recordingFetch(intercept?: (path: string) => Response | Error | undefined) {
  const requests: string[] = [];
  const recorded: typeof fetch = async (input, init) => {
    const path = new URL(String(input)).pathname;
    requests.push(`${init?.method ?? 'GET'} ${path}`);
    const fake = intercept?.(path);
    if (fake instanceof Error) throw fake;
    return fake ?? fetch(input, init);
  };
  return {
    requests,
    fetch: recorded,
    refreshes: () => requests.filter((r) => r === 'POST /api/token/refresh/').length,
  };
}

/** Resolves to the SocialLinkError the promise rejects with (fails the test if it resolves or rejects otherwise). */
async function failure(promise: Promise<unknown>): Promise<SocialLinkError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SocialLinkError);
  return error as SocialLinkError;
}

describe('client SDK', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite');
  });
  afterAll(() => stack.close());

  const client = (options: { store?: MemoryTokenStore; fetch?: typeof fetch; baseUrl?: string } = {}) =>
    new SocialLinkClient({
      baseUrl: options.baseUrl ?? stack.api,
      tokenStore: options.store ?? new MemoryTokenStore(),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });

  describe('a mobile app', () => {
    it('a guest on a new phone meets AlreadyAssociatedError for its old Facebook account and merges into its old user', async () => {
      const oldPhone = client();
      const old = await oldPhone.createGuest();
      const fb = await stack.emulator.mintFacebookToken({});
      await oldPhone.associate('facebook', { access_token: fb.access_token });

      const store = new MemoryTokenStore();
      const newPhone = client({ store });
      await newPhone.createGuest();
      const refused = await failure(newPhone.associate('facebook', { access_token: fb.access_token }));
      expect(refused).toBeInstanceOf(AlreadyAssociatedError);
      const { mergeToken } = refused as AlreadyAssociatedError;
      expect(mergeToken).toMatch(/^slm_/);
      const merged = await newPhone.mergeInto(mergeToken!);
      expect(merged.id).toBe(old.id);
      expect(store.load()?.userId).toBe(old.id);
      expect((await newPhone.me()).id).toBe(old.id);
    });

    it('Sign in with Apple on a new phone meets LinkRequiredError (a Google user has that e-mail), signs in with Google and links Apple with the token', async () => {
      const oldPhone = client();
      await oldPhone.createGuest();
      const google = await stack.emulator.mintIdToken('google', { email: 'rin.sato@gmail.com', email_verified: true });
      await oldPhone.associate('google', { id_token: google.id_token });

      const newPhone = client();
      const apple = await stack.emulator.mintIdToken('apple', { email: 'rin.sato@gmail.com', email_verified: true });
      const refused = await failure(newPhone.authWith('apple', { id_token: apple.id_token }));
      expect(refused).toBeInstanceOf(LinkRequiredError);
      const required = refused as LinkRequiredError;
      expect(required).toMatchObject({
        status: 409,
        code: 'link_required',
        providers: ['google'],
        linkTokenExpiresIn: 600,
      });

      await newPhone.authWith('google', {
        id_token: (await stack.emulator.mintIdToken('google', { sub: google.sub })).id_token,
      });
      expect(await newPhone.linkWithToken(required.linkToken)).toEqual({
        success: true,
        association: { provider: 'apple', uid: apple.sub, created: true },
      });
      expect((await newPhone.listAssociations()).map((link) => link.provider).sort()).toEqual(['apple', 'google']);
    });

    it('links Facebook as a guest and finds the same user again on a new phone', async () => {
      const oldStore = new MemoryTokenStore();
      const oldPhone = client({ store: oldStore });
      const guest = await oldPhone.createGuest();
      expect(oldStore.load()).toMatchObject({
        userId: guest.id,
        username: guest.username,
        accessToken: guest.access_token,
        refreshToken: guest.refresh_token,
      });

      const fb = await stack.emulator.mintFacebookToken({ user: { name: 'Ada Lovelace' } });
      expect(await oldPhone.associate('facebook', { access_token: fb.access_token })).toEqual({
        success: true,
        association: { provider: 'facebook', uid: fb.user_id, created: true },
      });

      // New phone: nothing stored, a fresh SDK token for the same Facebook user.
      const newStore = new MemoryTokenStore();
      const newPhone = client({ store: newStore });
      const again = await stack.emulator.mintFacebookToken({ user: { id: fb.user_id } });
      const signedIn = await newPhone.authWith('facebook', { access_token: again.access_token });
      expect(signedIn.id).toBe(guest.id);
      expect(newStore.load()?.userId).toBe(guest.id);

      const me = await newPhone.me();
      expect(me).toMatchObject({ id: guest.id, username: guest.username, has_password: false });
      const links = await newPhone.listAssociations();
      expect(links).toEqual([
        expect.objectContaining({
          provider: 'facebook',
          uid: fb.user_id,
          extra_data: expect.objectContaining({ name: 'Ada Lovelace' }),
        }),
      ]);

      // A guest's only link is its only way back in.
      const refused = await failure(newPhone.unlink('facebook', fb.user_id));
      expect(refused).toMatchObject({ status: 409, code: 'last_login_method' });

      // Twitter (OAuth 1.0a: token and secret), then Facebook can go.
      const tw = await stack.emulator.mintTwitterToken({ user: { screen_name: 'ada' } });
      const twitterToken = { access_token: tw.access_token, access_token_secret: tw.access_token_secret };
      expect((await newPhone.associate('twitter', twitterToken)).association).toEqual({
        provider: 'twitter',
        uid: tw.user_id,
        created: true,
      });
      await newPhone.unlink('facebook', fb.user_id);
      expect((await oldPhone.listAssociations()).map((link) => link.provider)).toEqual(['twitter']);
      expect((await client().authWith('twitter', twitterToken)).id).toBe(guest.id);
      expect(await failure(newPhone.unlink('facebook', fb.user_id))).toMatchObject({
        status: 404,
        code: 'association_not_found',
      });
    });

    it('asks a single-use nonce for the SDK and signs in with the ID token that carries it', async () => {
      const phone = client();
      const me = await phone.createGuest();
      const { nonce, expires_in } = await phone.nonce();
      expect(expires_in).toBeGreaterThan(0);
      const google = await stack.emulator.mintIdToken('google', { nonce });
      expect((await phone.associate('google', { id_token: google.id_token, nonce })).association.uid).toBe(google.sub);
      const again = await stack.emulator.mintIdToken('google', { sub: google.sub, nonce, name: 'another token' });
      expect(await failure(client().authWith('google', { id_token: again.id_token, nonce }))).toMatchObject({
        status: 400,
        code: 'invalid_token',
      });
      expect(
        (
          await client().authWith('google', {
            id_token: (await stack.emulator.mintIdToken('google', { sub: google.sub })).id_token,
          })
        ).id,
      ).toBe(me.id);
    });

    it('rejects with user_not_found for a social account linked to nobody, and stores nothing', async () => {
      const store = new MemoryTokenStore();
      const fb = await stack.emulator.mintFacebookToken();
      const error = await failure(client({ store }).authWith('facebook', { access_token: fb.access_token }));
      expect(error).toMatchObject({ status: 404, code: 'user_not_found', message: 'User Not Found' });
      expect(store.load()).toBeNull();
    });

    it("carries the API's code and detail", async () => {
      const phone = client();
      await phone.createGuest();
      const error = await failure(phone.associate('facebook', { access_token: 'EAAnotatoken' }));
      expect(error).toMatchObject({ status: 400, code: 'invalid_token', name: 'SocialLinkError' });
      expect(typeof error.detail).toBe('string');
      expect(await failure(client().me())).toMatchObject({ status: 401, code: 'not_authenticated' });
    });

    it('signs up, signs in with the password, and logs out', async () => {
      const username = `ada_${Date.now()}`;
      const first = await client().signUp(username, 'correct horse battery');
      const store = new MemoryTokenStore();
      const phone = client({ store });
      expect((await phone.signIn(username, 'correct horse battery')).id).toBe(first.id);
      expect((await phone.me()).has_password).toBe(true);
      expect(await failure(client().signIn(username, 'wrong password!'))).toMatchObject({
        status: 401,
        code: 'invalid_credentials',
      });
      expect(await failure(client().signUp(username, 'another password'))).toMatchObject({
        status: 409,
        code: 'username_taken',
      });

      const tokens = store.load();
      await phone.logout();
      expect(store.load()).toBeNull();
      expect((await call(stack.api, 'GET', '/api/me/', { token: tokens?.accessToken })).status).toBe(401);
    });
  });

  describe('refresh', () => {
    let short: Stack;
    beforeAll(async () => {
      short = await startStack('sqlite', { SOCIAL_LINK_ACCESS_TOKEN_TTL: '30' });
    });
    afterAll(() => short.close());

    const shortClient = (store: MemoryTokenStore, fetcher: typeof fetch) =>
      new SocialLinkClient({ baseUrl: short.api, tokenStore: store, fetch: fetcher });

    /** Past the access token's expiry, for the client and the server alike (both run in this process). */
    async function afterExpiry<T>(run: () => Promise<T>): Promise<T> {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + 31_000);
      try {
        return await run();
      } finally {
        vi.useRealTimers();
      }
    }

    it('refreshes an expired access token once, transparently, even for concurrent calls', async () => {
      const store = new MemoryTokenStore();
      const recorder = recordingFetch();
      const phone = shortClient(store, recorder.fetch);
      const guest = await phone.createGuest();
      const before = store.load();

      await afterExpiry(async () => {
        // The server agrees the token is dead.
        expect((await call(short.api, 'GET', '/api/me/', { token: guest.access_token })).status).toBe(401);
        const [me, links, meAgain] = await Promise.all([phone.me(), phone.listAssociations(), phone.me()]);
        expect(me.id).toBe(guest.id);
        expect(meAgain.id).toBe(guest.id);
        expect(links).toEqual([]);
      });
      expect(recorder.refreshes()).toBe(1);
      expect(store.load()?.refreshToken).not.toBe(before?.refreshToken);
      expect(store.load()?.accessToken).not.toBe(before?.accessToken);
    });

    it('clients sharing a store share its refresh', async () => {
      const store = new MemoryTokenStore();
      const recorder = recordingFetch();
      const app = shortClient(store, recorder.fetch);
      const widget = shortClient(store, recorder.fetch);
      const guest = await app.createGuest();
      const ids = await afterExpiry(() => Promise.all([app.me(), widget.me(), widget.listAssociations()]));
      expect(ids[0].id).toBe(guest.id);
      expect(ids[1].id).toBe(guest.id);
      expect(recorder.refreshes()).toBe(1);
    });

    it('refreshes once after a 401 invalid_access_token, even for concurrent calls', async () => {
      const store = new MemoryTokenStore();
      const recorder = recordingFetch();
      const phone = shortClient(store, recorder.fetch);
      const guest = await phone.createGuest();
      // A token the client believes valid but the server refuses (e.g. the phone's clock is late).
      const stored = store.load();
      if (!stored) throw new Error('no tokens stored');
      store.save({ ...stored, accessToken: 'not.a.jwt' });

      const answers = await Promise.all([phone.me(), phone.listAssociations(), phone.me(), phone.listAssociations()]);
      expect(answers).toHaveLength(4);
      expect(recorder.refreshes()).toBe(1);
      expect(recorder.requests.filter((r) => r === 'GET /api/me/')).toHaveLength(4); // two refused, two retried
      expect((await phone.me()).id).toBe(guest.id);
      expect(recorder.refreshes()).toBe(1);
    });

    it('a call refused after another call already refreshed retries with the new token, without a second refresh', async () => {
      const store = new MemoryTokenStore();
      const recorder = recordingFetch();
      let meFirst: Promise<unknown> | undefined;
      let lists = 0;
      const lateFetch: typeof fetch = async (input, init) => {
        const response = await recorder.fetch(input, init);
        // The first list answer (a 401) arrives only once me() has refreshed and retried: its token is stale by then.
        if (String(input).endsWith('/api/associations/') && ++lists === 1) await meFirst;
        return response;
      };
      const phone = shortClient(store, lateFetch);
      await phone.createGuest();
      const stored = store.load();
      if (!stored) throw new Error('no tokens stored');
      store.save({ ...stored, accessToken: 'not.a.jwt' });

      meFirst = phone.me();
      expect(await phone.listAssociations()).toEqual([]);
      expect(recorder.refreshes()).toBe(1);
      expect(recorder.requests.filter((r) => r === 'GET /api/associations/')).toHaveLength(2);
    });

    it('a session logged out elsewhere clears the store and rejects with the API code', async () => {
      const store = new MemoryTokenStore();
      const recorder = recordingFetch();
      const phone = shortClient(store, recorder.fetch);
      await phone.createGuest();
      // Server-side logout of this session (another device of the user, an admin, ...).
      expect((await call(short.api, 'POST', '/api/logout/', { token: store.load()?.accessToken })).status).toBe(204);

      expect(await failure(phone.me())).toMatchObject({ status: 401, code: 'invalid_refresh_token' });
      expect(recorder.refreshes()).toBe(1);
      expect(store.load()).toBeNull();
      expect(await failure(phone.me())).toMatchObject({ status: 401, code: 'not_authenticated' });
    });

    it('a client sharing the store sees the logout of another', async () => {
      const store = new MemoryTokenStore();
      const app = shortClient(store, fetch);
      const widget = shortClient(store, fetch);
      await app.createGuest();
      expect((await widget.me()).id).toBe(store.load()?.userId);
      await app.logout();
      expect(await failure(widget.me())).toMatchObject({ status: 401, code: 'not_authenticated' });
    });

    it('a replayed refresh token revokes the session: the client clears its store and rejects with refresh_token_reused', async () => {
      const store = new MemoryTokenStore();
      const phone = shortClient(store, fetch);
      await phone.createGuest();
      // Someone copied the stored refresh token and used it first.
      const stolen = await call(short.api, 'POST', '/api/token/refresh/', {
        body: { refresh_token: store.load()?.refreshToken },
      });
      expect(stolen.status).toBe(200);

      const error = await afterExpiry(() => failure(phone.me()));
      expect(error).toMatchObject({ status: 401, code: 'refresh_token_reused' });
      expect(store.load()).toBeNull();
      expect((await call(short.api, 'GET', '/api/me/', { token: stolen.body.access_token })).status).toBe(401);
    });

    it('a network failure during the refresh keeps the tokens, to try again later', async () => {
      const store = new MemoryTokenStore();
      const offline = recordingFetch((path) =>
        path === '/api/token/refresh/' ? new TypeError('fetch failed') : undefined,
      );
      await shortClient(store, fetch).createGuest();
      const before = store.load();

      await afterExpiry(async () => {
        expect(await failure(shortClient(store, offline.fetch).me())).toMatchObject({
          status: 0,
          code: 'network_error',
          detail: 'fetch failed',
        });
        expect(store.load()).toEqual(before);
        expect((await shortClient(store, fetch).me()).id).toBe(before?.userId);
      });
    });
  });

  describe('failures', () => {
    it('network errors reject with network_error, status 0', async () => {
      const port = await new Promise<number>((resolve) => {
        const server = createServer().listen(0, '127.0.0.1', () => {
          const address = server.address();
          server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
        });
      });
      const error = await failure(client({ baseUrl: `http://127.0.0.1:${port}` }).createGuest());
      expect(error).toMatchObject({ status: 0, code: 'network_error' });
    });

    it('answers that are not the API JSON reject with invalid_response', async () => {
      const html = recordingFetch(
        () => new Response('<html>Bad Gateway</html>', { status: 502, headers: { 'content-type': 'text/html' } }),
      );
      expect(await failure(client({ fetch: html.fetch }).createGuest())).toMatchObject({
        status: 502,
        code: 'invalid_response',
      });
      const notJson = recordingFetch(() => new Response('ok', { status: 200 }));
      expect(await failure(client({ fetch: notJson.fetch }).createGuest())).toMatchObject({
        status: 200,
        code: 'invalid_response',
      });
      const noCode = recordingFetch(() => Response.json({ oops: true }, { status: 500 }));
      expect(await failure(client({ fetch: noCode.fetch }).createGuest())).toMatchObject({
        status: 500,
        code: 'invalid_response',
      });
    });

    it('a 503 database_unavailable (or any answer with retry_after) says when to try again, and every error carries the request id', async () => {
      const outage = recordingFetch(() =>
        Response.json(
          {
            code: 'database_unavailable',
            message: 'The database is unavailable; retry in 5 seconds',
            retry_after: 5,
            request_id: 'req-42',
          },
          { status: 503, headers: { 'retry-after': '5' } },
        ),
      );
      expect(await failure(client({ fetch: outage.fetch }).createGuest())).toMatchObject({
        status: 503,
        code: 'database_unavailable',
        retryAfter: 5,
        requestId: 'req-42',
      });
    });

    it('logout forgets the tokens even when the server cannot be reached', async () => {
      const store = new MemoryTokenStore();
      await client({ store }).createGuest();
      const offline = recordingFetch(() => new TypeError('fetch failed'));
      await client({ store, fetch: offline.fetch }).logout();
      expect(offline.requests).toEqual(['POST /api/logout/']);
      expect(store.load()).toBeNull();
    });
  });

  describe('cannot drift from the server', () => {
    it("every endpoint the client calls exists in /openapi.json with the client's method, body fields and response fields", async () => {
      const spec = (await call(stack.api, 'GET', '/openapi.json')).body as OpenApi;
      expect(Object.keys(ENDPOINTS).length).toBeGreaterThanOrEqual(9);
      expect(checkAgainstOpenApi(spec, ENDPOINTS)).toEqual([]);
    });

    it('the checker does catch drift', async () => {
      const spec = (await call(stack.api, 'GET', '/openapi.json')).body as OpenApi;
      const drifted: Record<string, Endpoint> = {
        wrongMethod: { ...ENDPOINTS.me, method: 'POST' },
        wrongPath: { ...ENDPOINTS.me, path: '/api/me' as Endpoint['path'] }, // the compiler refuses it too
        wrongStatus: { ...ENDPOINTS.createUser, status: 200 },
        extraField: { ...ENDPOINTS.signIn, response: { required: [...ENDPOINTS.signIn.response.required, 'email'] } },
        extraNested: {
          ...ENDPOINTS.me,
          response: {
            ...ENDPOINTS.me.response,
            nested: { associations: { array: true, required: ['provider', 'avatar'] } },
          },
        },
        notAnArray: { ...ENDPOINTS.listAssociations, response: { required: ['provider'] } },
        extraBodyField: { ...ENDPOINTS.auth, request: ['access_token', 'refresh'] },
        wrongAuth: { ...ENDPOINTS.auth, auth: true },
      };
      const problems = checkAgainstOpenApi(spec, drifted);
      for (const name of Object.keys(drifted))
        expect(
          problems.some((problem) => problem.startsWith(`${name}:`)),
          name,
        ).toBe(true);
    });
  });

  it('builds on its own, without Node types (npm run build:client)', async () => {
    await promisify(execFile)(
      process.execPath,
      [`${root}node_modules/typescript/bin/tsc`, '-p', 'client/tsconfig.json', '--noEmit'],
      { cwd: root },
    );
  }, 60_000);
});

/** Just what the checker reads of an OpenAPI 3 document. */
interface Schema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  items?: Schema;
}
interface Operation {
  security?: unknown[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}
interface OpenApi {
  paths: Record<string, Record<string, Operation | undefined> | undefined>;
  components?: { schemas?: Record<string, Schema> };
}

/** What of the client's endpoints the server's OpenAPI document contradicts; empty when they agree. */
function checkAgainstOpenApi(spec: OpenApi, endpoints: Record<string, Endpoint>): string[] {
  const problems: string[] = [];
  const resolve = (schema: Schema | undefined): Schema | undefined =>
    schema?.$ref ? spec.components?.schemas?.[schema.$ref.replace('#/components/schemas/', '')] : schema;

  /** `at` is where in the answer so far, e.g. "associations[]." */
  const checkShape = (name: string, at: string, found: Schema | undefined, shape: ResponseShape) => {
    let schema = resolve(found);
    if (shape.array) {
      if (schema?.type !== 'array')
        return problems.push(`${name}: the server does not answer a list at "${at || '.'}"`);
      schema = resolve(schema.items);
      at = at ? `${at.slice(0, -1)}[].` : '[].';
    }
    const properties = schema?.properties ?? {};
    for (const field of shape.required)
      if (!(field in properties)) problems.push(`${name}: the server does not declare "${at}${field}"`);
    for (const [field, nested] of Object.entries(shape.nested ?? {}))
      checkShape(name, `${at}${field}.`, properties[field], nested);
  };

  for (const [name, endpoint] of Object.entries(endpoints)) {
    const operation = spec.paths[endpoint.path]?.[endpoint.method.toLowerCase()];
    if (!operation) {
      problems.push(`${name}: the server has no ${endpoint.method} ${endpoint.path}`);
      continue;
    }
    if (endpoint.auth !== Boolean(operation.security?.length))
      problems.push(`${name}: the server ${endpoint.auth ? 'does not ask for' : 'asks for'} a bearer token`);
    const requestProperties = resolve(operation.requestBody?.content?.['application/json']?.schema)?.properties ?? {};
    for (const field of endpoint.request ?? [])
      if (!(field in requestProperties)) problems.push(`${name}: the server does not accept "${field}"`);
    const answer = operation.responses?.[String(endpoint.status)];
    if (!answer) {
      problems.push(`${name}: the server never answers ${endpoint.status}`);
      continue;
    }
    if (endpoint.response) checkShape(name, '', answer.content?.['application/json']?.schema, endpoint.response);
    else if (answer.content) problems.push(`${name}: the server answers a body the client ignores`);
  }
  return problems;
}

describe("the client's contract files", () => {
  it('are generated from the server (its document, its types, its error codes), and the committed ones are up to date (npm run build:client)', async () => {
    const document = await renderDocument();
    expect(readFileSync(CLIENT_CONTRACT_FILES.document, 'utf8')).toBe(document);
    expect(readFileSync(CLIENT_CONTRACT_FILES.types, 'utf8')).toBe(await renderTypes(document));
    expect(readFileSync(CLIENT_CONTRACT_FILES.errorCodes, 'utf8')).toBe(renderClientErrorCodes());
    expect([...API_ERROR_CODES].sort()).toEqual(Object.keys(ERRORS).sort());
  });
});
