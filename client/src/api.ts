/**
 * The API as the client sees it: request and response types, generated from the API document, and
 * ENDPOINTS, the one list of what the client calls. A test checks ENDPOINTS against the running server's
 * OpenAPI document, and the compiler checks ENDPOINTS against the types below, so neither can drift.
 */

import type { components, operations, paths } from './openapi.js';

// The request and answer types, from the API document (client/openapi.json, generated into ./openapi.ts).
type Schemas = components['schemas'];
type RequestOf<Id extends keyof operations> = NonNullable<operations[Id]['requestBody']>['content']['application/json'];
type AnswerOf<
  Id extends keyof operations,
  Status extends keyof operations[Id]['responses'],
> = operations[Id]['responses'][Status] extends {
  content: { 'application/json': infer Body };
}
  ? Body
  : never;

/** What the provider's SDK gave the app; which fields a provider needs is in the server's README. */
export type SocialToken = RequestOf<'linkProvider'>;
export type Credentials = RequestOf<'signInWithPassword'>;
export type RefreshRequest = RequestOf<'refreshToken'>;
export type TokenResponse = Schemas['TokenResponse'];
/** A single-use nonce for the provider SDK (POST /api/nonce/). */
export type NonceResponse = AnswerOf<'createNonce', 200>;
export type Association = Schemas['Association'];
export type AssociateResponse = AnswerOf<'linkProvider', 200>;
/** Custom claims: what an app's backends read from its access tokens (roles, a plan, a tenant id). */
export type Claims = Record<string, unknown>;
/** The signed-in user; `claims` typed as the app declares them (SocialLinkClient<C>), each one possibly absent. */
export type Me<C extends Claims = Claims> = Omit<AnswerOf<'getMe', 200>, 'claims'> & { claims: Partial<C> };
/** An error answer: `code` is one of a closed list. */
export type ApiError = Schemas['Error'];

/** The keys of T that are not optional. */
type RequiredKeys<T> = { [K in keyof T]-?: Record<never, never> extends Pick<T, K> ? never : K }[keyof T];

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
  /** The OpenAPI path template (one the document has); the client fills each `{name}` with the URI-encoded parameter. */
  path: keyof paths;
  /** The success status (the client accepts any 2xx). */
  status: number;
  /** Sends our access token. */
  auth: boolean;
  /** The JSON body fields the client may send. */
  request?: readonly string[];
  /** The JSON answer; absent when there is none (204). */
  response?: ResponseShape;
}

const tokenResponse: ResponseShape = {
  required: requiredOf<TokenResponse>({
    id: true,
    username: true,
    access_token: true,
    refresh_token: true,
    token_type: true,
    expires_in: true,
  }),
};
const association: ResponseShape = {
  required: requiredOf<Association>({
    provider: true,
    uid: true,
    extra_data: true,
    created_at: true,
    updated_at: true,
  }),
};
const credentials = keysOf<Credentials>({ username: true, password: true });
const socialToken = keysOf<SocialToken>({
  access_token: true,
  access_token_secret: true,
  id_token: true,
  nonce: true,
  code: true,
  client_id: true,
  redirect_uri: true,
  user: true,
});

const associated: ResponseShape = {
  required: requiredOf<AssociateResponse>({ success: true, association: true }),
  nested: {
    association: {
      required: requiredOf<AssociateResponse['association']>({ provider: true, uid: true, created: true }),
    },
  },
};

export const ENDPOINTS = {
  createUser: {
    method: 'POST',
    path: '/api/users/',
    status: 201,
    auth: false,
    request: credentials,
    response: tokenResponse,
  },
  signIn: {
    method: 'POST',
    path: '/api/token/',
    status: 200,
    auth: false,
    request: credentials,
    response: tokenResponse,
  },
  refresh: {
    method: 'POST',
    path: '/api/token/refresh/',
    status: 200,
    auth: false,
    request: keysOf<RefreshRequest>({ refresh_token: true }),
    response: tokenResponse,
  },
  logout: { method: 'POST', path: '/api/logout/', status: 204, auth: true },
  nonce: {
    method: 'POST',
    path: '/api/nonce/',
    status: 200,
    auth: false,
    response: { required: requiredOf<NonceResponse>({ nonce: true, expires_in: true }) },
  },
  me: {
    method: 'GET',
    path: '/api/me/',
    status: 200,
    auth: true,
    response: {
      required: requiredOf<Me>({
        id: true,
        username: true,
        has_password: true,
        date_joined: true,
        last_login: true,
        associations: true,
        claims: true,
      }),
      nested: { associations: { ...association, array: true } },
    },
  },
  associate: {
    method: 'POST',
    path: '/api/associate/{provider}/',
    status: 200,
    auth: true,
    request: socialToken,
    response: associated,
  },
  linkWithToken: {
    method: 'POST',
    path: '/api/associate/link-token/',
    status: 200,
    auth: true,
    request: ['link_token'],
    response: associated,
  },
  mergeInto: {
    method: 'POST',
    path: '/api/users/merge/',
    status: 200,
    auth: true,
    request: ['merge_token'],
    response: tokenResponse,
  },
  auth: {
    method: 'POST',
    path: '/api/auth/{provider}/',
    status: 200,
    auth: false,
    request: socialToken,
    response: tokenResponse,
  },
  listAssociations: {
    method: 'GET',
    path: '/api/associations/',
    status: 200,
    auth: true,
    response: { ...association, array: true },
  },
  unlink: { method: 'DELETE', path: '/api/associations/{provider}/{uid}/', status: 204, auth: true },
  deleteMe: { method: 'DELETE', path: '/api/me/', status: 204, auth: true },
} as const satisfies Record<string, Endpoint>;
