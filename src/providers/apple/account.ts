import type { JWTPayload } from 'jose';
import { invalidRequest } from '../../lib/errors.js';
import { flag, isObject, text } from '../../lib/narrowing.js';
import type { Account } from '../define.js';
import type { TokenInput } from '../types.js';

/**
 * The account: the identity token's claims, and the user's name. The name is never in the token: Apple gives it to
 * the app once, on the first authorization (`user`: {name: {firstName, lastName}, email}). It is kept for display,
 * never used for identity. Sources: test/fixtures/providers/apple/.
 */
export type Facts = { claims: JWTPayload; name: Name };

type Name = { first_name?: string; last_name?: string };

export const accountOf = ({ claims, name }: Facts): Account => ({
  uid: String(claims.sub),
  name: [name.first_name, name.last_name].filter(Boolean).join(' ') || undefined,
  email: text(claims, 'email'),
  email_verified: flag(claims.email_verified),
  ...name,
  extraData: {
    sub: claims.sub,
    email: text(claims, 'email') ?? null,
    email_verified: flag(claims.email_verified),
    is_private_email: flag(claims.is_private_email),
    real_user_status: typeof claims.real_user_status === 'number' ? claims.real_user_status : null,
    expires_at: claims.exp ?? null,
    ...(name.first_name ? { first_name: name.first_name } : {}),
    ...(name.last_name ? { last_name: name.last_name } : {}),
  },
  // Apple gives the name once: a later sign-in without it never erases the one kept.
  keptFacts: (['first_name', 'last_name'] as const).filter((key) => !name[key]),
  // After an app transfer, for Apple's transition window: the user's transfer identifier (core/apple-transfer.ts).
  transferSub: text(claims, 'transfer_sub'),
});

/** Control characters and lone UTF-16 surrogates (a pair is one code point, kept). */
const UNKEEPABLE = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The name from the `user` JSON of the first authorization (an object, or the JSON text a web form post carries). */
export function userName(user: TokenInput['user']): Name {
  if (user === undefined) return {};
  let parsed: unknown = user;
  if (typeof user === 'string') {
    try {
      parsed = JSON.parse(user);
    } catch {
      throw invalidRequest('user must be the JSON object Sign in with Apple gave the app');
    }
  }
  const name = isObject(parsed) && isObject(parsed.name) ? parsed.name : {};
  // The name is kept for display only (in jsonb on PostgreSQL, which refuses NUL and lone surrogates), never
  // for identity: what cannot be kept is stripped rather than refused, so that a garbled name never costs
  // the person their sign-in. Stripped: control characters (NUL among them) and lone UTF-16 surrogates; the
  // 150-character bound counts code points, so that it never cuts a pair in two.
  const part = (key: string) => {
    const clean = text(name, key)?.replace(UNKEEPABLE, '').trim();
    return clean ? Array.from(clean).slice(0, 150).join('').trim() || undefined : undefined;
  };
  return { first_name: part('firstName'), last_name: part('lastName') };
}
