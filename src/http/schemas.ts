/** JSON schemas shared by the routes: they validate requests and document the API in /openapi.json. */
import { ERRORS, type ErrorCode } from '../lib/errors.js';

/** Every error: a code of the catalogue (src/lib/errors.ts) or of the operator's own pipeline step, and a human message. */
export const errorResponse = {
  $id: 'Error',
  type: 'object',
  description: 'Every error: a stable machine-readable code and a human message (also as `errors`).',
  properties: {
    code: {
      type: 'string',
      description:
        "What went wrong, for programs: one of a closed list (the operator's own pipeline steps may add codes: they are listed here too)",
      enum: Object.keys(ERRORS),
    },
    message: { type: 'string' },
    errors: { type: 'string', description: "The message, under the original design's name" },
    detail: { type: 'string', description: 'Why, when known (never a secret)' },
    retry_after: {
      type: 'integer',
      description:
        'Seconds to wait (rate_limited, provider_unavailable, database_unavailable, rate_limit_unavailable), also in the Retry-After header',
    },
    request_id: { type: 'string', description: 'Also in the X-Request-Id header and in every log line of the request' },
    providers: {
      type: 'array',
      items: { type: 'string' },
      description:
        'link_required: the providers that prove the user who has this verified e-mail; sign in with one of them, then link with link_token',
    },
    link_token: {
      type: 'string',
      description:
        'link_required: single use; POST /api/associate/link-token/ with it once signed in with one of `providers`',
    },
    link_token_expires_in: { type: 'integer', description: 'link_required: seconds the link token is good for' },
    merge_token: {
      type: 'string',
      description:
        "already_associated, to a user without a password: POST /api/users/merge/ with it signs in as the account's owner and merges this user into it",
    },
    merge_token_expires_in: { type: 'integer', description: 'already_associated: seconds the merge token is good for' },
    reason: {
      type: 'string',
      description:
        "hook_refused: the app's own code for the refusal, as its blocking hook answered it (the message is the hook's too)",
    },
  },
  required: ['code', 'message', 'errors'],
} as const;

/** Shapes the schemas share. */
export const integer = { type: 'integer' } as const;
export const text = { type: 'string' } as const;
export const dateTime = { type: 'string', format: 'date-time' } as const;
export const nullable = <T extends { type: string }>(schema: T) =>
  ({ ...schema, type: [schema.type, 'null'] }) as const;

export const tokenResponse = {
  $id: 'TokenResponse',
  type: 'object',
  required: ['id', 'username', 'access_token', 'refresh_token', 'token_type', 'expires_in'],
  properties: {
    id: integer,
    username: text,
    access_token: { ...text, description: 'ES256 JWT; verify with /.well-known/jwks.json' },
    refresh_token: { ...text, description: 'Opaque; single use (rotated by POST /api/token/refresh/)' },
    token_type: { ...text, enum: ['Bearer'] },
    expires_in: { ...integer, description: 'Seconds until the access token expires' },
  },
} as const;

export const association = {
  $id: 'Association',
  type: 'object',
  properties: {
    provider: { type: 'string' },
    uid: { type: 'string' },
    extra_data: { type: 'object', additionalProperties: true },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
  },
  required: ['provider', 'uid', 'extra_data', 'created_at', 'updated_at'],
} as const;

const TOKEN = '^[\\x21-\\x7e]+$';

/** What the app sends: the fields its provider SDK gave it. Which ones a provider needs is in README. */
export const socialTokenBody = {
  type: 'object',
  // Provider tokens are printable ASCII; anything else could only break the provider call (headers,
  // URLs), so it is refused here with a clear 400. Lengths keep a percent-encoded token within URL limits.
  properties: {
    access_token: {
      type: 'string',
      minLength: 1,
      maxLength: 2048,
      pattern: TOKEN,
      description: 'OAuth 2 access token, or OAuth 1.0a token (Twitter)',
    },
    access_token_secret: {
      type: 'string',
      minLength: 1,
      maxLength: 512,
      pattern: TOKEN,
      description: 'OAuth 1.0a token secret (Twitter)',
    },
    id_token: {
      type: 'string',
      minLength: 1,
      maxLength: 16384,
      pattern: TOKEN,
      description: 'OpenID Connect ID token',
    },
    nonce: {
      type: 'string',
      minLength: 1,
      maxLength: 1024,
      pattern: TOKEN,
      description: 'The raw nonce the app generated for the sign-in',
    },
    code: {
      type: 'string',
      minLength: 1,
      maxLength: 2048,
      pattern: TOKEN,
      description: 'Authorization code (Sign in with Apple)',
    },
    client_id: {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      pattern: TOKEN,
      description:
        'Sign in with Apple: the bundle or services id a `code` sent alone was issued to, when several are configured',
    },
    redirect_uri: {
      type: 'string',
      minLength: 1,
      maxLength: 2048,
      pattern: TOKEN,
      description:
        "Sign in with Apple's web flow (Android): the redirect URI the authorization used, one of SOCIAL_AUTH_APPLE_REDIRECT_URIS for its Services ID. Without it, the first one configured for that Services ID is used",
    },
    user: {
      description:
        'Sign in with Apple: the `user` JSON Apple gives the app on the first authorization only (or its text, as a web form post carries it). Kept for display; never used for identity',
      anyOf: [
        { type: 'string', maxLength: 4096 },
        {
          type: 'object',
          properties: {
            name: {
              type: 'object',
              properties: {
                firstName: { type: 'string', maxLength: 1024 },
                lastName: { type: 'string', maxLength: 1024 },
              },
            },
            email: { type: 'string', maxLength: 1024 },
          },
        },
      ],
    },
  },
  additionalProperties: false,
} as const;

export const linkTokenBody = {
  type: 'object',
  required: ['link_token'],
  properties: {
    link_token: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      pattern: TOKEN,
      description: 'The link_token of a 409 link_required answer',
    },
  },
  additionalProperties: false,
} as const;

export const mergeTokenBody = {
  type: 'object',
  required: ['merge_token'],
  properties: {
    merge_token: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      pattern: TOKEN,
      description: 'The merge_token of a 409 already_associated answer',
    },
  },
  additionalProperties: false,
} as const;

export const providerParam = {
  type: 'object',
  properties: {
    provider: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      examples: ['facebook', 'twitter', 'google', 'apple', 'line', 'github', 'oidc:keycloak'],
    },
  },
  required: ['provider'],
} as const;

/**
 * An operation's answers: its successes, and the error codes it may answer (their statuses come from the
 * catalogue). The OpenAPI document documents each code with an example (openapi.ts); the test suite checks
 * that no answer has a code its operation does not list.
 */
export function answers(success: Record<number, object>, codes: ErrorCode[]) {
  const statuses = new Set(
    codes.flatMap((code) => (code === 'provider_unavailable' ? [502, 503] : [ERRORS[code].status])),
  );
  return {
    response: { ...success, ...Object.fromEntries([...statuses].map((status) => [status, { $ref: 'Error#' }])) },
    'x-error-codes': codes,
  };
}

/** A success answer's schema with its description in the document. */
export const described = <T extends object>(schema: T, description: string) =>
  // Beside a $ref only `description` is read (as the response's); elsewhere it would describe the schema.
  '$ref' in schema ? { ...schema, description } : { ...schema, 'x-response-description': description };

export const bearer = [{ bearerAuth: [] }];

/** What the signed-in user's routes answer when the access token is missing or no longer good. */
export const SIGNED_IN: ErrorCode[] = ['not_authenticated', 'invalid_access_token'];

/** A route of the signed-in user that answers nothing (204). */
export const signedInNoContent = (route: {
  operationId: string;
  summary: string;
  description: string;
  tags: string[];
}) => ({
  ...route,
  security: bearer,
  ...answers({ 204: { type: 'null', description: 'Done' } }, SIGNED_IN),
});

/** Our public keys (/.well-known/jwks.json): ES256 JWKs. */
export const jwks = {
  $id: 'Jwks',
  type: 'object',
  description: "The public keys that verify our access tokens (RFC 7517): the `kid` of a token's header names its key",
  required: ['keys'],
  properties: {
    keys: {
      type: 'array',
      items: {
        type: 'object',
        required: ['kty', 'kid'],
        properties: { kty: text, crv: text, x: text, y: text, kid: text, alg: text, use: text },
      },
    },
  },
} as const;
