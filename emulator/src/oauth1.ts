/**
 * The provider's side of OAuth 1.0a (RFC 5849): reading a request's Authorization header and checking its
 * HMAC-SHA1 signature. The signature is recomputed with the `oauth-1.0a` library, not with social-link's
 * own signer, so the emulator is an independent check of that signer (and both are checked against the
 * published test vectors in src/providers/oauth1.test.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import OAuth from 'oauth-1.0a';

/**
 * Reads `OAuth name="value", ...` (§3.5.1) into decoded name/value pairs, without `realm`, which is not
 * signed. Returns null for another scheme or any syntax error, including a repeated parameter, which §3.1
 * forbids and which would make the signed value ambiguous.
 */
export function parseAuthorizationHeader(header: string | undefined): Record<string, string> | null {
  if (header === undefined) return null;
  const scheme = /^\s*OAuth\s+/i.exec(header);
  if (scheme === null) return null;
  // Sticky, so each match must start exactly where the previous one ended: no junk in between.
  const param = /\s*([^\s=",]+)\s*=\s*"([^"]*)"\s*(,|$)/y;
  param.lastIndex = scheme[0].length;
  const fields = new Map<string, string>();
  let separator: string;
  do {
    const match = param.exec(header);
    if (match === null) return null;
    const [, rawName = '', rawValue = '', next = ''] = match;
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(rawName);
      value = decodeURIComponent(rawValue);
    } catch {
      return null; // a malformed %XX sequence
    }
    if (fields.has(name)) return null;
    fields.set(name, value);
    separator = next;
  } while (separator === ',');
  fields.delete('realm');
  // fromEntries defines own properties, so a "__proto__" parameter stays a plain key.
  return Object.fromEntries(fields);
}

/**
 * Does the request's signature match (§3.2)? The caller looks the secrets up by `oauth_consumer_key` and
 * `oauth_token`, and remains in charge of rejecting stale timestamps and replayed nonces.
 */
export function verifyRequestSignature(
  method: string,
  url: string,
  header: Record<string, string>,
  consumerSecret: string,
  tokenSecret: string,
  bodyParams: ReadonlyArray<readonly [string, string]> = [],
): boolean {
  const provided = header.oauth_signature;
  if (provided === undefined || header.oauth_signature_method !== 'HMAC-SHA1') return false;
  // §3.2: when oauth_version is present it must be "1.0".
  if (header.oauth_version !== undefined && header.oauth_version !== '1.0') return false;
  const oauth = new OAuth({
    consumer: { key: header.oauth_consumer_key ?? '', secret: consumerSecret },
    signature_method: 'HMAC-SHA1',
    hash_function: (base, key) => createHmac('sha1', key).update(base).digest('base64'),
  });
  const oauthData = Object.fromEntries(
    Object.entries(header).filter(([name]) => name.startsWith('oauth_') && name !== 'oauth_signature'),
  );
  let expected: string;
  try {
    expected = oauth.getSignature(
      { url, method, data: Object.fromEntries(bodyParams) },
      tokenSecret,
      oauthData as unknown as OAuth.Data,
    );
  } catch {
    return false; // text that cannot be encoded cannot match any signature
  }
  const a = Buffer.from(expected);
  const b = Buffer.from(provided);
  // timingSafeEqual throws on different lengths; for us that is just a mismatch.
  return a.length === b.length && timingSafeEqual(a, b);
}
