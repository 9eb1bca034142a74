import { createCipheriv, pbkdf2, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

/**
 * Password hashes imported from another system (`social-link import`), verified as that system does, so that
 * its users keep their passwords; a successful sign-in replaces the hash with ours (passwords.ts), as Django
 * upgrades its own hashes. Sources: test/fixtures/imports/.
 *
 * - Django (`algorithm$iterations$salt$hash`): pbkdf2_sha256 (its default) and pbkdf2_sha1. Unusable passwords
 *   (`!…`) never match; argon2, bcrypt, Django's scrypt and the legacy hashers are not verified (an import
 *   reports how many users hold them).
 * - Supabase: bcrypt (`$2a$…`, `$2b$…`).
 * - Firebase: its modified scrypt, stored by the import as
 *   `firebase-scrypt$<rounds>$<mem_cost>$<salt separator>$<signer key>$<salt>$<hash>` (base64 parts).
 */
const pbkdf2Async = promisify(pbkdf2);
const scryptAsync = promisify(scrypt) as (
  password: string | Buffer,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

const same = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

/** The schemes this module verifies, by the hash's first `$` part ('' for a bare bcrypt `$2b$…`). */
const VERIFIERS: Record<string, (password: string, stored: string) => Promise<boolean>> = {
  pbkdf2_sha256: (password, stored) => djangoPbkdf2(password, stored, 'sha256', 32),
  pbkdf2_sha1: (password, stored) => djangoPbkdf2(password, stored, 'sha1', 20),
  // bcryptjs loads with the first bcrypt hash to verify (Supabase imports only): not at every start-up.
  '': async (password, stored) =>
    /^\$2[aby]\$\d\d\$/.test(stored) && (await import('bcryptjs')).default.compare(password, stored),
  'firebase-scrypt': firebaseScrypt,
};

/** Bounds on an imported hash's cost: a row of the source must not make one sign-in take seconds or gigabytes. */
const MAX_PBKDF2_ITERATIONS = 2_000_000;
const MAX_BCRYPT_COST = 14;
const MAX_SCRYPT_R = 16;
const MAX_SCRYPT_MEM_COST = 17;

const verifierOf = (stored: string) => {
  const scheme = stored.split('$')[0]!;
  return Object.hasOwn(VERIFIERS, scheme) ? VERIFIERS[scheme] : undefined;
};

/** Whether social-link can verify this hash: a scheme it knows, within its cost bounds (an import reports the others). */
export function canVerifyImported(stored: string): boolean {
  if (!verifierOf(stored)) return false;
  const [scheme, a, b] = stored.split('$');
  if (scheme === 'pbkdf2_sha256' || scheme === 'pbkdf2_sha1')
    return Number(a) >= 1 && Number(a) <= MAX_PBKDF2_ITERATIONS;
  if (scheme === 'firebase-scrypt')
    return Number(a) >= 1 && Number(a) <= MAX_SCRYPT_R && Number(b) >= 1 && Number(b) <= MAX_SCRYPT_MEM_COST;
  if (scheme === '') return /^\$2[aby]\$(\d\d)\$/.test(stored) && Number(stored.slice(4, 6)) <= MAX_BCRYPT_COST;
  return true;
}

export function isImportedHash(stored: string): boolean {
  return !stored.startsWith('scrypt$');
}

export async function verifyImportedPassword(password: string, stored: string): Promise<boolean> {
  const verify = verifierOf(stored);
  return verify && canVerifyImported(stored) ? verify(password, stored).catch(() => false) : false;
}

/** Django: `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`. */
async function djangoPbkdf2(
  password: string,
  stored: string,
  digest: 'sha256' | 'sha1',
  length: number,
): Promise<boolean> {
  const [, iterations, salt, hash] = stored.split('$');
  const rounds = Number(iterations);
  if (!salt || !hash || !Number.isInteger(rounds)) return false;
  const key = await pbkdf2Async(password, salt, rounds, length, digest);
  return same(key, Buffer.from(hash, 'base64'));
}

/**
 * Firebase's scrypt: key = scrypt(password, salt ‖ salt separator, N = 2^mem_cost, r = rounds, p = 1, 32 bytes);
 * the hash is the signer key encrypted with AES-256-CTR under that key, IV all zeros.
 */
async function firebaseScrypt(password: string, stored: string): Promise<boolean> {
  const [, rounds, memCost, separator, signerKey, salt, hash] = stored.split('$');
  const r = Number(rounds);
  const cost = Number(memCost);
  if (!separator || !signerKey || !salt || !hash || !Number.isInteger(r) || !Number.isInteger(cost)) return false;
  const N = 2 ** cost;
  const key = await scryptAsync(
    password,
    Buffer.concat([Buffer.from(salt, 'base64'), Buffer.from(separator, 'base64')]),
    32,
    { N, r, p: 1, maxmem: 256 * N * r },
  );
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const derived = Buffer.concat([cipher.update(Buffer.from(signerKey, 'base64')), cipher.final()]);
  return same(derived, Buffer.from(hash, 'base64'));
}
