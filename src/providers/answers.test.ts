import { describe, expect, it } from 'vitest';
import { InvalidTokenError, ProviderUnavailableError } from '../lib/errors.js';
import { accepted, account, refusalError } from './answers.js';
import { text } from '../lib/narrowing.js';

const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => ({ status, body, headers });

describe('provider answers', () => {
  it('reads a refusal as the provider module declares it: token, our app, throttled, outage', () => {
    expect(refusalError('p', 'x', answer(400, {}), { token: 'bad token' })).toBeInstanceOf(InvalidTokenError);
    expect(refusalError('p', 'x', answer(403, {}), { app: 'HTTP 403', hint: 'fix the key' })).toMatchObject({
      statusCode: 502,
      failure: 'app_refused',
      hint: 'fix the key',
    });
    expect(refusalError('p', 'x', answer(429, {}, { 'retry-after': '30' }), { throttled: 'HTTP 429' })).toMatchObject({
      statusCode: 503,
      failure: 'rate_limited',
      extra: { retry_after: 30 },
    });
    expect(refusalError('p', 'x', answer(400, {}), { outage: 'Graph error 2' })).toMatchObject({
      statusCode: 502,
      failure: 'outage',
    });
    // An answer the module does not know is the provider's trouble, never the user's token.
    expect(refusalError('p', 'x', answer(418, 'teapot'), undefined)).toBeInstanceOf(ProviderUnavailableError);
  });

  it('accepts only a 200 with a JSON object', () => {
    expect(accepted('p', 'x', answer(200, { id: 1 }), () => undefined)).toEqual({ id: 1 });
    expect(() => accepted('p', 'x', answer(200, [1]), () => undefined)).toThrow(ProviderUnavailableError);
    expect(() => accepted('p', 'x', answer(401, {}), () => ({ token: 'no' }))).toThrow(InvalidTokenError);
  });

  it('text() takes non-empty strings only; account() maps the profile facts', () => {
    expect([text({ a: 'x' }, 'a'), text({ a: '' }, 'a'), text({ a: 1 }, 'a')]).toEqual(['x', undefined, undefined]);
    expect(account({ uid: '7', name: 'Ada L', email: 'a@x' }, { k: 1 })).toEqual({
      uid: '7',
      details: {
        username: 'Ada L',
        email: 'a@x',
        email_verified: false,
        fullname: 'Ada L',
        first_name: undefined,
        last_name: undefined,
      },
      extraData: { k: 1 },
    });
    expect(account({ uid: '7', name: 'Ada', username: 'ada' }, {}).details.username).toBe('ada');
  });
});
