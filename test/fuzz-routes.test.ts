/**
 * A property-based fuzz of every route, on SQLite and PostgreSQL (issue 24, security round 3), with fast-check: the public
 * API (each provider's associate and auth), the compatibility routes (SOCIAL_LINK_COMPAT_PREFIX), the provider
 * callbacks, the admin API (with service keys) and the staff console's forms (unauthenticated).
 *
 * PostgreSQL is where bad text hurts most (no NUL in text or jsonb, no lone surrogate in jsonb); SQLite runs it
 * too (its own types, its own dates). Every request gets: strings with NUL, lone surrogates, RTL and zero-width marks; huge, negative and
 * fractional numbers; impossible dates (0000-01-01, Feb 30, year 99999); deep nesting and repeated keys; values
 * of the wrong type; long strings; odd percent-encodings in the path and the query. Every answer must hold:
 *
 *  - never a 5xx;
 *  - a 4xx is the API's JSON error {code, message, errors (= message), request_id (= X-Request-Id)}; the
 *    console's pages excepted: text/html with no stack trace;
 *  - helmet's headers and an X-Request-Id on every answer;
 *  - a refused request writes nothing: the row counts of users, social_associations and sessions are those
 *    before it.
 *
 * Bounded by run count, never by time (CI shares a 2-core machine): RUNS per route, a fixed seed. A failure
 * prints fast-check's seed and counterexample; FUZZ_SEED=<seed> reruns another sample, FUZZ_SHRINK=1 shrinks a
 * failure to its smallest form (slower), FUZZ_RUNS=<n> changes the runs per route.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Storage } from '../src/store/storage.js';
import { databaseKinds, FACEBOOK_APP, guest, startStack, type Stack } from './helpers.js';

if (!process.env.TEST_DATABASE_URL) {
  console.warn(
    'test/fuzz-routes.test.ts: SQLite only; PostgreSQL (which refuses more text and dates) too with TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test',
  );
}
const SEED = Number(process.env.FUZZ_SEED ?? 240_3);
const RUNS = Number(process.env.FUZZ_RUNS ?? 50);
const COMPAT = '/myapp';
const PROVIDERS = ['facebook', 'twitter', 'google', 'apple', 'line', 'github', 'oidc:example'] as const;
type Provider = (typeof PROVIDERS)[number];

// ---------------------------------------------------------------------------------------------------
// Arbitraries

/** Every byte of the UTF-8 form percent-encoded but unreserved characters (a lone surrogate becomes U+FFFD's bytes). */
const pct = (value: string) => {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~:]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
};
const base64url = (text: string) => Buffer.from(text, 'utf8').toString('base64url');

/** NUL, lone surrogates, right-to-left and zero-width marks, BOM, non-characters. */
const SPECIAL = [
  '\u0000',
  '\ud800',
  '\udbff',
  '\udc00',
  '\udfff',
  '\u202e',
  '\u202d',
  '\u200f',
  '\u061c',
  '\u200b',
  '\u200c',
  '\u200d',
  '\u2060',
  '\ufeff',
  '\uffff',
  '\ufffe',
  '\u0085',
  '\u2028',
];
const specialChar = fc.oneof(
  fc.constantFrom(...SPECIAL),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)),
);
/** Those characters spliced into plain text (or alone). */
const spliced = fc
  .tuple(
    fc.string({ maxLength: 10 }),
    fc.array(specialChar, { minLength: 1, maxLength: 3 }),
    fc.string({ maxLength: 10 }),
  )
  .map(([a, chars, b]) => `${a}${chars.join('')}${b}`);
const IMPOSSIBLE_DATES = [
  '0000-01-01',
  '2023-02-30',
  '2024-02-30',
  '99999-01-01',
  '+099999-01-01',
  '-000001-01-01',
  '2024-13-01',
  '2024-00-10',
  '2024-01-32',
  '0000-00-00',
  '2024-02-29T25:61:61Z',
  '9999-12-31T23:59:59.999999999Z',
  '275760-09-13',
  '1969-12-31',
  '2024-1-1',
  '20240101',
];
const NUMBER_TEXT = [
  '0',
  '-1',
  '-0',
  '1e309',
  '-1e309',
  '9007199254740993',
  '99999999999999999999',
  '18446744073709551616',
  '2147483648',
  '-9223372036854775809',
  '0x10',
  '1.5',
  ' 1',
  '01',
  'NaN',
  'Infinity',
  '\u0661\u0662',
  '\uff11\uff12',
];
const INJECTIONS = [
  "' OR 1=1 --",
  "'; DROP TABLE users; --",
  '%',
  '_',
  '\\',
  '%%',
  '\\%',
  '__proto__',
  'constructor',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  '${7*7}{{7*7}}',
  'a\r\nSet-Cookie: x=1',
  'null',
  'oidc:',
  'guest_',
];
const longText = fc
  .tuple(
    fc.constantFrom(63, 64, 65, 150, 151, 255, 256, 320, 321, 500, 501, 1024, 1025, 2049, 4097, 16_385, 70_000),
    fc.constantFrom('a', 'é', '\u{1F600}', '\u0000', '\u202e', '9'),
  )
  .map(([length, char]) => char.repeat(length));
/** The strings an attacker sends. */
const nastyText = fc.oneof(
  { arbitrary: spliced, weight: 5 },
  { arbitrary: fc.constantFrom(...IMPOSSIBLE_DATES), weight: 2 },
  { arbitrary: fc.constantFrom(...NUMBER_TEXT), weight: 2 },
  { arbitrary: fc.constantFrom(...INJECTIONS), weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 24 }), weight: 2 },
  { arbitrary: longText, weight: 1 },
  { arbitrary: fc.constantFrom('', ' ', '\t', '\n'), weight: 1 },
);
const extremeNumber = fc.oneof(
  fc.constantFrom(-1, 0, -0, 1.5, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 1e308, -1e308, Number.MIN_VALUE),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
/** Any JSON value, mostly of a wrong type for the field it lands in. */
const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: nastyText, weight: 6 },
  { arbitrary: extremeNumber, weight: 2 },
  { arbitrary: fc.constantFrom(true, false, null, [], {}), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 1 },
  { arbitrary: fc.array(nastyText, { maxLength: 3 }), weight: 1 },
  { arbitrary: fc.dictionary(nastyText, nastyText, { maxKeys: 3 }), weight: 1 },
);
const deepText = fc
  .tuple(fc.integer({ min: 50, max: 6000 }), fc.boolean())
  .map(([depth, arrays]) =>
    arrays ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
  );
/** JSON text of one value: JSON.stringify keeps NUL and lone surrogates as \u escapes, which the server decodes. */
const valueText = fc.oneof(
  { arbitrary: wrongValue.map((value) => JSON.stringify(value) ?? 'null'), weight: 8 },
  {
    arbitrary: fc.constantFrom(
      '1e309',
      '-1e309',
      '123456789012345678901234567890',
      '-0',
      '1E+400',
      '"\\ud800"',
      '"\\u0000"',
      '"a\\udfffb"',
    ),
    weight: 1,
  },
  { arbitrary: deepText, weight: 1 },
);

/** A field of a body or query: its good values (none: absent from a good request), and its bad ones. */
interface Field {
  good?: fc.Arbitrary<unknown>;
  bad: fc.Arbitrary<unknown>;
}
type Fields = Record<string, Field>;
const field = (good: fc.Arbitrary<unknown> | undefined, bad: fc.Arbitrary<unknown> = nastyText): Field => ({
  good,
  bad,
});

/**
 * The entries of a request for these fields, as [name, value] with each value made text by `text`:
 *  - a good request (a few runs), or one with one field made bad (most runs: the route's own code is reached with it);
 *  - every field good, bad, of a wrong type or absent;
 *  - unknown and repeated keys on top.
 */
function entries(
  fields: Fields,
  text: (value: unknown) => string,
  wrong: fc.Arbitrary<string>,
): fc.Arbitrary<Array<[string, string]>> {
  const names = Object.keys(fields);
  const good = (name: string) =>
    fields[name]!.good?.map((value) => (value === undefined ? undefined : text(value))) ?? fc.constant(undefined);
  const bad = (name: string) =>
    fc.oneof({ arbitrary: fields[name]!.bad.map(text), weight: 3 }, { arbitrary: wrong, weight: 1 });
  const oneBad = fc
    .tuple(fc.tuple(...names.map(good)), names.length ? fc.nat(names.length - 1) : fc.constant(-1))
    .chain(([values, index]) =>
      index < 0
        ? fc.constant(values)
        : bad(names[index]!).map((value) => values.map((kept, i) => (i === index ? value : kept))),
    );
  const anything = fc.tuple(
    ...names.map((name) =>
      fc.oneof(
        { arbitrary: good(name), weight: 2 },
        { arbitrary: bad(name), weight: 2 },
        { arbitrary: fc.constant(undefined), weight: 1 },
      ),
    ),
  );
  const extraKey = fc.oneof(
    fc.constantFrom(...names, '__proto__', 'constructor', ''),
    nastyText.filter((key) => key.length < 200),
  );
  return fc
    .tuple(
      fc.oneof(
        { arbitrary: fc.tuple(...names.map(good)), weight: 1 },
        { arbitrary: oneBad, weight: 4 },
        { arbitrary: anything, weight: 2 },
      ),
      fc.array(fc.tuple(extraKey, wrong), { maxLength: 2 }),
      fc.nat(9),
    )
    .map(([values, extra, roll]) => {
      const list: Array<[string, string]> = names.flatMap((name, i) =>
        values[i] === undefined ? [] : [[name, values[i]!] as [string, string]],
      );
      // Unknown keys, and now and then a repeated key (JSON.parse keeps the last, other readers the first).
      if (roll === 0) list.push(...extra);
      if (roll === 9 && list.length > 0) list.push([list[0]![0], list.at(-1)![1]]);
      return list;
    });
}

/** A JSON body of these fields; now and then a body of the wrong type, broken, or nested past any sane depth. */
function jsonBody(fields: Fields): fc.Arbitrary<string> {
  const object = entries(fields, (value) => JSON.stringify(value) ?? 'null', valueText).map(
    (list) => `{${list.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`,
  );
  return fc.oneof(
    { arbitrary: object, weight: 10 },
    { arbitrary: valueText, weight: 1 },
    { arbitrary: fc.constantFrom('', '{', '{"a":1}{"b":2}', '[{}]', '{"__proto__":{"polluted":1}}'), weight: 1 },
  );
}

/** Percent-encodings a decoder chokes on, or decodes to what the router must not see. */
const ODD_PCT = [
  '%',
  '%zz',
  '%E0%A4%A',
  '%ED%A0%80',
  '%ED%BF%BF',
  '%C0%AF',
  '%C0%80',
  '%00',
  '%2F',
  '%252F',
  '%2e%2e',
  '..',
  '.',
  '%u0041',
  '%uD800',
  '+',
  '%FF',
  '%C3%28',
  '%F4%90%80%80',
  '%3B',
  '%23',
  '%3F',
  '%E2%80%AE',
  '%E2%80%8B',
];
const oddPct = fc.constantFrom(...ODD_PCT);
/** A path parameter: a valid one, nasty text encoded, an odd encoding, a number at an edge. */
const param = (valid: fc.Arbitrary<string>) =>
  fc.oneof(
    { arbitrary: valid.map(pct), weight: 3 },
    { arbitrary: nastyText.map(pct).filter((text) => text.length > 0 && text.length < 3000), weight: 3 },
    {
      arbitrary: fc
        .tuple(fc.string({ maxLength: 4 }).map(pct), oddPct, fc.string({ maxLength: 4 }).map(pct))
        .map((parts) => parts.join('')),
      weight: 2,
    },
    { arbitrary: fc.constantFrom(...NUMBER_TEXT).map(pct), weight: 2 },
  );
const pctValue = (value: unknown) => pct(typeof value === 'string' ? value : (JSON.stringify(value) ?? ''));
/** Values only a percent-encoding can carry: bad encodings, encoded surrogates, NUL. */
const oddValue = fc.oneof(
  oddPct,
  fc.tuple(fc.string({ maxLength: 4 }).map(pct), oddPct).map((parts) => parts.join('')),
);

/** A query string of these keys, with odd keys and odd encodings. */
const query = (keys: Fields) =>
  fc
    // A good query has any of its parameters, not all.
    .tuple(
      entries(
        Object.fromEntries(
          Object.entries(keys).map(([name, { good, bad }]) => [
            name,
            { good: good && fc.option(good, { nil: undefined }), bad },
          ]),
        ),
        pctValue,
        oddValue,
      ),
      fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 9 },
        {
          arbitrary: fc.tuple(
            fc.constantFrom('__proto__', 'constructor[prototype]', 'a[]', '', '%zz', '%00', '%ED%A0%80'),
            oddValue,
          ),
          weight: 1,
        },
      ),
    )
    .map(([list, odd]) => (odd ? [...list, odd] : list))
    .map((list) =>
      list.length
        ? `?${list.map(([key, value]) => (value === '' ? pct(key) : `${key.startsWith('%') ? key : pct(key)}=${value}`)).join('&')}`
        : '',
    );

/** A urlencoded form of these fields, with odd encodings. */
const formBody = (fields: Fields) =>
  fc
    .tuple(entries(fields, pctValue, oddValue), fc.constantFrom('', '&', '&=', '&a', '&%zz=1', '&a=%'))
    .map(([list, tail]) => `${list.map(([key, value]) => `${pct(key)}=${value}`).join('&')}${tail}`)
    .filter((text) => text.length < 60_000);

/** What an Authorization header may be: printable ASCII garbage, or a scheme with it. */
const garbageHeader = fc.oneof(
  fc
    .string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 60 })
    .map((text) => `Bearer ${text}`),
  fc.constantFrom(
    '',
    'Bearer',
    'Bearer ',
    'Basic',
    'Basic !!!',
    'Basic AA==',
    'Bearer slk_',
    'Bearer slk_x',
    'bearer x',
    'Token x',
    'Basic YTpi YTpi',
  ),
  fc.integer({ min: 1000, max: 7000 }).map((length) => `Bearer ${'A'.repeat(length)}`),
);
/** HTTP Basic credentials: nasty usernames and passwords in UTF-8 (a lone surrogate becomes U+FFFD), or raw bytes. */
const basicHeader = fc.oneof(
  fc
    .tuple(
      fc.oneof(nastyText, fc.constantFrom('fuzz_user', 'FUZZ_USER')),
      fc.oneof(nastyText, fc.constant('fuzz-password-1')),
    )
    .map(([user, password]) => `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`),
  fc.uint8Array({ maxLength: 60 }).map((bytes) => `Basic ${Buffer.from(bytes).toString('base64')}`),
  fc
    .tuple(fc.uint8Array({ maxLength: 20 }), fc.uint8Array({ maxLength: 20 }))
    .map(
      ([user, password]) =>
        `Basic ${Buffer.concat([Buffer.from(user), Buffer.from(':'), Buffer.from(password)]).toString('base64')}`,
    ),
);

// ---------------------------------------------------------------------------------------------------
// The routes

/** What the request needs before it is sent: a valid token of a fresh guest, a service key… */
type Auth = 'none' | 'bearer' | 'service' | 'basic' | 'console';
interface Route {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  /** Path parameters, in order: `{}` in the template. */
  path: string;
  params?: Array<fc.Arbitrary<string>>;
  query?: Fields;
  /** JSON and/or a form body, of these fields. */
  body?: { fields: Fields; json?: boolean; form?: boolean; raw?: string };
  auth: Auth;
  /** The staff console's pages: errors are HTML pages, redirects are the sign-in's. */
  html?: boolean;
  runs?: number;
}

/** Tokens the emulator minted in beforeAll: a good request carries them, so that the fuzz reaches past the provider. */
const valid: Record<string, string[]> = {};
/** One of the minted tokens, read when generated (beforeAll has minted them by then). */
const minted = (name: string) =>
  fc.constant(0).chain(() => fc.constantFrom(...(valid[name]?.length ? valid[name] : ['none'])));
const asciiGarbage = fc.string({
  unit: fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code)),
  minLength: 1,
  maxLength: 40,
});
const tokenBad = fc.oneof({ arbitrary: nastyText, weight: 3 }, { arbitrary: asciiGarbage, weight: 1 });
const token = (name: string) => field(minted(name), tokenBad);
/** Sign in with Apple's `user`: the object, or its JSON text, with nasty names (the good one is a plain name). */
const appleUser = fc
  .record(
    {
      name: fc.record(
        { firstName: fc.oneof(nastyText, fc.constant('Ada')), lastName: fc.oneof(nastyText, wrongValue) },
        { requiredKeys: [] },
      ),
      email: nastyText,
    },
    { requiredKeys: [] },
  )
  .chain((user) => fc.constantFrom<unknown>(user, JSON.stringify(user)));
const appleUserField = field(
  fc.constantFrom<unknown>(
    { name: { firstName: 'Ada', lastName: 'Lovelace' } },
    '{"name":{"firstName":"Ada","lastName":"Lovelace"}}',
  ),
  appleUser,
);

const providerFields = (provider: Provider): Fields => {
  switch (provider) {
    case 'facebook':
      return { access_token: token('facebook'), id_token: field(undefined, tokenBad) };
    case 'twitter':
      return { access_token: token('twitter'), access_token_secret: token('twitter_secret') };
    case 'apple':
      return {
        id_token: token('apple'),
        user: appleUserField,
        code: field(undefined, tokenBad),
        nonce: field(undefined),
        client_id: field(undefined),
        redirect_uri: field(undefined),
      };
    case 'line':
      return { access_token: token('line'), id_token: field(undefined, tokenBad), nonce: field(undefined) };
    case 'github':
      return { access_token: token('github') };
    case 'google':
    case 'oidc:example':
      return { id_token: token(provider), nonce: field(undefined), access_token: field(undefined) };
  }
};

/** Facebook's signed_request (`<signature>.<payload>`), signed with the app's secret, with a nasty payload. */
function facebookSigned(payload: unknown): string {
  const body = base64url(JSON.stringify(payload));
  return `${createHmac('sha256', FACEBOOK_APP.secret).update(body).digest('base64url')}.${body}`;
}
const signedRequest: fc.Arbitrary<string> = fc
  .record(
    {
      algorithm: fc.oneof(fc.constant('HMAC-SHA256'), nastyText),
      user_id: fc.oneof(nastyText, extremeNumber, fc.constant('10150000000000001'), wrongValue),
      issued_at: fc.oneof(fc.constant(Math.floor(Date.now() / 1000)), extremeNumber, wrongValue),
    },
    { requiredKeys: [] },
  )
  .map(facebookSigned);
/** JWT-looking text: a header, nasty claims, no valid signature. */
function jwtLooking(): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.constantFrom({ alg: 'ES256', kid: 'x' }, { alg: 'none' }, { alg: 'RS256', kid: '\u0000' }),
      fc.dictionary(fc.constantFrom('sub', 'iss', 'aud', 'iat', 'events', 'jti'), wrongValue),
    )
    .map(([head, claims]) => `${base64url(JSON.stringify(head))}.${base64url(JSON.stringify(claims))}.`);
}

const reasonBody = { fields: { reason: field(fc.constant('ticket 42')) }, json: true };
const userId = fc.constantFrom('1', '2', '3', '999999');
const anyString = field(fc.string({ maxLength: 12 }));

const ROUTES: Route[] = [
  // Users and sessions.
  {
    name: 'create user',
    method: 'POST',
    path: '/api/users/',
    body: {
      fields: {
        username: field(fc.stringMatching(/^fuzz_[a-z0-9]{1,12}$/)),
        password: field(fc.constant('a good password')),
      },
      json: true,
    },
    auth: 'none',
  },
  {
    name: 'password sign-in',
    method: 'POST',
    path: '/api/token/',
    body: {
      fields: {
        username: field(fc.constantFrom('fuzz_user', 'FUZZ_user')),
        password: field(fc.constant('fuzz-password-1')),
      },
      json: true,
    },
    auth: 'none',
  },
  {
    name: 'refresh',
    method: 'POST',
    path: '/api/token/refresh/',
    body: { fields: { refresh_token: field(asciiGarbage) }, json: true },
    auth: 'none',
  },
  { name: 'logout', method: 'POST', path: '/api/logout/', body: { fields: {}, json: true }, auth: 'bearer' },
  { name: 'me', method: 'GET', path: '/api/me/', query: { x: anyString }, auth: 'bearer' },
  { name: 'delete me', method: 'DELETE', path: '/api/me/', auth: 'bearer' },
  {
    name: 'audit',
    method: 'GET',
    path: '/api/audit/',
    query: { limit: field(fc.constantFrom('1', '50', '200')), before: field(fc.constantFrom('1', '999999999999999')) },
    auth: 'bearer',
  },
  // Social accounts: associate and auth, for each provider.
  ...PROVIDERS.flatMap((provider): Route[] => [
    {
      name: `associate ${provider}`,
      method: 'POST',
      path: `/api/associate/${provider}/`,
      body: { fields: providerFields(provider), json: true },
      auth: 'bearer',
    },
    {
      name: `auth ${provider}`,
      method: 'POST',
      path: `/api/auth/${provider}/`,
      body: { fields: providerFields(provider), json: true },
      auth: 'none',
    },
  ]),
  {
    name: 'auth, any provider name',
    method: 'POST',
    path: '/api/auth/{}/',
    params: [fc.oneof(fc.constantFrom(...PROVIDERS), nastyText)],
    body: { fields: { access_token: token('facebook'), id_token: token('google') }, json: true },
    auth: 'none',
  },
  { name: 'associations', method: 'GET', path: '/api/associations/', auth: 'bearer' },
  {
    name: 'unlink',
    method: 'DELETE',
    path: '/api/associations/{}/{}/',
    params: [fc.constantFrom(...PROVIDERS), fc.string()],
    auth: 'bearer',
  },
  {
    name: 'nonce',
    method: 'POST',
    path: '/api/nonce/',
    body: { fields: { nonce: field(undefined) }, json: true },
    auth: 'none',
  },
  {
    name: 'link token',
    method: 'POST',
    path: '/api/associate/link-token/',
    body: { fields: { link_token: field(asciiGarbage) }, json: true },
    auth: 'bearer',
  },
  {
    name: 'merge',
    method: 'POST',
    path: '/api/users/merge/',
    body: { fields: { merge_token: field(asciiGarbage) }, json: true },
    auth: 'bearer',
  },
  // The compatibility routes: JSON or forms, Bearer or HTTP Basic.
  ...(['associate', 'auth'] as const).map((kind): Route => ({
    name: `compat ${kind}`,
    method: 'POST',
    path: `${COMPAT}/api/${kind}/{}/`,
    params: [fc.constantFrom('facebook', 'google-oauth2', 'apple-id', 'twitter', 'github', 'line')],
    body: {
      fields: {
        access_token: token('facebook'),
        access_token_secret: field(undefined),
        id_token: field(undefined, tokenBad),
        user: field(undefined, appleUser),
      },
      json: true,
      form: true,
    },
    auth: kind === 'associate' ? 'basic' : 'none',
    runs: 60,
  })),
  // Provider callbacks: Facebook's signed with the app's secret (a good request), so that their payload reaches the database.
  ...(['data-deletion', 'deauthorize'] as const).map((kind): Route => ({
    name: `facebook ${kind}`,
    method: 'POST',
    path: `/api/providers/facebook/${kind}`,
    body: { fields: { signed_request: field(signedRequest) }, json: true, form: true },
    auth: 'none',
    runs: 60,
  })),
  {
    name: 'facebook deletion status',
    method: 'GET',
    path: '/api/providers/facebook/data-deletion/{}',
    params: [fc.constantFrom('0123456789abcdef01234567', 'ffffffffffffffffffffffff')],
    auth: 'none',
  },
  {
    name: 'apple notifications',
    method: 'POST',
    path: '/api/providers/apple/notifications',
    body: { fields: { payload: field(jwtLooking()) }, json: true, form: true },
    auth: 'none',
  },
  {
    name: 'google risc',
    method: 'POST',
    path: '/api/providers/google/risc',
    body: { fields: { payload: field(jwtLooking()) }, json: true, raw: 'application/secevent+jwt' },
    auth: 'none',
  },
  // The admin API, with a service key (read, write, or none of ours).
  {
    name: 'admin search',
    method: 'GET',
    path: '/admin/api/users',
    query: {
      q: field(fc.constantFrom('1', 'fuzz', 'guest_', '10150000000000001', 'a@example.com')),
      provider: field(fc.constantFrom(...PROVIDERS)),
      created_from: field(
        fc.oneof(
          { arbitrary: fc.constantFrom('2020-01-01', '2026-12-31'), weight: 3 },
          { arbitrary: fc.constantFrom(...IMPOSSIBLE_DATES), weight: 1 },
        ),
        nastyText,
      ),
      created_to: field(
        fc.oneof(
          { arbitrary: fc.constantFrom('2099-12-31', '2020-02-29'), weight: 3 },
          { arbitrary: fc.constantFrom(...IMPOSSIBLE_DATES), weight: 1 },
        ),
        nastyText,
      ),
      cursor: field(undefined),
      limit: field(fc.constantFrom('1', '100')),
    },
    auth: 'service',
    runs: 60,
  },
  { name: 'admin user', method: 'GET', path: '/admin/api/users/{}', params: [userId], auth: 'service' },
  {
    name: 'admin user by username',
    method: 'GET',
    path: '/admin/api/usernames/{}',
    params: [fc.constantFrom('fuzz_user', 'FUZZ_USER')],
    auth: 'service',
  },
  {
    name: 'admin link',
    method: 'GET',
    path: '/admin/api/links/{}/{}',
    params: [fc.constantFrom(...PROVIDERS), fc.constantFrom('1', '10150000000000001')],
    auth: 'service',
  },
  {
    name: 'admin audit',
    method: 'GET',
    path: '/admin/api/users/{}/audit',
    params: [userId],
    query: {
      before: field(fc.constantFrom('1', '99999')),
      limit: field(fc.constantFrom('1', '200')),
      reads: field(fc.constantFrom('true', 'false')),
    },
    auth: 'service',
  },
  {
    name: 'admin unlink',
    method: 'POST',
    path: '/admin/api/users/{}/unlink',
    params: [userId],
    body: {
      fields: {
        provider: field(fc.constantFrom('facebook', 'apple')),
        uid: field(fc.constantFrom('1', '10150000000000001')),
        reason: field(fc.constant('ticket 42')),
        force: field(fc.constant(false), wrongValue),
      },
      json: true,
    },
    auth: 'service',
  },
  {
    name: 'admin revoke sessions',
    method: 'POST',
    path: '/admin/api/users/{}/revoke-sessions',
    params: [userId],
    body: reasonBody,
    auth: 'service',
  },
  {
    name: 'admin revoke session',
    method: 'POST',
    path: '/admin/api/users/{}/sessions/{}/revoke',
    params: [userId, fc.uuid()],
    body: reasonBody,
    auth: 'service',
  },
  {
    name: 'admin delete',
    method: 'POST',
    path: '/admin/api/users/{}/delete',
    params: [fc.constantFrom('999998', '999999')],
    body: reasonBody,
    auth: 'service',
  },
  {
    name: 'admin export',
    method: 'POST',
    path: '/admin/api/users/{}/export',
    params: [userId],
    body: reasonBody,
    auth: 'service',
  },
  {
    name: 'admin disable',
    method: 'POST',
    path: '/admin/api/users/{}/disable',
    params: [fc.constantFrom('999998', '999999')],
    body: reasonBody,
    auth: 'service',
  },
  {
    name: 'admin enable',
    method: 'POST',
    path: '/admin/api/users/{}/enable',
    params: [userId],
    body: reasonBody,
    auth: 'service',
  },
  // The deprecated path of the username lookup (hidden from the document; served until callers have moved).
  {
    name: 'admin user by username (deprecated path)',
    method: 'GET',
    path: '/admin/api/users/by-username/{}',
    params: [fc.constantFrom('fuzz_user', 'FUZZ_USER')],
    auth: 'service',
  },
  // The console's forms, unauthenticated (the sign-in form with its own valid CSRF token: a good request).
  {
    name: 'console login',
    method: 'POST',
    path: '/admin/login',
    body: {
      fields: {
        username: field(fc.constantFrom('staff', 'fuzz_user')),
        password: field(fc.constant('a staff password')),
        next: field(fc.constantFrom('/admin/users', '//evil.example', '/\\evil')),
        _csrf: field(fc.constant('LOGIN_CSRF')),
      },
      form: true,
      json: true,
    },
    auth: 'console',
    html: true,
    runs: 60,
  },
  ...['/admin/totp', '/admin/enrol', '/admin/logout'].map((path): Route => ({
    name: `console ${path}`,
    method: 'POST',
    path,
    body: {
      fields: {
        code: field(fc.constant('123456')),
        _csrf: field(asciiGarbage),
        next: field(fc.constant('/admin/users')),
      },
      form: true,
    },
    auth: 'console',
    html: true,
  })),
  ...['unlink', 'revoke-sessions', 'revoke-session', 'delete', 'export', 'disable', 'enable'].map((action): Route => ({
    name: `console ${action}`,
    method: 'POST',
    path: `/admin/users/{}/${action}`,
    params: [userId],
    body: {
      fields: {
        provider: field(fc.constant('facebook')),
        uid: field(fc.constant('1')),
        reason: field(fc.constant('ticket 42')),
        session: anyString,
        confirm: anyString,
        force: field(fc.constant('1')),
        _csrf: field(asciiGarbage),
      },
      form: true,
    },
    auth: 'console',
    html: true,
  })),
  {
    name: 'console pages',
    method: 'GET',
    path: '/admin/{}',
    params: [fc.constantFrom('users', 'login', 'totp', 'enrol', '', 'users/1', 'links/facebook/1')],
    query: {
      q: anyString,
      provider: field(fc.constantFrom(...PROVIDERS)),
      created_from: field(fc.constantFrom('2020-01-01', ...IMPOSSIBLE_DATES)),
      cursor: anyString,
      next: field(fc.constantFrom('/admin/users', '//evil.example')),
      ended: field(fc.constantFrom('1', 'step')),
    },
    auth: 'console',
    html: true,
  },
];

// ---------------------------------------------------------------------------------------------------
// Sending, and what every answer must be

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
/** One request as it is (no URL normalisation: dot segments and odd encodings reach the server as written). */
function send(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) },
        timeout: 15_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('no answer within 15 s')));
    request.on('error', reject);
    request.end(body);
  });
}

const preview = (text: string, max = 400) =>
  text.length > max ? `${JSON.stringify(text.slice(0, max))}… (${text.length} chars)` : JSON.stringify(text);
/** A stack trace or a source path in an answer. */
const STACK = /\n\s+at .+[(:]\d|node_modules|\/src\/\w+\/\w+\.[jt]s|(?:Type|Reference|Syntax|Range)Error:/;

/** Throws (with the request) unless the answer is one every request may get. */
function expectSound(
  route: Route,
  request: string,
  answer: Answer,
  counts: { before: Rows; after: Rows },
  logged: (requestId: string) => string,
): void {
  const fail = (why: string): never => {
    const requestId = String(answer.headers['x-request-id'] ?? '');
    const log = answer.status >= 500 && requestId ? `\n  logged:  ${logged(requestId)}` : '';
    throw new Error(
      `${route.name}: ${why}\n  request: ${request}\n  answer:  ${answer.status} ${answer.headers['content-type'] ?? '(no content-type)'} ${preview(answer.text)}${log}`,
    );
  };
  if (answer.status >= 500) fail('a 5xx');
  const type = String(answer.headers['content-type'] ?? '');
  const consolePage = route.html && !/^\/admin\/api\//.test(request.split(' ')[1] ?? '');
  if (answer.status >= 300 && answer.status < 400 && !consolePage) fail('a redirect');
  if (answer.headers['x-content-type-options'] !== 'nosniff' || !answer.headers['content-security-policy'])
    fail("an answer without helmet's headers");
  const requestId = answer.headers['x-request-id'];
  if (typeof requestId !== 'string' || !requestId) fail('an answer without X-Request-Id');
  if (answer.status >= 400) {
    if (consolePage && /^text\/html\b/.test(type)) {
      if (STACK.test(answer.text)) fail('a stack trace in a console page');
    } else {
      if (!/^application\/json\b/.test(type)) fail('an error that is not JSON');
      let body: Record<string, unknown> | undefined;
      try {
        body = JSON.parse(answer.text) as Record<string, unknown>;
      } catch {
        fail('an error whose body is not JSON');
      }
      if (typeof body?.code !== 'string' || typeof body.message !== 'string' || body.errors !== body.message)
        fail('an error without {code, message, errors}');
      if (body!.request_id !== requestId) fail('an error whose request_id is not its X-Request-Id');
      if (STACK.test(answer.text)) fail('a stack trace in an error');
    }
    const { before, after } = counts;
    if (before.users !== after.users || before.links !== after.links || before.sessions !== after.sessions)
      fail(`a refused request wrote: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
  }
}

interface Rows {
  users: number;
  links: number;
  sessions: number;
}

// ---------------------------------------------------------------------------------------------------

describe.each(databaseKinds())('fuzzing every route on %s', (kind) => {
  let stack: Stack;
  const keys: { read: string; write: string } = { read: '', write: '' };
  let loginCsrf = { cookie: '', token: '' };
  /** Per route, how many answers of each status (printed at the end: what the fuzz reached). */
  const sent = new Map<string, Map<number, number>>();
  let started = 0;

  const collected: string[] = [];
  /** The error and stack the server logged for a request (what a 5xx left in the logs). */
  const logged = (requestId: string) =>
    stack.logs
      .filter((line) => line.includes(requestId) && line.includes('"err"'))
      .map((line) => {
        const { err } = JSON.parse(line) as { err?: { type?: string; message?: string; stack?: string } };
        return `${err?.type}: ${err?.message} | ${(err?.stack ?? '')
          .split('\n')
          .slice(1, 5)
          .map((frame) => frame.trim())
          .join(' | ')}`;
      })
      .join('\n') || '(nothing logged)';

  const rows = async (): Promise<Rows> => {
    const {
      rows: [row],
    } =
      await sql<Rows>`select cast((select count(*) from users) as integer) as users, cast((select count(*) from social_associations) as integer) as links, cast((select count(*) from sessions) as integer) as sessions`.execute(
        stack.db,
      );
    return { users: Number(row!.users), links: Number(row!.links), sessions: Number(row!.sessions) };
  };

  beforeAll(async () => {
    started = Date.now();
    stack = await startStack(kind, {
      SOCIAL_LINK_ADMIN: 'true',
      SOCIAL_LINK_COMPAT_PREFIX: COMPAT,
      SOCIAL_LINK_ENCRYPTION_KEYS: Buffer.alloc(32, 24).toString('base64'),
    });
    const storage = new Storage(stack.db);
    keys.read = (await storage.serviceKeys.create('fuzz-read', ['read'])).key;
    keys.write = (await storage.serviceKeys.create('fuzz-write', ['read', 'write'])).key;
    // A password user and a linked guest, for the routes that find users.
    const created = await send(
      stack.api,
      'POST',
      '/api/users/',
      { 'content-type': 'application/json' },
      JSON.stringify({ username: 'fuzz_user', password: 'fuzz-password-1' }),
    );
    expect(created.status).toBe(201);
    const linked = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({ user: { id: '10150000000000001' } });
    expect(
      (
        await send(
          stack.api,
          'POST',
          '/api/associate/facebook/',
          { 'content-type': 'application/json', authorization: `Bearer ${linked.access_token}` },
          JSON.stringify({ access_token: facebook.access_token }),
        )
      ).status,
    ).toBe(200);
    // Valid provider tokens, so that some requests get past the provider to the pipeline and the database.
    const mint = async <T>(count: number, make: () => Promise<T>) => Promise.all(Array.from({ length: count }, make));
    valid.facebook = [
      facebook.access_token,
      ...(await mint(2, () => stack.emulator.mintFacebookToken())).map((minted) => minted.access_token),
    ];
    valid.facebook_id = (await mint(1, () => stack.emulator.mintIdToken('facebook'))).map((minted) => minted.id_token);
    const twitter = await mint(2, () => stack.emulator.mintTwitterToken());
    valid.twitter = twitter.map((minted) => minted.access_token);
    valid.twitter_secret = twitter.map((minted) => minted.access_token_secret);
    valid.google = (await mint(2, () => stack.emulator.mintIdToken('google'))).map((minted) => minted.id_token);
    valid['oidc:example'] = (await mint(2, () => stack.emulator.mintIdToken('oidc:example'))).map(
      (minted) => minted.id_token,
    );
    valid.apple = (await mint(3, () => stack.emulator.mintIdToken('apple'))).map((minted) => minted.id_token);
    valid.apple_code = (await mint(2, () => stack.emulator.mintAppleCode())).map((minted) => minted.code);
    const line = await mint(2, () => stack.emulator.mintLineToken());
    valid.line = line.map((minted) => minted.access_token);
    valid.line_id = line.map((minted) => minted.id_token);
    valid.github = (await mint(2, () => stack.emulator.mintGithubToken())).map((minted) => minted.access_token);
    // The sign-in form's CSRF token and its cookie, as anyone gets them.
    const login = await send(stack.api, 'GET', '/admin/login', {});
    const cookie = (login.headers['set-cookie'] ?? [])
      .map((line) => line.split(';')[0]!)
      .find((pair) => pair.includes('admin_login='));
    loginCsrf = { cookie: cookie ?? '', token: /name="_csrf" value="([^"]+)"/.exec(login.text)?.[1] ?? '' };
    expect(loginCsrf.token).not.toBe('');
  });

  afterAll(async () => {
    const total = [...sent.values()]
      .flatMap((statuses) => [...statuses.values()])
      .reduce((sum, count) => sum + count, 0);
    const lines = [...sent].map(
      ([name, statuses]) =>
        `  ${name}: ${[...statuses]
          .sort(([a], [b]) => a - b)
          .map(([status, count]) => `${status}×${count}`)
          .join(' ')}`,
    );
    console.log(
      `fuzz-routes: ${sent.size} routes, ${total} requests, seed ${SEED}, ${((Date.now() - started) / 1000).toFixed(1)} s\n${lines.join('\n')}`,
    );
    if (collected.length) console.log(`fuzz-routes: ${collected.length} failures\n${collected.join('\n\n')}`);
    agent.destroy();
    await stack?.close();
  });

  /** The headers of a request for the route's authentication kind. */
  const authHeaders = (
    route: Route,
    choice: number,
    garbage: string,
    basic: string,
  ): Promise<Record<string, string>> | Record<string, string> => {
    switch (route.auth) {
      case 'none':
        return choice % 4 === 0 ? { authorization: garbage } : {};
      case 'bearer':
        if (choice % 4 === 0) return { authorization: garbage };
        if (choice % 4 === 1) return {};
        // A fresh guest: a request may end its session or delete it.
        return guest(stack.api).then((user) => ({ authorization: `Bearer ${user.access_token}` }));
      case 'service':
        return [
          { authorization: `Bearer ${keys.write}` },
          { authorization: `Bearer ${keys.write}` },
          { authorization: `Bearer ${keys.read}` },
          { authorization: garbage },
          {},
        ][choice % 5]!;
      case 'basic':
        if (choice % 4 === 0) return { authorization: garbage };
        if (choice % 4 === 1)
          return guest(stack.api).then((user) => ({ authorization: `Bearer ${user.access_token}` }));
        return { authorization: basic };
      case 'console':
        return [{ cookie: loginCsrf.cookie }, { cookie: `sl_admin=${pct(garbage)}; ${loginCsrf.cookie}` }, {}][
          choice % 3
        ]!;
    }
  };

  const request = (route: Route) => {
    const params = fc.tuple(...(route.params ?? []).map((arbitrary) => param(arbitrary)));
    const search = route.query ? query(route.query) : fc.constant('');
    const body = route.body
      ? fc.oneof(
          ...(route.body.json !== false
            ? [jsonBody(route.body.fields).map((text) => ({ type: 'application/json', text }))]
            : []),
          ...(route.body.form
            ? [formBody(route.body.fields).map((text) => ({ type: 'application/x-www-form-urlencoded', text }))]
            : []),
          ...(route.body.raw
            ? [fc.oneof(nastyText, jwtLooking()).map((text) => ({ type: route.body!.raw!, text }))]
            : []),
        )
      : fc.option(fc.constant({ type: 'application/json', text: '{}' }), { nil: undefined });
    return fc.record({ params, search, body, choice: fc.nat(), garbage: garbageHeader, basic: basicHeader });
  };

  it.each(ROUTES.map((route) => [route.name, route] as const))(
    '%s',
    async (_name, route) => {
      await fc.assert(
        fc.asyncProperty(request(route), async ({ params, search, body, choice, garbage, basic }) => {
          let index = 0;
          const path = route.path.replace(/\{\}/g, () => params[index++] ?? '') + search;
          const headers: Record<string, string> = { ...(await authHeaders(route, choice, garbage, basic)) };
          let text = body?.text;
          if (body) headers['content-type'] = body.type;
          // The sign-in form's own CSRF token, where the form carries one: its username and password reach the staff store.
          if (text && route.auth === 'console') text = text.replaceAll('LOGIN_CSRF', loginCsrf.token);
          const target = path.replace(/[^\x21-\x7e]/g, (char) => pct(char));
          const before = await rows();
          const answer = await send(stack.api, route.method, target, headers, text);
          const after = await rows();
          const statuses = sent.get(route.name) ?? new Map<number, number>();
          sent.set(route.name, statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1));
          const what = `${route.method} ${target.length > 600 ? `${target.slice(0, 600)}…` : target} ${JSON.stringify(headers).slice(0, 300)} ${text === undefined ? '' : preview(text, 600)}`;
          try {
            expectSound(route, what, answer, { before, after }, logged);
          } catch (error) {
            // FUZZ_COLLECT=1: list every failure (to report them) instead of stopping at the first.
            if (!process.env.FUZZ_COLLECT) throw error;
            collected.push((error as Error).message);
          }
        }),
        {
          numRuns: process.env.FUZZ_RUNS ? RUNS : (route.runs ?? RUNS),
          seed: SEED,
          endOnFailure: !process.env.FUZZ_SHRINK,
        },
      );
    },
    120_000,
  );
});
