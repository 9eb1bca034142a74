import { invalidRequest } from '../errors.js';
import type { TokenInput } from './types.js';

/** The named field of the request body, or a 400 invalid_request naming it. */
export function requireField(input: TokenInput, field: keyof TokenInput, provider: string): string {
  const value = input[field];
  if (typeof value !== 'string' || value === '') {
    throw invalidRequest(`${field} is required for ${provider}`);
  }
  return value;
}
