import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JWTPayload } from 'jose';
import { FORGERIES, type Forgery } from './oidc-issuer.js';
import { randomPersonName } from './random.js';

// What the ID-token providers (Google, Apple, Facebook Limited Login, generic OIDC) share:
// the mint input, claim timing, user profiles and URL helpers.

export interface MintIdTokenInput {
  sub?: string;
  aud?: string | string[];
  azp?: string;
  iss?: string;
  nonce?: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  /** Default 3600; zero or negative: already expired. */
  expires_in?: number;
  /** Seconds added to iat: +3600 = issued an hour in the future. */
  iat_offset?: number;
  /** Extra claims, merged last: they may override anything. */
  claims?: Record<string, unknown>;
  forge?: Forgery;
}

export interface MintedIdToken {
  id_token: string;
  sub: string;
  claims: JWTPayload;
}

export const mintIdTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    sub: { type: 'string', minLength: 1, maxLength: 255 },
    aud: {
      anyOf: [
        { type: 'string', minLength: 1 },
        { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
      ],
    },
    azp: { type: 'string', minLength: 1 },
    iss: { type: 'string', minLength: 1 },
    nonce: { type: 'string', minLength: 1 },
    email: { type: 'string', format: 'email' },
    email_verified: { type: 'boolean' },
    name: { type: 'string', minLength: 1 },
    expires_in: { type: 'integer' },
    iat_offset: { type: 'integer' },
    claims: { type: 'object' },
    forge: { type: 'string', enum: FORGERIES },
  },
} as const;

const DEFAULT_ID_TOKEN_LIFETIME_SECONDS = 3600;

/** iat and exp, both relative to now: `expires_in` ≤ 0 gives a token already expired, dated an hour before it expired. */
export function idTokenTimes(input: Pick<MintIdTokenInput, 'expires_in' | 'iat_offset'>): { iat: number; exp: number } {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + (input.expires_in ?? DEFAULT_ID_TOKEN_LIFETIME_SECONDS);
  const issuedAt = exp > now ? now : exp - DEFAULT_ID_TOKEN_LIFETIME_SECONDS;
  const iat = input.iat_offset !== undefined ? now + input.iat_offset : issuedAt;
  return { iat, exp };
}

/** A user as the ID-token providers describe one. */
export interface Person {
  sub: string;
  name: string;
  given_name: string;
  family_name: string;
  email: string;
  email_verified: boolean;
}

/** A known sub keeps its profile (only the fields given change); a new one gets a plausible random profile. */
export function upsertPerson(
  people: Map<string, Person>,
  input: { sub?: string; name?: string; email?: string; email_verified?: boolean },
  newSub: () => string,
  emailDomain = 'example.com',
): Person {
  const sub = input.sub ?? newSub();
  const known = people.get(sub);
  const names = input.name !== undefined || !known ? splitName(input.name) : known;
  const localPart = [names.given_name, names.family_name, sub.slice(-4)].filter(Boolean).join('.');
  const person: Person = {
    sub,
    name: names.name,
    given_name: names.given_name,
    family_name: names.family_name,
    email: input.email ?? known?.email ?? `${localPart.toLowerCase().replace(/[^a-z0-9.]/g, '')}@${emailDomain}`,
    email_verified: input.email_verified ?? known?.email_verified ?? true,
  };
  people.set(sub, person);
  return person;
}

/** "Ada Lovelace" -> Ada / Lovelace; no name: a random one. A one-word name has an empty family name. */
function splitName(name: string | undefined): Pick<Person, 'name' | 'given_name' | 'family_name'> {
  if (name === undefined) {
    const random = randomPersonName();
    return { name: `${random.first} ${random.last}`, given_name: random.first, family_name: random.last };
  }
  const [first = '', ...rest] = name.trim().split(/\s+/);
  return { name, given_name: first, family_name: rest.join(' ') };
}

/** The origin the caller used (Host header), as the providers' documents point back at the emulator. */
export function hostOrigin(request: FastifyRequest): string {
  return `http://${request.headers.host ?? '127.0.0.1'}`;
}

/**
 * The emulator's own origin (http://127.0.0.1:PORT), whatever Host the caller sent: a generic issuer's
 * `iss` must equal its discovery document's `issuer` exactly, however each was fetched.
 */
export function listeningOrigin(request: FastifyRequest): string {
  const address = request.server.server.address();
  if (address === null || typeof address === 'string') return hostOrigin(request);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

export type Query = Record<string, string | string[] | undefined>;

export function queryParam(request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Query)[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Sends a JWKS with the issuer's Cache-Control, as real providers do (verifiers cache keys by it). */
export function sendJwks(
  reply: FastifyReply,
  jwks: unknown,
  maxAgeSeconds: number,
  cacheControlSuffix = '',
): FastifyReply {
  return reply.header('cache-control', `public, max-age=${maxAgeSeconds}${cacheControlSuffix}`).send(jwks);
}

/** A caller mistake found while minting; the control API answers it 400 invalid_request. */
export class InvalidRequestError extends Error {
  readonly statusCode = 400;
}

/** The first audience: the authorized party when none is named. */
export function firstAudience(aud: string | string[]): string | undefined {
  return typeof aud === 'string' ? aud : aud[0];
}

/** Claims without the empty or undefined values providers leave out. */
export function compactClaims(claims: Record<string, unknown>): JWTPayload {
  return Object.fromEntries(
    Object.entries(claims).filter(([, value]) => value !== undefined && value !== ''),
  ) as JWTPayload;
}
