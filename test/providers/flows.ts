import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { call, expectError, guest, startStack, type Answer, type DatabaseKind, type Stack } from '../helpers.js';

// What the provider tests do again and again through HTTP, each taking the stack it runs against first.

/** Tokens (or codes) an app sends to /api/auth/<provider>/ or /api/associate/<provider>/. */
type Body = Record<string, unknown>;

/** One stack for a describe block's tests (startStack's arguments): started before the first, closed after the last. */
export function sharedStack(
  kind: DatabaseKind,
  env?: Parameters<typeof startStack>[1],
  options?: Parameters<typeof startStack>[2],
): Stack {
  // Filled in by beforeAll, so that tests read it as they would a `let stack` assigned there.
  const stack = {} as Stack;
  beforeAll(async () => {
    Object.assign(stack, await startStack(kind, env, options));
  });
  afterAll(() => stack.close?.());
  return stack;
}

/** A sharedStack with the real circuit breaker (threshold 5), its emulator's faults cleared after each test. */
export function realBreakerStack(kind: DatabaseKind, env: Record<string, string> = {}): Stack {
  // Not startStack's 1000: a flood of refused tokens must not open the breaker that servers run with.
  const stack = sharedStack(kind, { SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '5', ...env });
  afterEach(() => stack.emulator.clearFaults());
  return stack;
}

/** Signs in with the provider's token: the API's answer, whatever it is. */
export const signInWith = (stack: Stack, provider: string, body: Body): Promise<Answer> =>
  call(stack.api, 'POST', `/api/auth/${provider}/`, { body });

/** Links the provider's account to a new guest: the guest, and the API's answer, whatever it is. */
export async function linkToGuest(stack: Stack, provider: string, body: Body) {
  const user = await guest(stack.api);
  const answer = await call(stack.api, 'POST', `/api/associate/${provider}/`, { token: user.access_token, body });
  return { user, answer };
}

/** Links the account behind `body` to a new guest, then signs in with `again` (a new phone's token). */
export async function linkThenSignIn(stack: Stack, provider: string, body: Body, again: Body = body) {
  const { user, answer: linked } = await linkToGuest(stack, provider, body);
  expect(linked.status, JSON.stringify(linked.body)).toBe(200);
  expect(linked.body.association.created).toBe(true);
  const signedIn = await signInWith(stack, provider, again);
  expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
  expect(signedIn.body.id).toBe(user.id);
  return { user, uid: linked.body.association.uid as string };
}

/** Asserts the sign-in is refused 400 invalid_token, its detail matching `detail` when given. */
export async function refusedSignIn(stack: Stack, provider: string, body: Body, detail?: RegExp): Promise<void> {
  const answer = await signInWith(stack, provider, body);
  expectError(answer, 400, 'invalid_token');
  if (detail) expect(answer.body.detail).toMatch(detail);
}

/** The extra_data the user's link to the provider shows in /api/associations/ (undefined without a link). */
export async function extraDataOf(stack: Stack, accessToken: string, provider: string) {
  const links = (await call(stack.api, 'GET', '/api/associations/', { token: accessToken })).body as Array<{
    provider: string;
    extra_data: Record<string, unknown>;
  }>;
  return links.find((link) => link.provider === provider)?.extra_data;
}

/** How many requests the emulator has answered for the provider so far. */
export const providerRequests = async (stack: Stack, provider: string): Promise<number> =>
  (await stack.emulator.stats()).requests[provider] ?? 0;
