import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createPrivateKey, createPublicKey, randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { ConfigError } from '../lib/settings.js';

export const SIGNING_ALG = 'ES256';

/** Our access-token signing keys: the first signs, all verify (so a rotated-out key's tokens stay valid). */
export interface SigningKeys {
  /** The signing key, as PKCS#8 PEM. */
  current: { kid: string; privatePem: string };
  /** Every key's public half by kid, as SPKI PEM: what verifies our access tokens. */
  verificationPems: ReadonlyMap<string, string>;
  /** Public JWKs of every key, published at /.well-known/jwks.json. */
  publicJwks: { keys: JWK[] };
}

/** A new private JWK set with one ES256 key, as JSON. */
export async function generateSigningKeySet(): Promise<string> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: SIGNING_ALG, use: 'sig' };
  return JSON.stringify({ keys: [jwk] }, null, 2);
}

export async function parseSigningKeys(json: string, source: string): Promise<SigningKeys> {
  let keys: JWK[];
  try {
    keys = (JSON.parse(json) as { keys: JWK[] }).keys;
    if (!Array.isArray(keys) || keys.length === 0) throw new Error('no keys');
  } catch {
    throw new ConfigError(`${source} must be a JSON Web Key Set {"keys": [...]} with at least one private key`);
  }
  const publicKeys: JWK[] = [];
  const verificationPems = new Map<string, string>();
  let current: SigningKeys['current'] | undefined;
  for (const jwk of keys) {
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d || !jwk.kid) {
      throw new ConfigError(`${source}: every key must be a private EC P-256 JWK with a kid (ES256)`);
    }
    let privateKey;
    try {
      privateKey = createPrivateKey({ key: { ...jwk }, format: 'jwk' });
    } catch {
      throw new ConfigError(`${source}: the key ${jwk.kid} is not a valid EC P-256 private key`);
    }
    const { d: _private, ...publicJwk } = jwk;
    publicKeys.push({ ...publicJwk, alg: SIGNING_ALG, use: 'sig' });
    if (verificationPems.has(jwk.kid)) throw new ConfigError(`${source}: the kid ${jwk.kid} is used by two keys`);
    verificationPems.set(jwk.kid, createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString());
    current ??= { kid: jwk.kid, privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  }
  return { current: current!, verificationPems, publicJwks: { keys: publicKeys } };
}

/**
 * Loads the signing keys from SOCIAL_LINK_SIGNING_KEYS or _FILE. Outside production, when neither is
 * set, a key set is generated once and kept in `devKeyFile` so tokens survive restarts.
 */
export async function loadSigningKeys(options: {
  signingKeys?: string;
  signingKeysFile?: string;
  devKeyFile?: string;
}): Promise<SigningKeys> {
  if (options.signingKeys) return parseSigningKeys(options.signingKeys, 'SOCIAL_LINK_SIGNING_KEYS');
  if (options.signingKeysFile) {
    let json: string;
    try {
      json = readFileSync(options.signingKeysFile, 'utf8');
    } catch {
      throw new ConfigError(`SOCIAL_LINK_SIGNING_KEYS_FILE: cannot read ${options.signingKeysFile}`);
    }
    return parseSigningKeys(json, 'SOCIAL_LINK_SIGNING_KEYS_FILE');
  }
  const generated = await generateSigningKeySet();
  return parseSigningKeys(
    devSecret(options.devKeyFile, () => generated),
    options.devKeyFile ?? 'generated keys',
  );
}

/**
 * A secret generated outside production when none is configured: kept in `file` (owner-only) so it
 * survives restarts, or only in memory when there is no file (tests).
 */
export function devSecret(file: string | undefined, generate: () => string): string {
  if (!file) return generate();
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // Written aside, then linked in place (which fails if it exists): workers starting together all read
    // the one secret the first of them made, never a half-written file. Where the file system has no hard
    // links, an exclusive create does (a reader racing the writer is then possible, but only there).
    const draft = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    const secret = generate();
    writeFileSync(draft, secret, { mode: 0o600 });
    try {
      linkSync(draft, file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EXDEV') writeExclusively(file, secret);
      else if (code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(draft);
    }
  }
  return readFileSync(file, 'utf8').trim();
}

function writeExclusively(file: string, secret: string): void {
  try {
    writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/**
 * A rotated key set: a new key first (it signs from now on), then the newest `keep - 1` keys of the
 * current set, which keep verifying the access tokens they signed until those expire.
 */
export async function rotateSigningKeySet(currentJson: string, keep: number): Promise<string> {
  if (!Number.isInteger(keep) || keep < 1) throw new ConfigError('--keep must be a positive integer');
  await parseSigningKeys(currentJson, 'the current key set'); // refuses a malformed set before anything is printed
  const current = (JSON.parse(currentJson) as { keys: JWK[] }).keys;
  const fresh = (JSON.parse(await generateSigningKeySet()) as { keys: JWK[] }).keys;
  return JSON.stringify({ keys: [...fresh, ...current].slice(0, keep) }, null, 2);
}
