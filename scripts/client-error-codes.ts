/**
 * Writes client/src/error-codes.ts from the server's error catalogue (src/core/errors.ts), so that the
 * client SDK knows the same closed list of codes. Run by `npm run build:client`; a test checks the committed
 * file is up to date.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERRORS } from '../src/core/errors.js';

export const CLIENT_ERROR_CODES_FILE = fileURLToPath(new URL('../client/src/error-codes.ts', import.meta.url));

export function renderClientErrorCodes(): string {
  const codes = Object.entries(ERRORS).map(([code, { status }]) => `  '${code}', // ${status}`);
  return [
    '// Generated from the server\'s error catalogue (src/core/errors.ts) by `npm run build:client`: do not edit.',
    '',
    '/** Every code the API answers (an operator\'s own pipeline steps may add theirs). */',
    'export const API_ERROR_CODES = [',
    ...codes,
    '] as const;',
    '',
    'export type ApiErrorCode = (typeof API_ERROR_CODES)[number];',
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) writeFileSync(CLIENT_ERROR_CODES_FILE, renderClientErrorCodes());
