import { describe, expect, it } from 'vitest';
import { SecretBox } from './secret-box.js';
import { ConfigError } from '../lib/settings.js';

describe('SecretBox (provider tokens at rest)', () => {
  const oldKey = SecretBox.generateKey();
  const newKey = SecretBox.generateKey();

  it('seals with AES-256-GCM: the plaintext is not in the sealed value, and it opens again', () => {
    const box = SecretBox.fromSetting(newKey);
    const sealed = box.seal('{"refresh_token":"r.secret"}', 'apple:001');
    expect(sealed).not.toContain('secret');
    expect(sealed).toMatch(/^v1\.[0-9a-f]{8}\./);
    expect(box.open(sealed, 'apple:001')).toBe('{"refresh_token":"r.secret"}');
    expect(box.seal('same', 'x')).not.toBe(box.seal('same', 'x')); // a fresh IV every time
  });

  it('rotates keys: values sealed with an old key still open; new values use the newest key', () => {
    const sealedBefore = SecretBox.fromSetting(oldKey).seal('old', 'apple:1');
    const rotated = SecretBox.fromSetting(`${newKey},${oldKey}`);
    expect(rotated.open(sealedBefore, 'apple:1')).toBe('old');
    expect(SecretBox.fromSetting(newKey).open(rotated.seal('new', 'apple:1'), 'apple:1')).toBe('new');
    expect(SecretBox.fromSetting(newKey).open(sealedBefore, 'apple:1')).toBeUndefined(); // old key removed
  });

  it('refuses tampered values and values moved to another row', () => {
    const box = SecretBox.fromSetting(newKey);
    const sealed = box.seal('token', 'apple:1');
    const parts = sealed.split('.');
    const flipped = Buffer.from(parts[3]!, 'base64url');
    flipped[0]! ^= 1;
    parts[3] = flipped.toString('base64url');
    expect(box.open(parts.join('.'), 'apple:1')).toBeUndefined();
    expect(box.open(sealed, 'apple:2')).toBeUndefined();
    expect(box.open('garbage', 'apple:1')).toBeUndefined();
  });

  it('refuses keys that are not 32 bytes, naming the variable', () => {
    expect(() => SecretBox.fromSetting('c2hvcnQ=')).toThrow(ConfigError);
    expect(() => SecretBox.fromSetting('c2hvcnQ=')).toThrow('SOCIAL_LINK_ENCRYPTION_KEYS');
  });
});
