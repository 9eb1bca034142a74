import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { createClient } from '@hey-api/openapi-ts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_CONTRACT_FILES } from '../scripts/client-contract.js';
import { ApiContract, type ApiDocument } from './contract/api.js';
import { Storage } from '../src/store/storage.js';
import { call, guest, startStack, type Stack } from './helpers.js';

// The API document apps generate their clients from (client/openapi.json, as /openapi.json serves it).

type Media = { schema?: object; example?: unknown; examples?: Record<string, { value: unknown }> };
type Operation = {
  operationId?: string;
  security?: unknown[];
  requestBody?: { content: Record<string, Media> };
  responses: Record<string, { description?: string; content?: Record<string, Media> }>;
  'x-error-codes'?: string[];
};
/**
 * `redocly lint` of a document file with the committed ruleset (redocly.yaml): 0 problems, and nothing ignored
 * (there is no ignore file: an exception the ruleset makes is in redocly.yaml, for whatever file is linted).
 */
function expectLintClean(file: string): void {
  const lint = spawnSync(
    process.execPath,
    ['node_modules/@redocly/cli/bin/cli.js', 'lint', file, '--config', 'redocly.yaml', '--format', 'json'],
    {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
    },
  );
  expect(lint.status, lint.stdout + lint.stderr).toBe(0);
  const report = JSON.parse(lint.stdout) as {
    totals: { errors: number; warnings: number; ignored: number };
    problems: unknown[];
  };
  expect(report.problems).toEqual([]);
  expect(report.totals).toEqual({ errors: 0, warnings: 0, ignored: 0 });
}

const document = JSON.parse(readFileSync(CLIENT_CONTRACT_FILES.document, 'utf8')) as ApiDocument & {
  openapi: string;
  servers: unknown[];
  paths: Record<string, Record<string, Operation>>;
};
const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, operation]) => ({ name: `${method.toUpperCase()} ${path}`, operation })),
);

describe('the API document', () => {
  it('is valid OpenAPI 3.1 (swagger-parser)', async () => {
    expect(document.openapi).toBe('3.1.0');
    await expect(SwaggerParser.validate(structuredClone(document) as never)).resolves.toBeDefined();
  });

  it('passes `redocly lint` with the committed ruleset (redocly.yaml): 0 problems, none ignored', () => {
    expectLintClean(CLIENT_CONTRACT_FILES.document);
  }, 60_000);

  it('names every operation for generators (operationId, unique, camelCase) and declares its security', () => {
    const ids = operations.map(({ operation }) => operation.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { name, operation } of operations) {
      expect(operation.operationId, name).toMatch(/^[a-z][a-zA-Z]+$/);
      expect(operation.security, name).toBeInstanceOf(Array);
    }
    expect(ids).toEqual(
      expect.arrayContaining([
        'createUser',
        'signInWithPassword',
        'refreshToken',
        'logout',
        'getMe',
        'deleteMe',
        'listAuditEvents',
        'getJwks',
        'createNonce',
        'linkProvider',
        'signInWithProvider',
        'listLinks',
        'unlinkProvider',
      ]),
    );
    expect(document.servers).toEqual([{ url: 'http://127.0.0.1:8000', description: 'This server' }]);
  });

  it('has an example for every request body, every answer with a body, and every error code; each matches its schema', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    (formats as unknown as { default: (ajv: Ajv2020) => void }).default(ajv);
    ajv.addSchema(document as object, 'openapi.json');
    const check = (where: string, pointer: string[], value: unknown) => {
      const validate = ajv.compile({
        $ref: `openapi.json#/${pointer.map((part) => encodeURIComponent(part.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`,
      });
      expect(validate(value), `${where}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    };
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const where = `${method.toUpperCase()} ${path}`;
        const body = operation.requestBody?.content['application/json'];
        if (body) {
          expect(body.example, `${where}: request example`).toBeDefined();
          check(
            `${where} request`,
            ['paths', path, method, 'requestBody', 'content', 'application/json', 'schema'],
            body.example,
          );
        }
        const documented = new Set<string>();
        for (const [status, response] of Object.entries(operation.responses)) {
          const media = response.content?.['application/json'];
          expect(response.description, `${where} ${status}`).not.toBe('Default Response');
          if (!media) continue;
          const schema = ['paths', path, method, 'responses', status, 'content', 'application/json', 'schema'];
          if (Number(status) < 400) {
            expect(media.example, `${where} ${status}: example`).toBeDefined();
            check(`${where} ${status}`, schema, media.example);
            continue;
          }
          for (const [code, example] of Object.entries(media.examples ?? {})) {
            documented.add(code);
            expect((example.value as { code: string }).code).toBe(code);
            check(`${where} ${status} ${code}`, schema, example.value);
          }
        }
        expect([...documented].sort(), `${where}: an example per error code`).toEqual(
          [...(operation['x-error-codes'] ?? [])].sort(),
        );
      }
    }
  });

  it('lists every error code of the catalogue, closed (an enum), in one Error schema', () => {
    const error = document.components.schemas.Error as { properties: { code: { enum: string[] } }; required: string[] };
    expect(error.properties.code.enum).toContain('user_not_found');
    expect(error.required).toEqual(['code', 'message', 'errors']);
  });
});

describe('the contract check of the test suite (test/contract/api.ts)', () => {
  const contract = new ApiContract(document);

  it('catches an undeclared status, a body off its schema and an error code the operation does not list', () => {
    expect(
      contract.violation('GET', '/api/me/', 200, {
        id: 1,
        username: 'ada',
        has_password: false,
        date_joined: '2026-12-01T00:00:00.000Z',
        last_login: null,
        associations: [],
        claims: {},
      }),
    ).toBeUndefined();
    expect(contract.violation('GET', '/api/me/', 418, {})).toMatch(/a status the document does not declare/);
    expect(contract.violation('GET', '/api/me/', 200, { id: 'one' })).toMatch(/does not match its schema/);
    expect(
      contract.violation('POST', '/api/auth/google/', 404, {
        code: 'association_not_found',
        message: 'x',
        errors: 'x',
      }),
    ).toMatch(/x-error-codes do not list/);
    expect(
      contract.violation('POST', '/api/auth/google/', 404, {
        code: 'user_not_found',
        message: 'User Not Found',
        errors: 'User Not Found',
      }),
    ).toBeUndefined();
    expect(contract.violation('GET', '/healthz', 200, {})).toBeUndefined(); // not in the document
  });
});

describe.each([
  ['on', 'true'],
  ['off', 'false'],
])('the document the server serves at /openapi.json, admin API %s', (_name, admin) => {
  let stack: Stack;
  let served: { paths: Record<string, Record<string, Operation>> };
  const dir = mkdtempSync(join(tmpdir(), 'served-openapi-'));
  beforeAll(async () => {
    stack = await startStack('sqlite', { SOCIAL_LINK_ADMIN: admin });
    served = (await (await fetch(`${stack.api}/openapi.json`)).json()) as typeof served;
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes `redocly lint` with the committed ruleset (redocly.yaml): 0 problems, none ignored', () => {
    expect(Object.keys(served.paths).some((path) => path.startsWith('/admin/api/'))).toBe(admin === 'true');
    const file = join(dir, 'openapi.json');
    writeFileSync(file, JSON.stringify(served, null, 2));
    expectLintClean(file);
  }, 60_000);

  if (admin !== 'true') return;

  it("GET /.well-known/jwks.json has no client error to answer (why redocly.yaml's operation-4xx-response spares it)", async () => {
    for (const [path, headers] of [
      ['/.well-known/jwks.json', { accept: 'text/html' }],
      ['/.well-known/jwks.json?x=%00', {}],
      ['/.well-known/jwks.json?%E0%A4%A', {}],
      ['/.well-known/jwks.json/', { 'content-type': 'text/plain' }],
    ] as const) {
      const answer = await call(stack.api, 'GET', path, { headers });
      expect(answer.status, path).toBe(200);
      expect(answer.body.keys.length, path).toBeGreaterThan(0);
    }
  });

  it('lists the username lookup at an unambiguous path, and not its deprecated one', () => {
    const ids = Object.fromEntries(
      Object.entries(served.paths).flatMap(([path, methods]) =>
        Object.entries(methods).map(([method, operation]) => [
          operation.operationId,
          `${method.toUpperCase()} ${path}`,
        ]),
      ),
    );
    expect(ids.adminGetUserByUsername).toBe('GET /admin/api/usernames/{username}');
    expect(Object.keys(served.paths).filter((path) => path.includes('by-username'))).toEqual([]);
  });

  it('the username lookup answers the same at its new path and at its deprecated one', async () => {
    const key = (await new Storage(stack.db).serviceKeys.create('openapi-test', ['read'])).key;
    const user = await guest(stack.api);
    const lookups = async (username: string) => {
      const answers = [];
      for (const path of [`/admin/api/usernames/${username}`, `/admin/api/users/by-username/${username}`]) {
        const { status, body } = await call(stack.api, 'GET', path, { token: key });
        answers.push({ status, body: { ...body, request_id: undefined } });
      }
      return answers;
    };
    const [found, foundAtOld] = await lookups(user.username.toUpperCase());
    expect(found!.status).toBe(200);
    expect(found!.body.user).toMatchObject({ id: user.id, username: user.username });
    expect(foundAtOld).toEqual(found);
    const [missing, missingAtOld] = await lookups('nobody-by-this-name');
    expect(missing).toMatchObject({ status: 404, body: { code: 'user_not_found' } });
    expect(missingAtOld).toEqual(missing);
    expect((await call(stack.api, 'GET', '/admin/api/users/by-username/x')).status).toBe(401); // a service key is required there too
  });
});

describe('a client generated by another generator (@hey-api/openapi-ts)', () => {
  let stack: Stack;
  const dir = mkdtempSync(join(tmpdir(), 'generated-client-'));
  beforeAll(async () => {
    stack = await startStack('sqlite');
    await createClient({
      input: CLIENT_CONTRACT_FILES.document,
      output: join(dir, 'generated'),
      plugins: ['@hey-api/client-fetch', '@hey-api/typescript', '@hey-api/sdk'],
      logs: { level: 'silent', file: false },
    });
    // What an app would write against it: a phone links Google as a guest, a new phone finds the user again.
    writeFileSync(
      join(dir, 'app.ts'),
      `import { client } from './generated/client.gen.js';
       import { createNonce, createUser, linkProvider, signInWithProvider } from './generated/sdk.gen.js';
       import type { TokenResponse } from './generated/types.gen.js';

       export async function takeover(baseUrl: string, mintIdToken: (nonce: string) => Promise<string>): Promise<[TokenResponse, TokenResponse]> {
         client.setConfig({ baseUrl });
         const guest = await createUser({ throwOnError: true });
         const { nonce } = (await createNonce({ throwOnError: true })).data;
         await linkProvider({ path: { provider: 'google' }, body: { id_token: await mintIdToken(nonce), nonce }, auth: guest.data.access_token, throwOnError: true });
         const found = await signInWithProvider({ path: { provider: 'google' }, body: { id_token: await mintIdToken('') } });
         if (found.error) throw new Error(found.error.code);
         return [guest.data, found.data!];
       }
      `,
    );
  });
  afterAll(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('compiles (TypeScript, strict) with a program written against its operations', () => {
    const program = ts.createProgram([join(dir, 'app.ts')], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
      types: [],
      skipLibCheck: true,
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    expect(problems).toEqual([]);
  });

  it('works against the server', async () => {
    const { takeover } = (await import(join(dir, 'app.ts'))) as {
      takeover: (base: string, mint: (nonce: string) => Promise<string>) => Promise<Array<{ id: number }>>;
    };
    let sub: string | undefined;
    const mint = async (nonce: string) => {
      const token = await stack.emulator.mintIdToken('google', {
        ...(sub ? { sub, name: 'new phone' } : {}),
        ...(nonce ? { nonce } : {}),
      });
      sub = token.sub;
      return token.id_token;
    };
    const [guest, found] = await takeover(stack.api, mint);
    expect(found!.id).toBe(guest!.id);
  });
});
