import {
  ENDPOINTS,
  type AssociateResponse,
  type Association,
  type Claims,
  type Endpoint,
  type Me,
  type NonceResponse,
  type SocialToken,
  type TokenResponse,
} from './api.js';
import { AlreadyAssociatedError, LinkRequiredError, SocialLinkError, notSignedIn } from './errors.js';
import { MemoryTokenStore, type StoredTokens, type TokenStore } from './token-store.js';

export * from './api.js';
export {
  AlreadyAssociatedError,
  LinkRequiredError,
  SocialLinkError,
  type ClientErrorCode,
  type ErrorCode,
} from './errors.js';
export { API_ERROR_CODES, type ApiErrorCode } from './error-codes.js';
export { MemoryTokenStore, type StoredTokens, type TokenStore } from './token-store.js';

/**
 * What changed, for `onAuthStateChange`:
 * - `initial_session`: once per listener, just after it subscribed: what the store holds (a session, or null).
 * - `signed_in`: a new session (createGuest, signUp, signIn, authWith, mergeInto: the user may be another one).
 * - `token_refreshed`: the same session, a new token pair.
 * - `signed_out`: logout() or deleteAccount(); the store is cleared.
 * - `session_expired`: the server refused the refresh (401: expired, logged out elsewhere, revoked; 403 `user_disabled`:
 *   an operator disabled the user); the store is cleared. The error the call rejects with says which.
 */
export type AuthChangeEvent = 'initial_session' | 'signed_in' | 'token_refreshed' | 'signed_out' | 'session_expired';

/** Told every change of the session: the stored tokens after it, null when signed out. */
export type AuthStateListener = (event: AuthChangeEvent, session: StoredTokens | null) => void;

/** Stops the listener; calling it again does nothing. */
export type Unsubscribe = () => void;

export interface SocialLinkClientOptions {
  /** Where the API is, e.g. https://auth.example.com */
  baseUrl: string;
  /** Where the tokens live between launches; in memory by default. */
  tokenStore?: TokenStore;
  /** The fetch to use; the global one by default. */
  fetch?: typeof fetch;
}

/** An access token this close to its expiry is refreshed first, rather than sent to die on the way. */
const EXPIRY_MARGIN_MS = 5_000;

const isExpired = (tokens: StoredTokens) => Date.now() >= tokens.expiresAt - EXPIRY_MARGIN_MS;

/** The refresh in flight per store, so that clients sharing a store share it too. */
const refreshing = new WeakMap<TokenStore, Promise<StoredTokens>>();

interface Subscription {
  listener: AuthStateListener;
  /** It has been told something already: its initial_session would be stale. */
  told: boolean;
}

/** The listeners per store, like the refresh: every client on the store tells them what it changed. */
const subscribers = new WeakMap<TokenStore, Set<Subscription>>();

/** A listener's failure is its own: reported, never thrown into the SDK's call or the other listeners. */
function tell(subscription: Subscription, event: AuthChangeEvent, session: StoredTokens | null): void {
  subscription.told = true;
  const report = (error: unknown) => console.error('social-link: an onAuthStateChange listener failed', error);
  try {
    const result: unknown = subscription.listener(event, session && { ...session });
    if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') Promise.resolve(result).catch(report);
  } catch (error) {
    report(error);
  }
}

const toStored = (answer: TokenResponse): StoredTokens => ({
  accessToken: answer.access_token,
  refreshToken: answer.refresh_token,
  expiresAt: Date.now() + answer.expires_in * 1000,
  userId: answer.id,
  username: answer.username,
});

interface Call {
  params?: Record<string, string>;
  body?: unknown;
  accessToken?: string;
}

/** The names social-link's access tokens carry of their own: never custom claims (the server refuses them as such). */
const TOKEN_CLAIMS = new Set(['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'sid']);

/** A JWT's payload, read without checking its signature (the server checked it; this is for the app's own display). */
function payloadOf(jwt: string): Claims | null {
  try {
    const part = jwt.split('.')[1] ?? '';
    const base64 = part
      .replace(/-/g, '+')
      .replace(/_/g, '/')
      .padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
    const payload: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Claims) : null;
  } catch {
    return null;
  }
}

/**
 * The social-link API for apps. Sign-ins store the tokens in the token store; authenticated calls
 * refresh an expired access token transparently (one refresh at a time: a refresh token is single use,
 * and the server revokes the session when one is presented twice).
 *
 * `C` types the custom claims the app's operator sets (e.g. `SocialLinkClient<{ role: 'admin' | 'editor'; plan:
 * string }>`): `me().claims` and `claims()` are typed so, each claim possibly absent.
 */
export class SocialLinkClient<C extends Claims = Claims> {
  private readonly baseUrl: string;
  private readonly store: TokenStore;
  private readonly fetcher: typeof fetch;

  constructor(options: SocialLinkClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.store = options.tokenStore ?? new MemoryTokenStore();
    // Called as a plain function, never as a method of the client: browsers refuse `fetch` with another `this`.
    // The global one is looked up at call time, so a polyfill installed later still counts.
    const custom = options.fetch;
    this.fetcher = (input, init) => (custom ?? globalThis.fetch)(input, init);
  }

  /**
   * Calls `listener(event, session)` on every change of the session (see AuthChangeEvent), once per change, right after
   * the store was saved and before the call that changed it resolves. A failed call changes nothing and tells nothing.
   * Its first event is `initial_session`, with what the store holds (null: nobody signed in), unless a change came first.
   * Listeners hear the changes made by every client on the same store object.
   */
  onAuthStateChange(listener: AuthStateListener): Unsubscribe {
    const listeners = subscribers.get(this.store) ?? new Set<Subscription>();
    subscribers.set(this.store, listeners);
    const subscription: Subscription = { listener, told: false };
    listeners.add(subscription);
    // Never during this call (its unsubscribe is not even returned yet); after the store's load, however slow.
    Promise.resolve()
      .then(() => this.store.load())
      .then(
        (tokens) => {
          if (listeners.has(subscription) && !subscription.told) tell(subscription, 'initial_session', tokens ?? null);
        },
        (error: unknown) => console.error('social-link: the token store failed to load', error),
      );
    return () => void listeners.delete(subscription);
  }

  /** A new guest user (a phone's first launch), signed in. */
  createGuest(): Promise<TokenResponse> {
    return this.signInWith(ENDPOINTS.createUser, {});
  }

  /** A new user with a password, signed in. 409 `username_taken`, 400 `invalid_request`. */
  signUp(username: string, password: string): Promise<TokenResponse> {
    return this.signInWith(ENDPOINTS.createUser, { body: { username, password } });
  }

  /** 401 `invalid_credentials`. */
  signIn(username: string, password: string): Promise<TokenResponse> {
    return this.signInWith(ENDPOINTS.signIn, { body: { username, password } });
  }

  /**
   * A single-use nonce from the server: give it to the provider's SDK (Apple wants its SHA-256 in hex), then
   * send it back as `nonce` with the ID token. Good for one sign-in or link within `expires_in` seconds.
   */
  nonce(): Promise<NonceResponse> {
    return this.send<NonceResponse>(ENDPOINTS.nonce, {});
  }

  /** Links the social account of the token to the signed-in user. 409 `already_associated`, 400 `invalid_token`. */
  associate(provider: string, token: SocialToken): Promise<AssociateResponse> {
    return this.authed(ENDPOINTS.associate, { params: { provider }, body: token });
  }

  /**
   * A guest's way out of `AlreadyAssociatedError` (its `mergeToken`): signs in as the owner of the account it
   * proved; this guest is deleted. 400 `invalid_merge_token`.
   */
  async mergeInto(mergeToken: string): Promise<TokenResponse> {
    // The guest's session authorizes it; the answer is the owner's: stored in its place.
    const answer = await this.authed<TokenResponse>(ENDPOINTS.mergeInto, { body: { merge_token: mergeToken } });
    await this.saveAndTell('signed_in', toStored(answer));
    return answer;
  }

  /**
   * Links the account a `LinkRequiredError` proposed, once signed in with one of its `providers`.
   * 400 `invalid_link_token` (expired, used, or issued for another user), 409 `already_associated`.
   */
  linkWithToken(linkToken: string): Promise<AssociateResponse> {
    return this.authed(ENDPOINTS.linkWithToken, { body: { link_token: linkToken } });
  }

  /**
   * Signs in as the user linked to the social account of the token (a new phone). 404 `user_not_found`;
   * 409 `LinkRequiredError` when the account is unknown but a user has its verified e-mail.
   */
  authWith(provider: string, token: SocialToken): Promise<TokenResponse> {
    return this.signInWith(ENDPOINTS.auth, { params: { provider }, body: token });
  }

  listAssociations(): Promise<Association[]> {
    return this.authed(ENDPOINTS.listAssociations, {});
  }

  /** 404 `association_not_found`; 409 `last_login_method` when it is the user's last way to sign in. */
  async unlink(provider: string, uid: string): Promise<void> {
    await this.authed(ENDPOINTS.unlink, { params: { provider, uid } });
  }

  me(): Promise<Me<C>> {
    return this.authed(ENDPOINTS.me, {}) as Promise<Me<C>>;
  }

  /**
   * The custom claims of the stored access token (the user's, and those its sign-in added), read on the device
   * without a request; null when signed out. For the app's own screens: a backend checks the token itself, with
   * /.well-known/jwks.json. A refresh brings what an operator changed since.
   */
  async claims(): Promise<Partial<C> | null> {
    const tokens = await this.store.load();
    const payload = tokens && payloadOf(tokens.accessToken);
    if (!payload) return null;
    return Object.fromEntries(Object.entries(payload).filter(([name]) => !TOKEN_CLAIMS.has(name))) as Partial<C>;
  }

  /**
   * Deletes the signed-in user: its links and sessions too (DELETE /api/me/), then forgets the tokens here (`signed_out`).
   * Rejects, keeping the tokens, when the server did not delete it.
   */
  async deleteAccount(): Promise<void> {
    await this.authed(ENDPOINTS.deleteMe, {});
    await this.saveAndTell('signed_out', null);
  }

  /** Ends the session on the server when it can, and always forgets the tokens here. Never rejects for the server's sake. */
  async logout(): Promise<void> {
    try {
      await this.authed(ENDPOINTS.logout, {});
    } catch {
      // Offline, or the session was already dead: signing out here is what the user asked for.
    } finally {
      // Told only when there was a session to end: a refused refresh on the way has cleared the store and told already.
      if (await this.store.load()) await this.saveAndTell('signed_out', null);
      else await this.store.save(null);
    }
  }

  /** Exchanges the refresh token for a new pair now (the client also does it by itself when needed). */
  refresh(): Promise<StoredTokens> {
    return this.renew();
  }

  private async signInWith(endpoint: Endpoint, call: Call): Promise<TokenResponse> {
    const answer = await this.send<TokenResponse>(endpoint, call);
    await this.saveAndTell('signed_in', toStored(answer));
    return answer;
  }

  /** Saves, then tells the listeners of this store. */
  private async saveAndTell(event: AuthChangeEvent, tokens: StoredTokens | null): Promise<void> {
    await this.store.save(tokens);
    for (const subscription of [...(subscribers.get(this.store) ?? [])]) {
      // One that unsubscribed while others were being told hears nothing more.
      if (subscribers.get(this.store)?.has(subscription)) tell(subscription, event, tokens);
    }
  }

  /** A call with our access token: refreshed first when known to be expired, or once after a 401 `invalid_access_token`. */
  private async authed<T>(endpoint: Endpoint, call: Call): Promise<T> {
    let tokens = await this.store.load();
    if (!tokens) throw notSignedIn();
    let refreshed = false;
    if (isExpired(tokens)) {
      tokens = await this.renew(tokens.accessToken);
      refreshed = true;
    }
    try {
      return await this.send<T>(endpoint, { ...call, accessToken: tokens.accessToken });
    } catch (error) {
      if (refreshed || !(error instanceof SocialLinkError && error.code === 'invalid_access_token')) throw error;
    }
    tokens = await this.renew(tokens.accessToken);
    return this.send<T>(endpoint, { ...call, accessToken: tokens.accessToken });
  }

  /**
   * The one refresh in flight, shared by every caller (of every client on this store). `stale` is the access token a caller found
   * wanting: if the store holds a newer, valid one already (another call refreshed), that one is
   * returned without spending the refresh token again.
   */
  private renew(stale?: string): Promise<StoredTokens> {
    let shared = refreshing.get(this.store);
    if (!shared) {
      shared = this.refreshOnce(stale).finally(() => refreshing.delete(this.store));
      refreshing.set(this.store, shared);
    }
    return shared;
  }

  private async refreshOnce(stale: string | undefined): Promise<StoredTokens> {
    const tokens = await this.store.load();
    if (!tokens) throw notSignedIn();
    if (stale !== undefined && tokens.accessToken !== stale && !isExpired(tokens)) return tokens;
    // Compare-then-write: a logout or sign-in while the refresh was on the wire must not be undone.
    const stillOurs = async () => (await this.store.load())?.refreshToken === tokens.refreshToken;
    let answer: TokenResponse;
    try {
      answer = await this.send<TokenResponse>(ENDPOINTS.refresh, { body: { refresh_token: tokens.refreshToken } });
    } catch (error) {
      // 401: the session is over (expired, logged out, or revoked because the token was replayed); 403 user_disabled:
      // an operator disabled the user, its sessions ended. Other failures may pass.
      const over = error instanceof SocialLinkError && (error.status === 401 || error.code === 'user_disabled');
      if (over && (await stillOurs())) await this.saveAndTell('session_expired', null);
      throw error;
    }
    if (!(await stillOurs())) throw notSignedIn();
    const next = toStored(answer);
    await this.saveAndTell('token_refreshed', next);
    return next;
  }

  /** One HTTP request; every failure becomes a SocialLinkError. */
  private async send<T>(endpoint: Endpoint, call: Call): Promise<T> {
    const path = endpoint.path.replace(/\{(\w+)\}/g, (_, name: string) =>
      encodeURIComponent(call.params?.[name] ?? ''),
    );
    const headers: Record<string, string> = { accept: 'application/json' };
    if (call.accessToken) headers.authorization = `Bearer ${call.accessToken}`;
    // No content-type without a body: the server refuses an empty JSON body.
    if (call.body !== undefined) headers['content-type'] = 'application/json';
    let status: number;
    let text: string;
    try {
      const response = await this.fetcher(`${this.baseUrl}${path}`, {
        method: endpoint.method,
        headers,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
      });
      status = response.status;
      text = await response.text();
    } catch (error) {
      throw new SocialLinkError(
        0,
        'network_error',
        'The server could not be reached',
        error instanceof Error ? error.message : String(error),
      );
    }
    if (status >= 200 && status < 300 && endpoint.response === undefined) return undefined as T;
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new SocialLinkError(status, 'invalid_response', `The server answered HTTP ${status} without JSON`);
    }
    if (status >= 200 && status < 300) return data as T;
    const error = data as {
      code?: unknown;
      message?: unknown;
      detail?: unknown;
      retry_after?: unknown;
      request_id?: unknown;
      providers?: unknown;
      link_token?: unknown;
      link_token_expires_in?: unknown;
      merge_token?: unknown;
      merge_token_expires_in?: unknown;
    } | null;
    if (typeof error?.code !== 'string')
      throw new SocialLinkError(status, 'invalid_response', `The server answered HTTP ${status} without an error code`);
    if (error.code === 'already_associated') {
      const token = typeof error.merge_token === 'string' ? error.merge_token : undefined;
      throw new AlreadyAssociatedError(
        typeof error.message === 'string' ? error.message : error.code,
        token,
        token ? Number(error.merge_token_expires_in) || 0 : undefined,
      );
    }
    if (error.code === 'link_required' && Array.isArray(error.providers) && typeof error.link_token === 'string') {
      const providers = error.providers.filter((name): name is string => typeof name === 'string');
      throw new LinkRequiredError(
        typeof error.message === 'string' ? error.message : error.code,
        providers,
        error.link_token,
        Number(error.link_token_expires_in) || 0,
      );
    }
    throw new SocialLinkError(
      status,
      error.code,
      typeof error.message === 'string' ? error.message : error.code,
      typeof error.detail === 'string' ? error.detail : undefined,
      typeof error.retry_after === 'number' ? error.retry_after : undefined,
      typeof error.request_id === 'string' ? error.request_id : undefined,
    );
  }
}
