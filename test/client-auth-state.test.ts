import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AlreadyAssociatedError,
  MemoryTokenStore,
  SocialLinkClient,
  SocialLinkError,
  type AuthChangeEvent,
  type StoredTokens,
  type TokenStore,
} from '../client/src/index.js';
import { Storage } from '../src/store/storage.js';
import { call, startStack, type Stack } from './helpers.js';

// client.onAuthStateChange(listener), through the real server: which event each real call tells, with which session.

type Heard = [AuthChangeEvent, StoredTokens | null];

/** A listener that writes down what it hears. */
function recorder() {
  const heard: Heard[] = [];
  return {
    heard,
    listener: (event: AuthChangeEvent, session: StoredTokens | null) => void heard.push([event, session]),
    events: () => heard.map(([event]) => event),
  };
}

/** Lets the initial_session (after the store's load, a microtask or two away) arrive. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

async function failure(promise: Promise<unknown>): Promise<SocialLinkError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SocialLinkError);
  return error as SocialLinkError;
}

describe('client.onAuthStateChange', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { SOCIAL_LINK_ADMIN: 'true' });
  });
  afterAll(() => stack.close());
  afterEach(() => vi.restoreAllMocks());

  const client = (store: TokenStore = new MemoryTokenStore(), fetcher?: typeof fetch) =>
    new SocialLinkClient({ baseUrl: stack.api, tokenStore: store, ...(fetcher ? { fetch: fetcher } : {}) });

  /** The session the store holds, which the listener must have been told. */
  const stored = (store: MemoryTokenStore) => {
    const tokens = store.load();
    if (!tokens) throw new Error('nothing stored');
    return tokens;
  };

  describe('initial_session', () => {
    it('tells a new listener what the store holds: null when nobody is signed in, never during the subscribe call', async () => {
      const { heard, listener } = recorder();
      client().onAuthStateChange(listener);
      expect(heard).toEqual([]);
      await settle();
      expect(heard).toEqual([['initial_session', null]]);
    });

    it('tells the stored session when the app starts signed in, once', async () => {
      const store = new MemoryTokenStore();
      await client(store).createGuest();
      const { heard, listener } = recorder();
      client(store).onAuthStateChange(listener); // the next launch: a new client on the same storage
      await settle();
      await settle();
      expect(heard).toEqual([['initial_session', stored(store)]]);
    });

    it('is skipped when a change was told first (a slow store), so it never tells a stale session', async () => {
      let release!: () => void;
      const loaded = new Promise<void>((resolve) => (release = resolve));
      const memory = new MemoryTokenStore();
      const slow: TokenStore = {
        load: async () => (await loaded, memory.load()),
        save: (tokens) => memory.save(tokens),
      };
      const phone = client(slow);
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await phone.createGuest(); // sign-ins do not load the store
      release();
      await settle();
      expect(heard).toEqual([['signed_in', stored(memory)]]);
    });
  });

  describe('each real change, once, with the session after it', () => {
    it('signed_in: guest creation, sign-up, password sign-in and social sign-in', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;

      const guest = await phone.createGuest();
      expect(heard).toEqual([['signed_in', stored(store)]]);
      expect(heard[0]?.[1]).toMatchObject({
        userId: guest.id,
        username: guest.username,
        accessToken: guest.access_token,
        refreshToken: guest.refresh_token,
      });

      const fb = await stack.emulator.mintFacebookToken({});
      await phone.associate('facebook', { access_token: fb.access_token });
      expect(heard).toHaveLength(1); // linking changes no session

      const username = `grace_${Date.now()}`;
      const signedUp = await phone.signUp(username, 'correct horse battery');
      expect(heard.at(-1)).toEqual(['signed_in', stored(store)]);
      expect(stored(store).userId).toBe(signedUp.id);

      await phone.signIn(username, 'correct horse battery');
      expect(heard.at(-1)).toEqual(['signed_in', stored(store)]);

      const again = await stack.emulator.mintFacebookToken({ user: { id: fb.user_id } });
      const found = await phone.authWith('facebook', { access_token: again.access_token });
      expect(found.id).toBe(guest.id);
      expect(heard.at(-1)).toEqual(['signed_in', stored(store)]);
      expect(heard.map(([event]) => event)).toEqual(['signed_in', 'signed_in', 'signed_in', 'signed_in']);
    });

    it('signed_in with the owner, when a guest merges into the user of its old phone', async () => {
      const oldPhone = client();
      const owner = await oldPhone.createGuest();
      const fb = await stack.emulator.mintFacebookToken({});
      await oldPhone.associate('facebook', { access_token: fb.access_token });

      const store = new MemoryTokenStore();
      const newPhone = client(store);
      await newPhone.createGuest();
      const { heard, listener } = recorder();
      newPhone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;
      const refused = await failure(newPhone.associate('facebook', { access_token: fb.access_token }));
      expect(refused).toBeInstanceOf(AlreadyAssociatedError);
      expect(heard).toEqual([]);
      await newPhone.mergeInto((refused as AlreadyAssociatedError).mergeToken!);
      expect(heard).toEqual([['signed_in', stored(store)]]);
      expect(heard[0]?.[1]?.userId).toBe(owner.id);
    });

    it('token_refreshed: refresh(), and the refresh after a refused access token (one for concurrent calls)', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      await phone.createGuest();
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;

      const first = await phone.refresh();
      expect(heard).toEqual([['token_refreshed', first]]);
      expect(first).toEqual(stored(store));

      store.save({ ...stored(store), accessToken: 'not.a.jwt' }); // the server refuses it: the client refreshes and retries
      await Promise.all([phone.me(), phone.listAssociations(), phone.me()]);
      expect(heard).toHaveLength(2);
      expect(heard[1]).toEqual(['token_refreshed', stored(store)]);
      expect(heard[1]?.[1]?.refreshToken).not.toBe(first.refreshToken);
    });

    it('signed_out: logout, once; a logout with nobody signed in tells nothing', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      await phone.createGuest();
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;
      await phone.logout();
      expect(heard).toEqual([['signed_out', null]]);
      expect(store.load()).toBeNull();
      await phone.logout();
      expect(heard).toHaveLength(1);
    });

    it('signed_out: deleteAccount deletes the user on the server; a refused deletion keeps the session and tells nothing', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      const username = `ada_${Date.now()}`;
      await phone.signUp(username, 'correct horse battery');
      const tokens = stored(store);
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;

      const offline: typeof fetch = async () => {
        throw new TypeError('fetch failed');
      };
      expect(await failure(client(store, offline).deleteAccount())).toMatchObject({ code: 'network_error' });
      expect(heard).toEqual([]);
      expect(store.load()).toEqual(tokens);

      await phone.deleteAccount();
      expect(heard).toEqual([['signed_out', null]]);
      expect(store.load()).toBeNull();
      expect((await call(stack.api, 'GET', '/api/me/', { token: tokens.accessToken })).status).toBe(401);
      expect(await failure(client().signIn(username, 'correct horse battery'))).toMatchObject({
        status: 401,
        code: 'invalid_credentials',
      });
    });

    it('listeners hear the changes of every client on the same store', async () => {
      const store = new MemoryTokenStore();
      const app = client(store);
      const widget = client(store);
      const { heard, listener } = recorder();
      widget.onAuthStateChange(listener);
      await settle();
      await app.createGuest();
      await app.logout();
      expect(heard).toEqual([
        ['initial_session', null],
        ['signed_in', expect.objectContaining({ userId: expect.any(Number) })],
        ['signed_out', null],
      ]);
      const other = recorder();
      client().onAuthStateChange(other.listener); // another store: none of this
      await settle();
      expect(other.heard).toEqual([['initial_session', null]]);
    });
  });

  describe('failures tell nothing', () => {
    it('a refused sign-in, sign-up, social sign-in or merge, and an unreachable server', async () => {
      const username = `ada_${Date.now()}`;
      await client().signUp(username, 'correct horse battery');
      const store = new MemoryTokenStore();
      const phone = client(store);
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;

      expect(await failure(phone.signIn(username, 'wrong password!'))).toMatchObject({ code: 'invalid_credentials' });
      expect(await failure(phone.signUp(username, 'another password'))).toMatchObject({ code: 'username_taken' });
      const fb = await stack.emulator.mintFacebookToken();
      expect(await failure(phone.authWith('facebook', { access_token: fb.access_token }))).toMatchObject({
        code: 'user_not_found',
      });
      expect(await failure(phone.authWith('facebook', { access_token: 'EAAnotatoken' }))).toMatchObject({
        code: 'invalid_token',
      });
      const offline: typeof fetch = async () => {
        throw new TypeError('fetch failed');
      };
      expect(await failure(client(store, offline).createGuest())).toMatchObject({ code: 'network_error' });
      await phone.createGuest();
      heard.length = 0;
      expect(await failure(phone.mergeInto('slm_not-a-merge-token'))).toMatchObject({ status: 400 });
      expect(heard).toEqual([]);
    });

    it('a network failure during a refresh keeps the tokens and tells nothing', async () => {
      const store = new MemoryTokenStore();
      await client(store).createGuest();
      const before = stored(store);
      const { heard, listener } = recorder();
      const offline: typeof fetch = async () => {
        throw new TypeError('fetch failed');
      };
      const phone = client(store, offline);
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;
      expect(await failure(phone.refresh())).toMatchObject({ code: 'network_error' });
      expect(heard).toEqual([]);
      expect(store.load()).toEqual(before);
    });
  });

  describe('a refused refresh: session_expired', () => {
    it('a session logged out elsewhere: the refresh answers 401 invalid_refresh_token, the store is cleared, told once for concurrent calls', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      await phone.createGuest();
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;
      expect((await call(stack.api, 'POST', '/api/logout/', { token: stored(store).accessToken })).status).toBe(204);

      const errors = await Promise.all([failure(phone.me()), failure(phone.listAssociations())]);
      for (const error of errors) expect(error).toMatchObject({ status: 401, code: 'invalid_refresh_token' });
      expect(heard).toEqual([['session_expired', null]]);
      expect(store.load()).toBeNull();
      // Nothing left to end: logout tells nothing more.
      await phone.logout();
      expect(heard).toEqual([['session_expired', null]]);
    });

    it('a replayed refresh token revokes the session: refresh_token_reused, the store is cleared', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      await phone.createGuest();
      const { heard, listener } = recorder();
      phone.onAuthStateChange(listener);
      await settle();
      heard.length = 0;
      const stolen = await call(stack.api, 'POST', '/api/token/refresh/', {
        body: { refresh_token: stored(store).refreshToken },
      });
      expect(stolen.status).toBe(200);

      expect(await failure(phone.refresh())).toMatchObject({ status: 401, code: 'refresh_token_reused' });
      expect(heard).toEqual([['session_expired', null]]);
      expect(store.load()).toBeNull();
    });
  });

  it('a user an operator disabled: the refresh answers 403 user_disabled, session_expired, the store is cleared', async () => {
    const store = new MemoryTokenStore();
    const phone = client(store);
    const user = await phone.createGuest();
    const { heard, listener } = recorder();
    phone.onAuthStateChange(listener);
    await settle();
    heard.length = 0;
    const key = (await new Storage(stack.db).serviceKeys.create(`ops-${Date.now()}`, ['read', 'write'])).key;
    expect(
      (
        await call(stack.api, 'POST', `/admin/api/users/${user.id}/disable`, {
          token: key,
          body: { reason: 'fraud report' },
        })
      ).status,
    ).toBe(200);

    expect(await failure(phone.refresh())).toMatchObject({ status: 403, code: 'user_disabled' });
    expect(heard).toEqual([['session_expired', null]]);
    expect(store.load()).toBeNull();
  });

  describe('listeners', () => {
    it('unsubscribe stops the events, at once and for good; calling it again does nothing; other subscriptions go on', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      const kept = recorder();
      const gone = recorder();
      phone.onAuthStateChange(kept.listener);
      const unsubscribe = phone.onAuthStateChange(gone.listener);
      const sameFunctionAgain = phone.onAuthStateChange(kept.listener);
      unsubscribe(); // before its initial_session, even
      await settle();
      await phone.createGuest();
      unsubscribe();
      sameFunctionAgain();
      sameFunctionAgain();
      await phone.logout();
      expect(gone.heard).toEqual([]);
      // Both subscriptions of the same function heard the first two; one is left for the logout.
      expect(kept.events()).toEqual(['initial_session', 'initial_session', 'signed_in', 'signed_in', 'signed_out']);
    });

    it('a listener that unsubscribes another while being told: the other hears nothing more', async () => {
      const phone = client();
      const second = recorder();
      let stopSecond = () => {};
      phone.onAuthStateChange((event) => {
        if (event === 'signed_in') stopSecond();
      });
      stopSecond = phone.onAuthStateChange(second.listener);
      await settle();
      await phone.createGuest();
      expect(second.events()).toEqual(['initial_session']);
    });

    it('a listener that throws, or rejects, breaks neither the call nor the other listeners; the failure is reported', async () => {
      const reported = vi.spyOn(console, 'error').mockImplementation(() => {});
      const store = new MemoryTokenStore();
      const phone = client(store);
      const others = recorder();
      phone.onAuthStateChange(() => {
        throw new Error('listener bug');
      });
      phone.onAuthStateChange(async () => {
        throw new Error('async listener bug');
      });
      phone.onAuthStateChange(others.listener);
      await settle();

      const guest = await phone.createGuest();
      expect(stored(store).userId).toBe(guest.id);
      expect((await phone.me()).id).toBe(guest.id);
      await phone.refresh();
      await phone.logout();
      await settle();
      expect(others.events()).toEqual(['initial_session', 'signed_in', 'token_refreshed', 'signed_out']);
      expect(store.load()).toBeNull();
      const messages = reported.mock.calls.map(([, error]) => (error as Error).message);
      expect(messages.filter((message) => message === 'listener bug')).toHaveLength(4);
      expect(messages.filter((message) => message === 'async listener bug')).toHaveLength(4);
    });

    it('a listener gets a copy of the session: changing it changes nothing stored', async () => {
      const store = new MemoryTokenStore();
      const phone = client(store);
      phone.onAuthStateChange((_event, session) => {
        if (session) session.accessToken = 'tampered';
      });
      await phone.createGuest();
      expect(stored(store).accessToken).not.toBe('tampered');
      expect((await phone.me()).id).toBe(stored(store).userId);
    });
  });
});
