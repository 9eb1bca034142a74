import type { EmulatorState, IssuedToken } from './state.js';

// Most tokens live in state.tokens. A provider that must keep its tokens apart (X's OAuth 2 bearer
// tokens must never pass for OAuth 1.0a tokens) registers a lookup here, so that control endpoints
// such as POST /_emulator/tokens/expire still find them.

type TokenLookup = (value: string) => IssuedToken | undefined;

const lookups = new WeakMap<EmulatorState, TokenLookup[]>();

export function addTokenLookup(state: EmulatorState, lookup: TokenLookup): void {
  const list = lookups.get(state) ?? [];
  list.push(lookup);
  lookups.set(state, list);
}

/** The token issued with this value, wherever it is kept. */
export function findIssuedToken(state: EmulatorState, value: string): IssuedToken | undefined {
  const shared = state.tokens.get(value);
  if (shared) return shared;
  for (const lookup of lookups.get(state) ?? []) {
    const token = lookup(value);
    if (token) return token;
  }
  return undefined;
}
