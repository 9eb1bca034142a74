import { describe, expect, it } from 'vitest';
import { ApiError, apiError, ERRORS, refuse } from './errors.js';

describe('the error catalogue', () => {
  it('makes every error from its entry: code, status, message, and `about` filled in literally', () => {
    for (const [code, entry] of Object.entries(ERRORS)) {
      const error = apiError(code as keyof typeof ERRORS, { about: 'x' });
      expect({ code: error.code, status: error.statusCode }).toEqual({ code, status: entry.status });
    }
    expect(apiError('not_found', { about: "GET /nope$&x$'y" }).message).toBe("No route GET /nope$&x$'y");
    expect(apiError('invalid_token', { detail: 'why' }).toJSON()).toEqual({
      code: 'invalid_token',
      message: 'Error with social authentication',
      errors: 'Error with social authentication',
      detail: 'why',
    });
  });

  it("lets an operator's step refuse with a code of its own, never one of ours", () => {
    expect(refuse(403, 'email_domain_refused', 'Only example.com').toJSON()).toEqual({
      code: 'email_domain_refused',
      message: 'Only example.com',
      errors: 'Only example.com',
    });
    expect(() => refuse(403, 'user_not_found', 'x')).toThrow(/own codes/);
    expect(() => refuse(403, 'Bad Code', 'x')).toThrow(/snake_case/);
  });

  it('still reads the earlier public form new ApiError(status, code, message, extra) from a JavaScript step', () => {
    const Legacy = ApiError as unknown as new (
      status: number,
      code: string,
      message: string,
      extra?: object,
    ) => ApiError;
    const error = new Legacy(403, 'email_domain_refused', 'Only example.com accounts may be linked', { hint: 1 });
    expect({ status: error.statusCode, body: error.toJSON() }).toEqual({
      status: 403,
      body: {
        code: 'email_domain_refused',
        message: 'Only example.com accounts may be linked',
        errors: 'Only example.com accounts may be linked',
        hint: 1,
      },
    });
  });
});
