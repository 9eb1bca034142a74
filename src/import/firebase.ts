import { readFileSync } from 'node:fs';
import { ConfigError } from '../lib/settings.js';
import type { ImportSource, SourceUser } from './importer.js';

/**
 * Firebase Authentication's export (`firebase auth:export users.json --format=json`): `{users: [{localId,
 * email, passwordHash, salt, createdAt, lastSignedInAt, disabled, providerUserInfo: [{providerId, rawId, …}]}]}`.
 * Passwords keep working with the project's hash parameters (Firebase console → Authentication → Users →
 * Password hash parameters): auth/imported-passwords.ts verifies Firebase's scrypt. Sources:
 * test/fixtures/imports/firebase/sources.json.
 */
export interface FirebaseHashParameters {
  signerKey: string;
  saltSeparator: string;
  rounds: number;
  memCost: number;
}

const PROVIDERS: Record<string, string> = {
  'google.com': 'google',
  'apple.com': 'apple',
  'facebook.com': 'facebook',
  'twitter.com': 'twitter',
  'github.com': 'github',
};

interface FirebaseUser {
  localId: string;
  email?: string;
  passwordHash?: string;
  salt?: string;
  displayName?: string;
  createdAt?: string;
  lastSignedInAt?: string;
  disabled?: boolean;
  providerUserInfo?: Array<{
    providerId: string;
    rawId: string;
    email?: string;
    displayName?: string;
    photoUrl?: string;
  }>;
}

export function firebaseSource(file: string, hash: FirebaseHashParameters | undefined): ImportSource {
  const exported = JSON.parse(readFileSync(file, 'utf8')) as { users?: FirebaseUser[] };
  if (!Array.isArray(exported.users))
    throw new ConfigError(`${file} is not a Firebase auth:export JSON file ({"users": [...]})`);
  const users = exported.users;
  if (!hash && users.some((user) => user.passwordHash)) {
    throw new ConfigError(
      "import firebase: users have passwords; give the project's hash parameters (--hash-key, --salt-separator, --rounds, --mem-cost), or --no-passwords",
    );
  }
  const passwordOf = (user: FirebaseUser) =>
    hash && user.passwordHash && user.salt
      ? [
          'firebase-scrypt',
          hash.rounds,
          hash.memCost,
          hash.saltSeparator,
          hash.signerKey,
          user.salt,
          user.passwordHash,
        ].join('$')
      : null;
  const time = (ms: string | undefined) =>
    typeof ms === 'string' && /^\d{1,15}$/.test(ms) ? new Date(Number(ms)).toISOString() : null;
  return {
    name: 'firebase',
    // Generic OpenID Connect providers are "oidc.<name>" in Firebase, "oidc:<name>" here.
    provider: (name) =>
      Object.hasOwn(PROVIDERS, name)
        ? PROVIDERS[name]
        : name.startsWith('oidc.')
          ? `oidc:${name.slice(5).toLowerCase()}`
          : undefined,
    notKept: [
      'displayName, photoUrl, phoneNumber, customAttributes, mfaInfo (kept on links where a provider gave them)',
    ],
    async *batches(size) {
      for (let start = 0; start < users.length; start += size) {
        yield users.slice(start, start + size).map((user): SourceUser => ({
          sourceId: String(user.localId),
          // Users sign in with their e-mail as their username.
          username:
            typeof user.email === 'string' && user.email !== '' ? user.email.toLowerCase() : `firebase_${user.localId}`,
          passwordHash: passwordOf(user),
          createdAt: time(user.createdAt),
          lastLoginAt: time(user.lastSignedInAt),
          active: user.disabled !== true,
          links: (Array.isArray(user.providerUserInfo) ? user.providerUserInfo : [])
            .filter((info) => typeof info?.providerId === 'string' && typeof info.rawId === 'string')
            .map((info) => ({
              provider: info.providerId,
              uid: info.rawId,
              extraData: Object.fromEntries(
                Object.entries({ email: info.email, name: info.displayName, picture: info.photoUrl }).filter(
                  ([, value]) => value !== undefined,
                ),
              ),
            })),
        }));
      }
    },
  };
}
