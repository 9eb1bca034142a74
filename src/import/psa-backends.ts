/**
 * python-social-auth's backend names and social-link's provider for each: what the importer (psa.ts) and the
 * compatible routes (http/routes/compat.ts) both read, kept apart from the importer's database drivers.
 */
const PROVIDERS: Record<string, string> = {
  facebook: 'facebook',
  'facebook-app': 'facebook',
  twitter: 'twitter',
  'twitter-oauth2': 'twitter',
  'google-oauth2': 'google',
  'google-openidconnect': 'google',
  'apple-id': 'apple',
  line: 'line',
  github: 'github',
};

/** social-link's name of a python-social-auth backend name (undefined: no provider of ours). */
export const psaProviderName = (backend: string): string | undefined =>
  Object.hasOwn(PROVIDERS, backend) ? PROVIDERS[backend] : undefined;
