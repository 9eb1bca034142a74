import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { verifyImportedPassword } from './imported-passwords.js';

/** scrypt with N=2^15, r=8, p=1: memory-hard (32 MiB per hash), as OWASP recommends for scrypt. */
const PARAMS = { N: 2 ** 15, r: 8, p: 1 };
const KEY_LENGTH = 32;

function derive(password: string, salt: Buffer, params: typeof PARAMS): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 128 * params.N * params.r * 2 };
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, options, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** `scrypt$N$r$p$salt$hash`, base64url parts: the parameters travel with the hash so they can change later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, PARAMS);
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  // A hash an import brought (Django, Supabase, Firebase): verified as its system does.
  if (scheme !== 'scrypt') return verifyImportedPassword(password, stored);
  const params = { N: Number(n), r: Number(r), p: Number(p) };
  // Ours, or a stranger with our prefix (Django 4.2's scrypt hasher): never more than our own cost, never a throw.
  if (
    !salt ||
    !hash ||
    !Number.isInteger(params.N) ||
    params.N < 2 ||
    params.N > PARAMS.N ||
    !(params.r >= 1 && params.r <= PARAMS.r) ||
    !(params.p >= 1 && params.p <= PARAMS.p)
  )
    return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await derive(password, Buffer.from(salt, 'base64url'), params).catch(() => undefined);
  return key !== undefined && key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash to replace with ours after a successful sign-in: an imported one, or ours with older parameters. */
export function needsRehash(stored: string): boolean {
  const [scheme, n, r, p] = stored.split('$');
  return scheme !== 'scrypt' || Number(n) !== PARAMS.N || Number(r) !== PARAMS.r || Number(p) !== PARAMS.p;
}

let dummyHash: Promise<string> | undefined;

/** A hash of a random password: checked when the username is unknown, so both cases take the same time. */
export function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
  return dummyHash;
}
