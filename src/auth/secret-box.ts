import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ConfigError } from '../lib/settings.js';

/**
 * AES-256-GCM for provider tokens kept at rest. Several keys may be configured: the first encrypts,
 * every one decrypts (each value names its key), so keys rotate without rewriting old rows.
 * The associated data binds a value to its row, so a value copied into another row does not decrypt.
 */
export class SecretBox {
  private readonly keys: Array<{ id: string; key: Buffer }>;

  constructor(keys: Buffer[]) {
    if (keys.length === 0) throw new ConfigError('SOCIAL_LINK_ENCRYPTION_KEYS must hold at least one key');
    this.keys = keys.map((key) => ({ id: createHash('sha256').update(key).digest('hex').slice(0, 8), key }));
  }

  /** Parses SOCIAL_LINK_ENCRYPTION_KEYS: comma-separated base64 keys of 32 bytes, newest first. */
  static fromSetting(value: string): SecretBox {
    return new SecretBox(
      value.split(',').map((item) => {
        const key = Buffer.from(item.trim(), 'base64');
        if (key.length !== 32)
          throw new ConfigError(
            'SOCIAL_LINK_ENCRYPTION_KEYS: every key must be 32 bytes, base64 (openssl rand -base64 32)',
          );
        return key;
      }),
    );
  }

  static generateKey(): string {
    return randomBytes(32).toString('base64');
  }

  seal(plaintext: string, associatedData: string): string {
    const { id, key } = this.keys[0]!;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(associatedData));
    const sealed = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [
      'v1',
      id,
      iv.toString('base64url'),
      sealed.toString('base64url'),
      cipher.getAuthTag().toString('base64url'),
    ].join('.');
  }

  /** The plaintext, or undefined when the value is not ours, was tampered with, or its key is gone. */
  open(value: string, associatedData: string): string | undefined {
    const [version, id, iv, sealed, tag] = value.split('.');
    const entry = this.keys.find((candidate) => candidate.id === id);
    if (version !== 'v1' || !entry || !iv || !sealed || !tag) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', entry.key, Buffer.from(iv, 'base64url'))
        .setAAD(Buffer.from(associatedData))
        .setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(sealed, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
