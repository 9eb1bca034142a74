import { invalidRequest } from '../lib/errors.js';
import type { TokenInput } from './types.js';

/** Which of the accepted token forms the app sent (the first present wins), or a 400 naming them. */
export function requireOneOf<F extends keyof TokenInput>(input: TokenInput, fields: readonly F[], provider: string): F {
  const form = fields.find((field) => typeof input[field] === 'string' && input[field] !== '');
  if (!form) throw invalidRequest(`${fields.join(' or ')} is required for ${provider}`);
  return form;
}
