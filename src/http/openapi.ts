import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { apiError, ERRORS, type ErrorCode, type OperatorErrors } from '../lib/errors.js';
import { association, errorResponse, jwks, tokenResponse } from './schemas.js';

/**
 * The API contract (/openapi.json, OpenAPI 3.1) that apps generate their clients from, built from the routes'
 * schemas. A route declares its operationId, its success answers with an example (`x-example`), and the error
 * codes it may answer (`x-error-codes`, see schemas.ts `answers`); this module turns those into the document's
 * error responses, each with an example per code, and adds what every operation shares: `security` (`[]` when
 * public), the errors of any body (400, 413, 415), 500, and 503 database_unavailable. test/contract/openapi.ts checks every answer the
 * test suite receives against the document.
 */

declare module 'fastify' {
  interface FastifySchema {
    /** The error codes the operation may answer (see schemas.ts `answers`). */
    'x-error-codes'?: string[];
    /** An example request body and success answer, for the document. */
    'x-example'?: { request?: unknown; response?: unknown };
    /** The operation runs the pipeline: the operator's own error codes may come from it. */
    'x-runs-pipeline'?: boolean;
    /** No body at all is a request of its own (read as {}). */
    'x-body-optional'?: boolean;
  }
}

interface Operation {
  operationId?: string;
  security?: unknown[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: unknown; example?: unknown }> };
  responses: Record<
    string,
    {
      description: string;
      content?: Record<string, { schema?: unknown; example?: unknown; examples?: Record<string, unknown> }>;
    }
  >;
  'x-error-codes'?: string[];
  'x-example'?: { request?: unknown; response?: unknown };
  'x-runs-pipeline'?: boolean;
  'x-body-optional'?: boolean;
}

/** The statuses a code is answered with: the catalogue's, and provider_unavailable's 503 (throttled, or its circuit open). */
const statusesOf = (code: string, operatorErrors: OperatorErrors): number[] =>
  code === 'provider_unavailable'
    ? [502, 503]
    : [(ERRORS as Record<string, { status: number }>)[code]?.status ?? operatorErrors[code]!.status];

/** What fills each `%s` and `detail` in the examples: what a real answer says. */
const SAMPLES: Partial<Record<ErrorCode, { about?: string; detail?: string; extra?: Record<string, unknown> }>> = {
  invalid_request: { about: 'username: must NOT have fewer than 3 characters' },
  invalid_token: { detail: 'the token was issued to another app' },
  invalid_access_token: { detail: 'the session of this access token has ended' },
  unknown_provider: { about: 'myspace' },
  not_found: { about: 'GET /api/nope/' },
  payload_too_large: { about: 'Request body is too large' },
  unsupported_media_type: { about: 'Unsupported Media Type: text/plain' },
  rate_limited: { about: '42', extra: { retry_after: 42 } },
  database_unavailable: { about: '5', extra: { retry_after: 5 } },
  rate_limit_unavailable: { about: 'Redis is unreachable', extra: { retry_after: 5 } },
  provider_unavailable: { about: 'facebook', detail: 'did not answer within 5000 ms' },
  link_required: {
    extra: {
      providers: ['google'],
      link_token: 'slk_q8Zr2mVx0bLk4TjN7wPc1sYe5HdA9fGu3oKi6RnBtEw',
      link_token_expires_in: 600,
    },
  },
  invalid_link_token: { detail: 'unknown, expired or used' },
  invalid_merge_token: { detail: 'unknown, expired or used' },
  invalid_claims: { about: "reserved claim name sub: social-link sets it, or a token's reader trusts it as such" },
  hook_refused: { about: 'Sign-in from this device is not allowed', extra: { reason: 'banned_device' } },
  hook_unavailable: { detail: 'the before_sign_in hook failed (timeout)' },
};

const REQUEST_ID = '3f1c2a9e-8b7d-4c51-a0e6-2d94b7f0c1aa';

/** An example answer of the code at that status, as the server writes it. */
function errorExample(code: string, status: number, operatorErrors: OperatorErrors): Record<string, unknown> {
  if (code in operatorErrors) {
    const { message } = operatorErrors[code]!;
    return { code, message, errors: message, request_id: REQUEST_ID };
  }
  const sample = SAMPLES[code as ErrorCode] ?? {};
  const throttled = code === 'provider_unavailable' && status === 503;
  const error = apiError(code as ErrorCode, {
    about: sample.about,
    detail: throttled ? "facebook is rate-limiting this server's app (HTTP 429)" : sample.detail,
    extra: throttled ? { retry_after: 30 } : sample.extra,
  });
  return { ...error.toJSON(), request_id: REQUEST_ID };
}

/** Codes every operation may answer, and those of any request body. */
// (A database outage can meet any request.)
const ALWAYS: ErrorCode[] = ['internal_error', 'database_unavailable'];
const OF_A_BODY: ErrorCode[] = ['invalid_request', 'payload_too_large', 'unsupported_media_type'];

/** Completes the document the routes describe (see the module comment). */
export function completeDocument(
  document: Record<string, unknown>,
  options: { publicUrl: string; operatorErrors: OperatorErrors },
): Record<string, unknown> {
  const { operatorErrors } = options;
  const paths = document.paths as Record<string, Record<string, Operation>>;
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations)) {
      operation.security ??= [];
      const codes = new Set<string>([
        ...(operation['x-error-codes'] ?? []),
        ...ALWAYS,
        ...(operation.requestBody ? OF_A_BODY : []),
      ]);
      if (operation['x-runs-pipeline']) for (const code of Object.keys(operatorErrors)) codes.add(code);
      // A rate-limited operation may be refused while its limit cannot be checked (RATE_LIMIT_FAIL_CLOSED).
      if (codes.has('rate_limited')) codes.add('rate_limit_unavailable');
      delete operation['x-runs-pipeline'];
      operation['x-error-codes'] = [...codes].sort();

      // The server reads an empty body as {}: where that is a request of its own (a guest sign-up), say so.
      if (operation.requestBody && operation['x-body-optional']) operation.requestBody.required = false;
      delete operation['x-body-optional'];

      const example = operation['x-example'];
      delete operation['x-example'];
      if (example?.request !== undefined && operation.requestBody) {
        for (const media of Object.values(operation.requestBody.content)) media.example = example.request;
      }
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400 && example?.response !== undefined) {
          for (const media of Object.values(response.content ?? {})) media.example = example.response;
        }
        if (Number(status) >= 400) delete operation.responses[status]; // rebuilt below, from the codes
      }
      const byStatus = new Map<number, string[]>();
      for (const code of codes)
        for (const status of statusesOf(code, operatorErrors))
          byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
      for (const [status, atStatus] of [...byStatus].sort(([a], [b]) => a - b)) {
        operation.responses[String(status)] = {
          description: atStatus.map((code) => `\`${code}\``).join(', '),
          content: {
            'application/json': {
              schema: { $ref: '#/components/schemas/Error' },
              examples: Object.fromEntries(
                atStatus
                  .sort()
                  .map((code) => [code, { summary: code, value: errorExample(code, status, operatorErrors) }]),
              ),
            },
          },
        };
      }
    }
  }
  const components = document.components as {
    schemas: Record<string, { properties: Record<string, Record<string, unknown>> }>;
  };
  components.schemas.Error!.properties.code!.enum = [...Object.keys(ERRORS), ...Object.keys(operatorErrors)];
  return {
    ...document,
    servers: [{ url: options.publicUrl, description: 'This server' }],
  };
}

/** The OpenAPI document (/openapi.json) and the interactive docs (/docs), from the routes' schemas. */
export async function installApiDocs(
  app: FastifyInstance,
  options: { publicUrl: string; operatorErrors: OperatorErrors; admin?: boolean },
): Promise<void> {
  for (const schema of [errorResponse, tokenResponse, association, jwks]) app.addSchema(schema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'social-link',
        version: '0.1.0',
        summary: 'Social account linking and account takeover for smartphone apps',
        description:
          "Link social accounts (Facebook, X, Google, Apple, LINE, GitHub, OpenID Connect) to your app's users, and find them again from a social account. Errors are always `{code, message, errors}`; `code` is one of a closed list.",
        license: { name: 'MIT', identifier: 'MIT' },
      },
      tags: [
        { name: 'users', description: 'Our own users: guests, password users, the signed-in user and its history' },
        { name: 'sessions', description: 'Access and refresh tokens' },
        { name: 'social', description: 'Linking social accounts, and signing in with them' },
        ...(options.admin
          ? [
              {
                name: 'admin',
                description:
                  "For the app's backends (SOCIAL_LINK_ADMIN=true): find users, read, unlink, end sessions, delete, export; with a service key, every call audited",
              },
            ]
          : []),
      ],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'An access token of ours (ES256 JWT), from a sign-in or a refresh',
          },
          ...(options.admin
            ? {
                serviceKey: {
                  type: 'http',
                  scheme: 'bearer',
                  bearerFormat: 'slk_…',
                  description:
                    'A service key (social-link keys service create NAME --scopes read|write), for the admin API',
                },
              }
            : {}),
        },
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}`,
    },
    transformObject: (documentObject) =>
      'openapiObject' in documentObject
        ? (completeDocument(
            documentObject.openapiObject as Record<string, unknown>,
            options,
          ) as typeof documentObject.openapiObject)
        : documentObject.swaggerObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
