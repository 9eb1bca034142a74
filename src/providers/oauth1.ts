/**
 * OAuth 1.0a request signing with HMAC-SHA1 (RFC 5849), as X/Twitter expects it. Section numbers
 * below refer to RFC 5849.
 */
import { createHmac, randomBytes } from 'node:crypto';

type Param = readonly [name: string, value: string];

export interface OAuth1Credentials {
  consumerKey: string;
  consumerSecret: string;
  token: string;
  tokenSecret: string;
}

/** §3.6: UTF-8, then every byte outside A-Z a-z 0-9 - . _ ~ becomes %XX in uppercase hex. */
export function percentEncode(value: string): string {
  // encodeURIComponent already does this, except that it leaves ! ' ( ) * as they are.
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Plain code-unit order; on percent-encoded (pure ASCII) text that is the byte order §3.4.1.3.2 asks for. */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * §3.4.1: METHOD & pct(base string URI) & pct(normalized parameters). The query string of `url` is
 * read here; `params` carries the oauth_* protocol parameters and any form-encoded body parameters.
 */
export function signatureBaseString(method: string, url: string, params: ReadonlyArray<Param>): string {
  const target = new URL(url);
  // The WHATWG parser already lowercases scheme and host and drops a default port (§3.4.1.2).
  const baseUri = `${target.protocol}//${target.host}${target.pathname}`;
  // URLSearchParams decodes form-style ('+' is a space), as §3.4.1.3.1 requires for the query.
  const normalized = [...target.searchParams, ...params]
    .filter(([name]) => name !== 'oauth_signature')
    .map(([name, value]) => [percentEncode(name), percentEncode(value)] as const)
    .sort(([nameA, valueA], [nameB, valueB]) => byteOrder(nameA, nameB) || byteOrder(valueA, valueB))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
  // A custom method name must be encoded too (§3.4.1.1, step 1).
  return [percentEncode(method.toUpperCase()), percentEncode(baseUri), percentEncode(normalized)].join('&');
}

/** §3.4.2: base64(HMAC-SHA1(pct(consumer secret) & pct(token secret), base string)). */
export function hmacSha1Signature(baseString: string, consumerSecret: string, tokenSecret: string): string {
  const key = `${percentEncode(consumerSecret)}&${percentEncode(tokenSecret)}`;
  return createHmac('sha1', key).update(baseString).digest('base64');
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const NONCE_LENGTH = 32;

function randomNonce(): string {
  let nonce = '';
  while (nonce.length < NONCE_LENGTH) {
    for (const byte of randomBytes(NONCE_LENGTH)) {
      // 248 is 4 * 62: skipping the bytes above it keeps every character equally likely.
      if (byte < 248 && nonce.length < NONCE_LENGTH) nonce += ALPHANUMERIC.charAt(byte % ALPHANUMERIC.length);
    }
  }
  return nonce;
}

/**
 * The value of the Authorization header for one request (§3.5.1), keys in sorted order as X's
 * documentation prints them. `url` includes the query string; pass form body parameters as
 * `bodyParams` because they are signed too.
 */
export function authorizationHeader(
  method: string,
  url: string,
  credentials: OAuth1Credentials,
  options: { nonce?: string; timestamp?: number; bodyParams?: ReadonlyArray<Param> } = {},
): string {
  const protocolParams: Param[] = [
    ['oauth_consumer_key', credentials.consumerKey],
    ['oauth_nonce', options.nonce ?? randomNonce()],
    ['oauth_signature_method', 'HMAC-SHA1'],
    ['oauth_timestamp', String(options.timestamp ?? Math.floor(Date.now() / 1000))],
    ['oauth_token', credentials.token],
    ['oauth_version', '1.0'],
  ];
  const baseString = signatureBaseString(method, url, [...protocolParams, ...(options.bodyParams ?? [])]);
  const signature = hmacSha1Signature(baseString, credentials.consumerSecret, credentials.tokenSecret);
  const fields = [...protocolParams, ['oauth_signature', signature] as const]
    .sort(([a], [b]) => byteOrder(a, b))
    .map(([name, value]) => `${percentEncode(name)}="${percentEncode(value)}"`);
  return `OAuth ${fields.join(', ')}`;
}
