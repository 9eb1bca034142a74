/** What the client keeps between app launches. */
export interface StoredTokens {
  accessToken: string;
  /** Single use: every refresh replaces it. Keep it somewhere safe (Keychain / Keystore). */
  refreshToken: string;
  /** When the access token expires, in milliseconds since the epoch (the server's expires_in made absolute). */
  expiresAt: number;
  userId: number;
  username: string;
}

/**
 * Where the tokens live. The client loads them before every call and saves them after every sign-in,
 * refresh and logout (null = signed out), so any storage works, sync or async. For example:
 *
 *   // React Native: expo-secure-store (Keychain / Keystore); AsyncStorage works the same way but is not encrypted.
 *   const store: TokenStore = {
 *     load: async () => JSON.parse((await SecureStore.getItemAsync('social-link')) ?? 'null'),
 *     save: (tokens) => tokens ? SecureStore.setItemAsync('social-link', JSON.stringify(tokens)) : SecureStore.deleteItemAsync('social-link'),
 *   };
 *
 *   // Browser: localStorage.
 *   const store: TokenStore = {
 *     load: () => JSON.parse(localStorage.getItem('social-link') ?? 'null'),
 *     save: (tokens) => tokens ? localStorage.setItem('social-link', JSON.stringify(tokens)) : localStorage.removeItem('social-link'),
 *   };
 */
export interface TokenStore {
  load(): Promise<StoredTokens | null> | StoredTokens | null;
  save(tokens: StoredTokens | null): Promise<void> | void;
}

/** The default store: forgets everything when the app stops. */
export class MemoryTokenStore implements TokenStore {
  private tokens: StoredTokens | null;

  constructor(initial: StoredTokens | null = null) {
    this.tokens = initial;
  }

  load(): StoredTokens | null {
    return this.tokens;
  }

  save(tokens: StoredTokens | null): void {
    this.tokens = tokens;
  }
}
