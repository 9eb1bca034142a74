/**
 * What the client SDK is generated from, written by `npm run build:client` (a test checks the committed files
 * are up to date):
 *   client/openapi.json       the API document, for the default configuration (the one apps generate from);
 *   client/src/openapi.ts     its TypeScript types (openapi-typescript): the SDK's request and answer types;
 *   client/src/error-codes.ts the closed list of error codes, from the server's catalogue (src/lib/errors.ts).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import { loadConfig } from '../src/config/config.js';
import { ERRORS } from '../src/lib/errors.js';
import { apiDocument } from '../src/server/api-document.js';

const at = (path: string) => fileURLToPath(new URL(path, import.meta.url));
export const CLIENT_CONTRACT_FILES = {
  document: at('../client/openapi.json'),
  types: at('../client/src/openapi.ts'),
  errorCodes: at('../client/src/error-codes.ts'),
};

/** The document of the default configuration: no providers' secrets, the default public URL. */
export async function renderDocument(): Promise<string> {
  return `${JSON.stringify(await apiDocument(loadConfig({}, { role: 'cli' })), null, 2)}\n`;
}

export async function renderTypes(document: string): Promise<string> {
  const types = astToString(await openapiTS(JSON.parse(document) as Parameters<typeof openapiTS>[0]));
  return `// Generated from client/openapi.json by \`npm run build:client\` (openapi-typescript): do not edit.\n\n${types}`;
}

export function renderClientErrorCodes(): string {
  const codes = Object.entries(ERRORS).map(([code, { status }]) => `  '${code}', // ${status}`);
  return [
    "// Generated from the server's error catalogue (src/lib/errors.ts) by `npm run build:client`: do not edit.",
    '',
    "/** Every code the API answers (an operator's own pipeline steps may add theirs). */",
    'export const API_ERROR_CODES = [',
    ...codes,
    '] as const;',
    '',
    'export type ApiErrorCode = (typeof API_ERROR_CODES)[number];',
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const document = await renderDocument();
  writeFileSync(CLIENT_CONTRACT_FILES.document, document);
  writeFileSync(CLIENT_CONTRACT_FILES.types, await renderTypes(document));
  writeFileSync(CLIENT_CONTRACT_FILES.errorCodes, renderClientErrorCodes());
}
