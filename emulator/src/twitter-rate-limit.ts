// X's rate-limit window, as both of its APIs (v1.1: twitter.ts, v2: twitter-oauth2.ts) write it.

/** The rate-limit window headers X sends on every answer; a throttled one has nothing remaining. */
export function rateLimitHeaders(remaining: number): Record<string, string> {
  return {
    'x-rate-limit-limit': '75',
    'x-rate-limit-remaining': String(remaining),
    'x-rate-limit-reset': String(Math.floor(Date.now() / 1000) + 900),
  };
}
