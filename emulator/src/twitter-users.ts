import { randomInt } from 'node:crypto';
import { randomPersonName } from './random.js';
import type { EmulatorState, TwitterUser } from './state.js';

// X's users, as both of its APIs know them: the OAuth 1.0a routes (twitter.ts) and the OAuth 2 routes
// (twitter-oauth2.ts) keep them in state.twitterUsers, so both kinds of token name one id.

export interface TwitterUserInput {
  id?: string;
  screen_name?: string;
  name?: string;
  email?: string;
}

/** The `user` of a mint request's body (TwitterUserInput). */
export const twitterUserInputSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    // Digits only: the id is also written as a bare JSON number.
    id: { type: 'string', pattern: '^[1-9][0-9]{0,18}$' },
    screen_name: { type: 'string', pattern: '^[A-Za-z0-9_]{1,15}$' },
    name: { type: 'string', minLength: 1 },
    email: { type: 'string', format: 'email' },
  },
} as const;

const TWITTER_EPOCH_MS = 1288834974657;

/** A known user id keeps its profile; only the fields given are changed. */
export function upsertTwitterUser(state: EmulatorState, input: TwitterUserInput): TwitterUser {
  const id = input.id ?? snowflakeId();
  const user = { ...(state.twitterUsers.get(id) ?? newTwitterUser(id)), ...input, id };
  state.twitterUsers.set(id, user);
  return user;
}

/** Today's ids are snowflakes: 19 digits, above 2^53, so a JSON number loses precision (id_str does not). */
function snowflakeId(): string {
  return ((BigInt(Date.now() - TWITTER_EPOCH_MS) << 22n) | BigInt(randomInt(2 ** 22))).toString();
}

function newTwitterUser(id: string): TwitterUser {
  const { first, last } = randomPersonName();
  const screenName = `${first}_${id.slice(-6)}`.toLowerCase();
  return {
    id,
    screen_name: screenName,
    name: `${first} ${last}`,
    email: `${screenName}@example.com`,
    createdAtMs: Date.now(),
  };
}
