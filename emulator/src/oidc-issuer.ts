import { createHmac, createPublicKey, type JsonWebKey } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { randomHex } from './random.js';

// An OpenID Connect issuer's signing keys: the RSA key ring behind an ID-token provider's JWKS,
// and the forged tokens a verifier must refuse.

/** Attacks on ID-token verification; each produces a real token of that kind. */
export const FORGERIES = ['none_alg', 'hs256_with_public_key', 'unknown_kid', 'bad_signature', 'foreign_key'] as const;
export type Forgery = (typeof FORGERIES)[number];

export interface PublishedJwk extends JWK {
  kid: string;
  alg: 'RS256';
  use: 'sig';
}

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: PublishedJwk;
  /** The public key as SPKI PEM text: the "secret" of the HS256 alg-confusion attack. */
  publicKeyPem: string;
}

export const DEFAULT_JWKS_MAX_AGE_SECONDS = 3600;

/** An RSA key pair before it is given a kid. */
interface KeyPair {
  privateKey: CryptoKey;
  publicJwk: JWK;
  publicKeyPem: string;
}

async function newKeyPair(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048 });
  const publicJwk = await exportJWK(publicKey);
  // node:crypto's PEM (with its final newline) is what a naive verifier gets from the JWK.
  const publicKeyPem = createPublicKey({
    key: { kty: 'RSA', n: publicJwk.n, e: publicJwk.e } satisfies JsonWebKey,
    format: 'jwk',
  })
    .export({ type: 'spki', format: 'pem' })
    .toString();
  return { privateKey, publicJwk, publicKeyPem };
}

function signingKey(kid: string, pair: KeyPair): SigningKey {
  return {
    kid,
    privateKey: pair.privateKey,
    publicJwk: { ...pair.publicJwk, kid, alg: 'RS256', use: 'sig' },
    publicKeyPem: pair.publicKeyPem,
  };
}

/** First-key pairs made in this process, by slot: kept for the next emulator. */
const firstKeyPairsMade: Promise<KeyPair>[] = [];

/**
 * Hands one emulator's issuers their first key pairs: each issuer a different pair (as each real provider has its
 * own keys). With `reuse` (EmulatorOptions.reuseKeyPairs), the same pairs for every emulator this process starts: an
 * RSA-2048 pair costs about 150 ms of CPU and a test run starts hundreds of emulators. Kids are new each time, and
 * keys made by rotate() are always new.
 */
export class FirstKeyPairs {
  private next = 0;

  constructor(private readonly reuse: boolean) {}

  take(): Promise<KeyPair> {
    if (!this.reuse) return newKeyPair();
    const slot = this.next++;
    firstKeyPairsMade[slot] ??= newKeyPair();
    return firstKeyPairsMade[slot];
  }
}

/** A key nobody publishes, to sign "unknown_kid" and "foreign_key" forgeries; generated once, when first needed. */
let roguePrivateKey: Promise<CryptoKey> | undefined;
function rogueKey(): Promise<CryptoKey> {
  roguePrivateKey ??= generateKeyPair('RS256', { modulusLength: 2048 }).then((pair) => pair.privateKey);
  return roguePrivateKey;
}

function base64UrlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export class OidcIssuer {
  /** Published keys, oldest first; the last one signs. */
  private keys: SigningKey[] = [];
  /** The issuer's first key: reset() goes back to it, so a verifier's cached JWKS stays good across tests. */
  private firstKey: Promise<SigningKey> | undefined;
  /** The Cache-Control max-age its JWKS endpoint sends. */
  jwksMaxAgeSeconds = DEFAULT_JWKS_MAX_AGE_SECONDS;

  /** `newKid`: the provider's kid style (Google: 40 hex digits, Apple: 10 characters...). */
  constructor(
    private readonly keyPairs: FirstKeyPairs,
    private readonly newKid: () => string = () => randomHex(40),
  ) {
    // The RSA key is made now, in the background: a verifier's first JWKS fetch must not wait for it.
    void this.ready();
  }

  /** The key set as the JWKS endpoint publishes it: public keys only. */
  async jwks(): Promise<{ keys: PublishedJwk[] }> {
    await this.ready();
    return { keys: this.keys.map((key) => key.publicJwk) };
  }

  async kids(): Promise<string[]> {
    await this.ready();
    return this.keys.map((key) => key.kid);
  }

  /** Adds a new signing key; older keys stay published (tokens they signed still verify) unless retired. */
  async rotate(options: { retire_old?: boolean } = {}): Promise<{ kid: string; kids: string[] }> {
    await this.ready();
    const key = signingKey(this.newKid(), await newKeyPair());
    this.keys = options.retire_old ? [key] : [...this.keys, key];
    return { kid: key.kid, kids: this.keys.map((k) => k.kid) };
  }

  /** Back to the first key only, and the default cache lifetime. */
  reset(): void {
    this.jwksMaxAgeSeconds = DEFAULT_JWKS_MAX_AGE_SECONDS;
    this.keys = []; // ready() puts the first key back
  }

  /** A compact JWT of `claims`, signed RS256 by the current key, or the forgery asked for. */
  async mint(claims: JWTPayload, forge?: Forgery): Promise<string> {
    const key = await this.currentKey();
    const header = { alg: 'RS256', kid: key.kid, typ: 'JWT' };
    switch (forge) {
      case undefined:
        return new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
      case 'none_alg':
        return `${base64UrlJson({ alg: 'none' })}.${base64UrlJson(claims)}.`;
      case 'hs256_with_public_key': {
        // jose refuses to use an RSA public key as an HMAC secret (on purpose): build the token by hand.
        const signingInput = `${base64UrlJson({ alg: 'HS256', kid: key.kid, typ: 'JWT' })}.${base64UrlJson(claims)}`;
        return `${signingInput}.${createHmac('sha256', key.publicKeyPem).update(signingInput).digest('base64url')}`;
      }
      case 'unknown_kid': {
        let kid = this.newKid();
        while (this.keys.some((k) => k.kid === kid)) kid = this.newKid();
        return new SignJWT(claims).setProtectedHeader({ ...header, kid }).sign(await rogueKey());
      }
      case 'bad_signature': {
        const [signingInput, signature = ''] = splitSignature(
          await new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey),
        );
        // The last byte: altering the first could make the value exceed the RSA modulus, a different failure.
        const bytes = Buffer.from(signature, 'base64url');
        bytes[bytes.length - 1] = (bytes.at(-1) ?? 0) ^ 0x01;
        return `${signingInput}.${bytes.toString('base64url')}`;
      }
      case 'foreign_key':
        return new SignJWT(claims).setProtectedHeader(header).sign(await rogueKey());
    }
  }

  /** The current key's public key as SPKI PEM (the HS256 forgery's secret). */
  async publicKeyPem(): Promise<string> {
    return (await this.currentKey()).publicKeyPem;
  }

  private async currentKey(): Promise<SigningKey> {
    await this.ready();
    const key = this.keys.at(-1);
    if (!key) throw new Error('the issuer has no signing key');
    return key;
  }

  /** Keys are generated on first use: building the emulator stays synchronous and cheap. */
  private async ready(): Promise<void> {
    this.firstKey ??= this.keyPairs.take().then((pair) => signingKey(this.newKid(), pair));
    const first = await this.firstKey;
    if (this.keys.length === 0) this.keys = [first];
  }
}

function splitSignature(token: string): [string, string] {
  const dot = token.lastIndexOf('.');
  return [token.slice(0, dot), token.slice(dot + 1)];
}
