import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The bytes of a base64url text written the one way base64url writes them (RFC 4648 §5: its alphabet only,
 * the last character's unused bits zero), with or without exactly its `=` padding; else undefined. A lenient
 * decoder gives the same bytes for countless spellings (`+/`, any padding, any unused bits): each would be a new
 * callback to a replay guard that compares what was sent.
 */
export function canonicalBase64url(text: string): Buffer | undefined {
  const unpadded = text.replace(/={1,2}$/, '');
  // Padding, when present, completes the last quantum (one gist says Meta's signatures arrive padded).
  if (unpadded !== text && text.length % 4 !== 0) return undefined;
  if (!/^[A-Za-z0-9_-]*$/.test(unpadded)) return undefined;
  const bytes = Buffer.from(unpadded, 'base64url');
  return bytes.toString('base64url') === unpadded ? bytes : undefined;
}

/**
 * Facebook's signed_request (the data-deletion and deauthorize callbacks): `<signature>.<payload>`, both
 * base64url; the signature is HMAC-SHA256 of the payload's text as received, keyed with the app secret; the
 * payload's `algorithm` says HMAC-SHA256 (compared without case, as Meta's own sample does). Sources and
 * vectors: test/fixtures/callbacks/facebook/. Answers the payload, or undefined when anything is off, a part
 * not written the one way base64url writes it included (see canonicalBase64url).
 */
export function verifySignedRequest(signedRequest: string, appSecret: string): Record<string, unknown> | undefined {
  const parts = signedRequest.split('.');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  const [encodedSignature, encodedPayload] = parts as [string, string];
  const signature = canonicalBase64url(encodedSignature);
  const payload = canonicalBase64url(encodedPayload);
  if (!signature || !payload) return undefined;
  const expected = createHmac('sha256', appSecret).update(encodedPayload).digest();
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const algorithm = (data as { algorithm?: unknown }).algorithm;
  return typeof algorithm === 'string' && algorithm.toUpperCase() === 'HMAC-SHA256'
    ? (data as Record<string, unknown>)
    : undefined;
}
