import { InvalidTokenError } from '../../lib/errors.js';
import { isObject, text } from '../../lib/narrowing.js';
import type { IdTokenVerifier } from '../define.js';
import type { AccountEvent } from '../types.js';

/**
 * Server-to-server notifications: {"payload": JWT}, signed with the identity tokens' keys, its `events` a JSON text
 * (or an object, as Apple's page shows it) of {type, sub, email?, event_time} (test/fixtures/callbacks/apple/).
 */
export async function readNotification(payload: string, idTokens: IdTokenVerifier): Promise<AccountEvent> {
  const claims = await idTokens.verifyEvent(payload);
  let events: unknown = claims.events;
  if (typeof events === 'string') {
    try {
      events = JSON.parse(events);
    } catch {
      throw new InvalidTokenError('the notification events are not JSON');
    }
  }
  const event = Array.isArray(events) ? events[0] : events;
  if (!isObject(event) || !text(event, 'type') || !text(event, 'sub'))
    throw new InvalidTokenError('the notification names no event type or account');
  return {
    type: text(event, 'type')!,
    uid: text(event, 'sub')!,
    id: typeof claims.jti === 'string' ? claims.jti : undefined,
    email: text(event, 'email'),
    issuedAt: claims.iat,
  };
}
