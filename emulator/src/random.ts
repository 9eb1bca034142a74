import { randomBytes, randomInt } from 'node:crypto';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function randomAlphanumeric(length: number): string {
  let value = '';
  for (let i = 0; i < length; i++) value += ALPHANUMERIC.charAt(randomInt(ALPHANUMERIC.length));
  return value;
}

/** A numeric string of exactly `length` digits (no leading zero), like provider user ids. */
export function randomDigits(length: number): string {
  let value = String(randomInt(1, 10));
  for (let i = 1; i < length; i++) value += String(randomInt(10));
  return value;
}

export function randomHex(length: number): string {
  return randomBytes(Math.ceil(length / 2))
    .toString('hex')
    .slice(0, length);
}

const FIRST_NAMES = ['Alex', 'Sam', 'Yuki', 'Maria', 'Omar', 'Priya', 'Lukas', 'Chloe'];
const LAST_NAMES = ['Tanaka', 'Smith', 'Garcia', 'Kowalski', 'Nguyen', 'Okafor', 'Dubois', 'Larsen'];

/** A plausible person name, so emulated profiles read like real ones in logs and UIs. */
export function randomPersonName(): { first: string; last: string } {
  return {
    first: FIRST_NAMES[randomInt(FIRST_NAMES.length)] ?? 'Alex',
    last: LAST_NAMES[randomInt(LAST_NAMES.length)] ?? 'Smith',
  };
}

/** Opaque ids such as Graph's fbtrace_id. */
export function randomBytesBase64Url(byteCount: number): string {
  return randomBytes(byteCount).toString('base64url');
}
