import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Facebook's signed_request (the data-deletion and deauthorize callbacks): `<signature>.<payload>`, both
 * base64url; the signature is HMAC-SHA256 of the payload's text as received, keyed with the app secret; the
 * payload's `algorithm` says HMAC-SHA256 (compared without case, as Meta's own sample does). Sources and
 * vectors: test/fixtures/callbacks/facebook/. Answers the payload, or undefined when anything is off.
 */
export function verifySignedRequest(signedRequest: string, appSecret: string): Record<string, unknown> | undefined {
  const parts = signedRequest.split('.');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  const [signature, payload] = parts as [string, string];
  const given = Buffer.from(signature.replace(/=+$/, ''), 'base64url');
  const expected = createHmac('sha256', appSecret).update(payload).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const algorithm = (data as { algorithm?: unknown }).algorithm;
  return typeof algorithm === 'string' && algorithm.toUpperCase() === 'HMAC-SHA256' ? (data as Record<string, unknown>) : undefined;
}
