/**
 * The API as the client sees it: request and response types (mirroring the server's /openapi.json)
 * and ENDPOINTS, the one list of what the client calls. A test checks ENDPOINTS against the running
 * server's OpenAPI document, and the compiler checks ENDPOINTS against the types below, so neither can drift.
 */

/** What the provider's SDK gave the app; which fields a provider needs is in the server's README. */
export interface SocialToken {
  access_token?: string;
  /** OAuth 1.0a token secret (Twitter / X). */
  access_token_secret?: string;
  /** OpenID Connect ID token (Apple, Google, LINE, Facebook Limited Login, ...). */
  id_token?: string;
  /** The nonce of the sign-in, as the app has it: from `nonce()`, or the raw one it generated (Apple: not its hash). */
  nonce?: string;
  /** Authorization code (Sign in with Apple). */
  code?: string;
  /** Sign in with Apple: the client id a `code` sent alone was issued to, when the server knows several. */
  client_id?: string;
  /**
   * Sign in with Apple: the name Apple gives the app on the FIRST authorization only (web: the `user` form
   * field's JSON text; iOS: build it from ASAuthorizationAppleIDCredential.fullName). Kept for display.
   */
  user?: { name?: { firstName?: string; lastName?: string }; email?: string } | string;
}

export interface Credentials {
  username: string;
  password: string;
}

export interface RefreshRequest {
  refresh_token: string;
}

export interface TokenResponse {
  id: number;
  username: string;
  access_token: string;
  refresh_token: string;
  token_type: 'Bearer';
  /** Seconds until the access token expires. */
  expires_in: number;
}

/** A single-use nonce for the provider SDK (POST /api/nonce/). */
export interface NonceResponse {
  nonce: string;
  /** Seconds it stays good for one sign-in or link. */
  expires_in: number;
}

export interface Association {
  provider: string;
  uid: string;
  /** Profile facts and token expiry the provider told (name, e-mail, ...); never a token. */
  extra_data: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export interface AssociateResponse {
  success: boolean;
  association: {
    provider: string;
    uid: string;
    /** false when this social account was already linked to this user. */
    created: boolean;
  };
}

export interface Me {
  id: number;
  username: string;
  has_password: boolean;
  date_joined: string;
  last_login: string | null;
  associations: Association[];
}

/** The keys of T that are not optional. */
type RequiredKeys<T> = { [K in keyof T]-?: {} extends Pick<T, K> ? never : K }[keyof T];

/** T's required keys; the object literal makes the compiler refuse a missing or an unknown one. */
const requiredOf = <T>(keys: Record<RequiredKeys<T>, true>): string[] => Object.keys(keys);
/** All of T's keys, optional ones too. */
const keysOf = <T>(keys: Record<keyof T, true>): string[] => Object.keys(keys);

/** The fields a response must have; `array` for a list of such objects; `nested` for fields that are objects. */
export interface ResponseShape {
  required: readonly string[];
  array?: boolean;
  nested?: Readonly<Record<string, ResponseShape>>;
}

export interface Endpoint {
  method: 'GET' | 'POST' | 'DELETE';
  /** The OpenAPI path template; the client fills each `{name}` with the URI-encoded parameter. */
  path: string;
  /** The success status (the client accepts any 2xx). */
  status: number;
  /** Sends our access token. */
  auth: boolean;
  /** The JSON body fields the client may send. */
  request?: readonly string[];
  /** The JSON answer; absent when there is none (204). */
  response?: ResponseShape;
}

const tokenResponse: ResponseShape = { required: requiredOf<TokenResponse>({ id: true, username: true, access_token: true, refresh_token: true, token_type: true, expires_in: true }) };
const association: ResponseShape = { required: requiredOf<Association>({ provider: true, uid: true, extra_data: true, created_at: true, updated_at: true }) };
const credentials = keysOf<Credentials>({ username: true, password: true });
const socialToken = keysOf<SocialToken>({ access_token: true, access_token_secret: true, id_token: true, nonce: true, code: true, client_id: true, user: true });

export const ENDPOINTS = {
  createUser: { method: 'POST', path: '/api/users/', status: 201, auth: false, request: credentials, response: tokenResponse },
  signIn: { method: 'POST', path: '/api/token/', status: 200, auth: false, request: credentials, response: tokenResponse },
  refresh: {
    method: 'POST',
    path: '/api/token/refresh/',
    status: 200,
    auth: false,
    request: keysOf<RefreshRequest>({ refresh_token: true }),
    response: tokenResponse,
  },
  logout: { method: 'POST', path: '/api/logout/', status: 204, auth: true },
  nonce: { method: 'POST', path: '/api/nonce/', status: 200, auth: false, response: { required: requiredOf<NonceResponse>({ nonce: true, expires_in: true }) } },
  me: {
    method: 'GET',
    path: '/api/me/',
    status: 200,
    auth: true,
    response: {
      required: requiredOf<Me>({ id: true, username: true, has_password: true, date_joined: true, last_login: true, associations: true }),
      nested: { associations: { ...association, array: true } },
    },
  },
  associate: {
    method: 'POST',
    path: '/api/associate/{provider}/',
    status: 200,
    auth: true,
    request: socialToken,
    response: {
      required: requiredOf<AssociateResponse>({ success: true, association: true }),
      nested: { association: { required: requiredOf<AssociateResponse['association']>({ provider: true, uid: true, created: true }) } },
    },
  },
  auth: { method: 'POST', path: '/api/auth/{provider}/', status: 200, auth: false, request: socialToken, response: tokenResponse },
  listAssociations: { method: 'GET', path: '/api/associations/', status: 200, auth: true, response: { ...association, array: true } },
  unlink: { method: 'DELETE', path: '/api/associations/{provider}/{uid}/', status: 204, auth: true },
} as const satisfies Record<string, Endpoint>;
