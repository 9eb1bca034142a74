// What the load sends, made before it runs: provider tokens minted by the emulator, guest users linked to
// them through the API, and a pool of fresh (user, token) pairs for the write path.
import { Agent, request } from 'undici';
import type { EmulatorClient } from '@social-link/emulator';
import type { Shot } from './load.js';

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 });

export async function closeSeedingAgent(): Promise<void> {
  await agent.close();
}

/** POST JSON (or nothing) and parse the JSON answer; throws unless the status is the expected one. */
async function post<T>(url: string, body: unknown, expected: number, headers: Record<string, string> = {}): Promise<T> {
  const response = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.body.text();
  if (response.statusCode !== expected)
    throw new Error(`POST ${new URL(url).pathname} answered ${response.statusCode}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** Runs `fn` on every item, at most `limit` at a time; results in order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const DAY = 86_400;

/** The provider tokens of the linked users: one Facebook account and one Google account each. */
export interface LinkedTokens {
  facebook: string[];
  /** The Facebook user id of each of those tokens (what debug_token answers). */
  facebookUids: string[];
  google: string[];
  /** The Google account (`sub`) of each of those ID tokens. */
  googleSubs: string[];
}

/** Mints `count` Facebook access tokens and Google ID tokens (a day long, each its own account). */
export async function mintLinkedTokens(emulator: EmulatorClient, count: number, runId: string): Promise<LinkedTokens> {
  const minted = await mapLimit(range(count), 16, () => emulator.mintFacebookToken({ expires_in: DAY }));
  const googleSubs = range(count).map((i) => `bench-${runId}-${i}`);
  const google = await mapLimit(
    googleSubs,
    16,
    async (sub) => (await emulator.mintIdToken('google', { sub, expires_in: DAY })).id_token,
  );
  return {
    facebook: minted.map((token) => token.access_token),
    facebookUids: minted.map((token) => token.user_id),
    google,
    googleSubs,
  };
}

interface TokenBody {
  id: number;
  access_token: string;
}

/** A guest user per pair of tokens, linked to both through the API (so each database gets its own users). */
export async function linkUsers(api: string, tokens: LinkedTokens): Promise<void> {
  await mapLimit(tokens.facebook, 16, async (facebookToken, i) => {
    const user = await post<TokenBody>(`${api}/api/users/`, undefined, 201);
    const auth = { authorization: `Bearer ${user.access_token}` };
    await post(`${api}/api/associate/facebook/`, { access_token: facebookToken }, 200, auth);
    await post(`${api}/api/associate/google/`, { id_token: tokens.google[i] }, 200, auth);
  });
}

/** Sign-in bodies of the linked users. */
export const facebookSignIns = (tokens: LinkedTokens): Shot[] =>
  tokens.facebook.map((token) => ({ body: JSON.stringify({ access_token: token }) }));
export const googleSignIns = (tokens: LinkedTokens): Shot[] =>
  tokens.google.map((token) => ({ body: JSON.stringify({ id_token: token }) }));

/**
 * `count` new guest users, each with a Facebook token of an account never linked: every request of the
 * write path links a new account to a new user, so it really writes.
 */
export async function associatePool(api: string, emulator: EmulatorClient, count: number): Promise<Shot[]> {
  return mapLimit(range(count), 32, async () => {
    const [user, minted] = await Promise.all([
      post<TokenBody>(`${api}/api/users/`, undefined, 201),
      emulator.mintFacebookToken({ expires_in: DAY }),
    ]);
    return {
      body: JSON.stringify({ access_token: minted.access_token }),
      headers: { authorization: `Bearer ${user.access_token}` },
    };
  });
}
