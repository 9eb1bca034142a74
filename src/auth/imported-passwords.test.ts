import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canVerifyImported, verifyImportedPassword } from './imported-passwords.js';
import { needsRehash, verifyPassword } from './passwords.js';

// Known answers of each system, from cited sources (test/fixtures/imports/*): a verifier that drifts fails here.

const fixture = (path: string) =>
  JSON.parse(readFileSync(new URL(`../../test/fixtures/imports/${path}`, import.meta.url), 'utf8'));
const django = fixture('django/hashers.json') as { vectors: Array<{ password: string; hash: string }> };
const firebase = fixture('firebase/sources.json').hash as {
  parameters: { signer_key: string; salt_separator: string; rounds: number; mem_cost: number };
  vector: { password: string; salt: string; hash: string };
  extra_vectors: Array<{
    password: string;
    salt: string;
    hash: string;
    parameters?: { signer_key: string; salt_separator: string; rounds: number; mem_cost: number };
  }>;
};
const supabase = fixture('supabase/sources.json').password as {
  vector: { password: string; hash: string };
  extra_vectors: Array<{ password: string; hash: string }>;
};

const firebaseStored = (p: typeof firebase.parameters, salt: string, hash: string) =>
  ['firebase-scrypt', p.rounds, p.mem_cost, p.salt_separator, p.signer_key, salt, hash].join('$');

describe('imported password hashes', () => {
  it("Django's pbkdf2_sha256 and pbkdf2_sha1 (Django 3.2's own test vectors, and the original design's database)", async () => {
    for (const { password, hash } of django.vectors) {
      expect(await verifyPassword(password, hash), hash).toBe(true);
      expect(await verifyPassword(`${password}z`, hash), hash).toBe(false);
      expect(needsRehash(hash)).toBe(true);
    }
  });

  it("Firebase's modified scrypt (firebase/scrypt's published vectors)", async () => {
    const vectors: typeof firebase.extra_vectors = [firebase.vector, ...firebase.extra_vectors];
    for (const vector of vectors) {
      const stored = firebaseStored(vector.parameters ?? firebase.parameters, vector.salt, vector.hash);
      expect(await verifyImportedPassword(vector.password, stored), vector.password).toBe(true);
      expect(await verifyImportedPassword('wrong', stored)).toBe(false);
    }
  });

  it("Supabase's bcrypt (golang/crypto's and jBCrypt's vectors)", async () => {
    for (const { password, hash } of [supabase.vector, ...supabase.extra_vectors]) {
      expect(await verifyPassword(password, hash)).toBe(true);
      expect(await verifyPassword(`${password}!`, hash)).toBe(false);
    }
  });

  it('unusable, unknown and malformed hashes never match, and never throw', async () => {
    for (const stored of [
      'constructor$x',
      'toString$1$2',
      'scrypt$16384$c2FsdA$8$1$aGFzaA==',
      'pbkdf2_sha256$99999999$seasalt$YlZ2Vggtqdc61YjArZuoApoBh9JNGYoDRBUGu6tcJQo=',
      '$2a$31$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga',
      'firebase-scrypt$32$20$Bw==$a2V5$c2FsdA==$aGFzaA==',
      '!szp0MexB18QUET2jaUd3tDRGz0uGcXNVuGk0T8M8',
      'argon2$argon2id$v=19$m=102400,t=2,p=8$c29tZXNhbHQ$abc',
      'md5$salt$abc',
      'pbkdf2_sha256$nope$salt$',
      'pbkdf2_sha256$99999999999$s$h',
      'firebase-scrypt$8$99$Bw==$a$b$c',
      '',
      '$2a$10$short',
    ]) {
      expect(await verifyPassword('anything', stored), stored).toBe(false);
    }
    expect(canVerifyImported('argon2$argon2id$…')).toBe(false);
    expect(canVerifyImported('pbkdf2_sha256$1$s$h')).toBe(true);
    // Past the cost bounds: reported by the import, never computed (a source row must not cost seconds or gigabytes).
    expect(canVerifyImported('pbkdf2_sha256$99999999$s$h')).toBe(false);
    expect(canVerifyImported('$2a$31$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga')).toBe(false);
    expect(canVerifyImported('firebase-scrypt$32$20$Bw==$a2V5$c2FsdA==$aGFzaA==')).toBe(false);
    expect(canVerifyImported('constructor$x')).toBe(false);
  });
});
