import { invalidRequest } from '../lib/errors.js';
import type { TokenInput } from './types.js';

/** The named field of the request body, or a 400 invalid_request naming it. */
export function requireField(input: TokenInput, field: keyof TokenInput, provider: string): string {
  const value = input[field];
  if (typeof value !== 'string' || value === '') {
    throw invalidRequest(`${field} is required for ${provider}`);
  }
  return value;
}

/** Which of the accepted token forms the app sent (the first present wins), or a 400 naming them. */
export function requireOneOf<F extends keyof TokenInput>(input: TokenInput, fields: readonly F[], provider: string): F {
  const form = fields.find((field) => typeof input[field] === 'string' && input[field] !== '');
  if (!form) throw invalidRequest(`${fields.join(' or ')} is required for ${provider}`);
  return form;
}
