import { createHash, randomBytes, randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, databaseKinds, guest, startStack, type Stack } from './helpers.js';

// What each client SDK really hands the app and what the app sends us (test/fixtures/sdk-flows/, each fact
// with its source), replayed through HTTP: the emulator mints exactly that, the app links it to a new user
// at its first launch and signs in with it at its next launch — the same cached token again where the SDK
// caches it, a new one otherwise.

const FLOWS_DIR = join(import.meta.dirname, 'fixtures', 'sdk-flows');

type NonceForm = 'none' | 'raw' | 'sha256_hex';
interface Source {
  url?: string;
  repo?: string;
  path?: string;
  says: string;
}
interface Flow {
  flow: string;
  title: string;
  sdk: string;
  platform: 'ios' | 'android' | 'react-native' | 'expo' | 'flutter';
  provider: 'google' | 'apple' | 'facebook' | 'line' | 'twitter' | 'github';
  sources: Source[];
  app_gets: string[];
  sends: { fields: string[] };
  nonce: { to_sdk: NonceForm; to_backend: 'none' | 'raw'; in_token: NonceForm };
  audience:
    | 'web_client_id'
    | 'ios_client_id'
    | 'bundle_id'
    | 'services_id'
    | 'app_id'
    | 'channel_id'
    | 'consumer_key'
    | 'oauth_client_id';
  azp?: 'android_client_id' | 'ios_client_id';
  code_redirect_uri?: string;
  next_launch: 'cached_token' | 'new_token';
  token_lifetime_seconds: number | null;
  notes: string;
}

const flows: Flow[] = readdirSync(FLOWS_DIR)
  .filter((name) => name.endsWith('.json'))
  .sort()
  .map((name) => JSON.parse(readFileSync(join(FLOWS_DIR, name), 'utf8')) as Flow);

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

// The client ids the tokens are issued to. The web ("server") client id and the bundle id are dev mode's
// (src/config/dev.ts); the others are added to the server's settings below, as an operator must.
const GOOGLE_WEB = 'dev-web.apps.googleusercontent.com';
const GOOGLE_IOS = '000000000000-sdkflowsios.apps.googleusercontent.com';
const GOOGLE_ANDROID = '000000000000-sdkflowsandroid.apps.googleusercontent.com';
const APPLE_BUNDLE = 'com.example.sociallink';
/** One Services ID per Apple web flow, each with the redirect URI its library is configured with. */
const servicesId = (flow: Flow) => `com.example.sociallink.web.${flow.flow}`;
const appleWebFlows = flows.filter((flow) => flow.audience === 'services_id');

describe('SDK flow fixtures', () => {
  const PLATFORMS = ['ios', 'android', 'react-native', 'expo', 'flutter'];
  const PROVIDERS = ['google', 'apple', 'facebook', 'line', 'twitter', 'github'];
  const FORMS = ['none', 'raw', 'sha256_hex'];
  const AUDIENCES = [
    'web_client_id',
    'ios_client_id',
    'bundle_id',
    'services_id',
    'app_id',
    'channel_id',
    'consumer_key',
    'oauth_client_id',
  ];
  const FIELDS = ['id_token', 'access_token', 'access_token_secret', 'code', 'user', 'nonce'];
  const GETS = ['id_token', 'access_token', 'access_token_secret', 'refresh_token', 'code', 'user'];

  it('there are flows for every provider', () => {
    expect(new Set(flows.map((flow) => flow.provider))).toEqual(new Set(PROVIDERS));
  });

  it.each(flows.map((flow) => [flow.flow, flow] as const))(
    '%s is well-formed, and sourced or says why not',
    (name, flow) => {
      const file = `${name}.json`;
      expect(readdirSync(FLOWS_DIR)).toContain(file);
      expect(
        typeof flow.title === 'string' && flow.title.length > 0 && typeof flow.sdk === 'string' && flow.sdk.length > 0,
      ).toBe(true);
      expect(PLATFORMS).toContain(flow.platform);
      expect(PROVIDERS).toContain(flow.provider);
      expect(Array.isArray(flow.sources)).toBe(true);
      for (const source of flow.sources) {
        expect(
          typeof source.says === 'string' && source.says.length > 0,
          `${file}: every source says what it states`,
        ).toBe(true);
        expect(source.says.length, `${file}: says is a short paraphrase`).toBeLessThanOrEqual(400);
        const cited =
          (typeof source.url === 'string' && /^https:\/\//.test(source.url)) ||
          (typeof source.repo === 'string' &&
            /^[\w.-]+\/[\w.-]+$/.test(source.repo) &&
            typeof source.path === 'string');
        expect(cited, `${file}: a source is an https URL or a repo + path`).toBe(true);
      }
      expect(typeof flow.notes).toBe('string');
      // Recorded, never invented: a flow without a source says so in its notes.
      if (flow.sources.length === 0)
        expect(flow.notes, `${file} has no source: its notes must say why`).toMatch(/source/i);
      for (const field of flow.app_gets) expect(GETS).toContain(field);
      expect(flow.sends.fields.length).toBeGreaterThan(0);
      for (const field of flow.sends.fields) expect(FIELDS).toContain(field);
      expect(flow.sends.fields.some((field) => ['id_token', 'access_token', 'code'].includes(field))).toBe(true);
      expect(FORMS).toContain(flow.nonce.to_sdk);
      expect(['none', 'raw']).toContain(flow.nonce.to_backend);
      expect(FORMS).toContain(flow.nonce.in_token);
      // The nonce field is sent exactly when the app sends a nonce; a token carries one only if the app gave one.
      expect(flow.sends.fields.includes('nonce')).toBe(flow.nonce.to_backend !== 'none');
      if (flow.nonce.to_sdk === 'none') expect(flow.nonce.in_token).toBe('none');
      if (flow.nonce.to_backend !== 'none') expect(flow.nonce.in_token).not.toBe('none');
      expect(AUDIENCES).toContain(flow.audience);
      if (flow.azp !== undefined) expect(['android_client_id', 'ios_client_id']).toContain(flow.azp);
      if (flow.audience === 'services_id')
        expect(flow.code_redirect_uri, `${file}: a web flow's code is bound to its redirect_uri`).toMatch(
          /^https:\/\//,
        );
      expect(['cached_token', 'new_token']).toContain(flow.next_launch);
      expect(
        flow.token_lifetime_seconds === null ||
          (Number.isInteger(flow.token_lifetime_seconds) && flow.token_lifetime_seconds > 0),
      ).toBe(true);
    },
  );

  it('every flow file is named after its flow', () => {
    expect(
      readdirSync(FLOWS_DIR)
        .filter((name) => name.endsWith('.json'))
        .sort(),
    ).toEqual(flows.map((flow) => `${flow.flow}.json`).sort());
  });
});

/** The person behind a flow: the same account at both launches. */
interface Person {
  google: string;
  apple?: string;
  facebook: string;
  line: string;
  twitter: string;
  github: number;
}

const newPerson = (): Person => ({
  google: `1${randomInt(10 ** 9, 10 ** 10 - 1)}${randomInt(10 ** 9, 10 ** 10 - 1)}`,
  facebook: `1${randomInt(10 ** 9, 10 ** 10 - 1)}${randomInt(10 ** 4, 10 ** 5 - 1)}`,
  line: `U${randomBytes(16).toString('hex')}`,
  twitter: `1${randomInt(10 ** 9, 10 ** 10 - 1)}${randomInt(10 ** 6, 10 ** 7 - 1)}`,
  github: randomInt(1, 2 ** 31),
});

describe.each(databaseKinds())('SDK flows through HTTP on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, {
      // The operator lists every client id the apps' tokens are issued to.
      SOCIAL_AUTH_GOOGLE_KEY: [GOOGLE_WEB, GOOGLE_IOS].join(','),
      SOCIAL_AUTH_APPLE_KEY: [APPLE_BUNDLE, ...appleWebFlows.map(servicesId)].join(','),
      SOCIAL_AUTH_APPLE_REDIRECT_URIS: appleWebFlows
        .map((flow) => `${servicesId(flow)}=${flow.code_redirect_uri}`)
        .join(','),
      // A next launch is not a retry of a lost answer: no retry window hides a refused replay.
      SOCIAL_AUTH_ID_TOKEN_RETRY_SECONDS: '0',
      // twitter-oauth2-pkce: X OAuth 2 tokens are accepted only when the operator turns them on (README).
      SOCIAL_AUTH_TWITTER_ACCEPT_OAUTH2_TOKENS: 'true',
    });
    expect(stack.apps.google.clientIds[0]).toBe(GOOGLE_WEB);
    expect(stack.apps.apple.clientIds[0]).toBe(APPLE_BUNDLE);
  });
  afterAll(() => stack?.close());

  /** The sealed provider grant kept on a link: Apple's refresh token, there only if the code was redeemed. */
  const keptGrant = async (provider: string, uid: string) =>
    (
      await stack.db
        .selectFrom('social_associations')
        .select('provider_tokens')
        .where('provider', '=', provider)
        .where('uid', '=', uid)
        .executeTakeFirstOrThrow()
    ).provider_tokens;

  /** What the SDK gives the app for this person, and the body the app POSTs (the flow's `sends` fields). */
  async function signInWithSdk(flow: Flow, person: Person): Promise<Record<string, string>> {
    const raw = `sdk-flow-${randomBytes(12).toString('base64url')}`;
    const tokenNonce = flow.nonce.in_token === 'none' ? undefined : flow.nonce.in_token === 'raw' ? raw : sha256(raw);
    const got: Record<string, string | undefined> = { nonce: flow.nonce.to_backend === 'raw' ? raw : undefined };
    const { emulator, apps } = stack;
    switch (flow.provider) {
      case 'google': {
        const aud = { web_client_id: GOOGLE_WEB, ios_client_id: GOOGLE_IOS }[
          flow.audience as 'web_client_id' | 'ios_client_id'
        ];
        const azp = flow.azp === 'ios_client_id' ? GOOGLE_IOS : flow.azp === 'android_client_id' ? GOOGLE_ANDROID : aud;
        expect(aud, `${flow.flow}: a Google audience`).toBeDefined();
        got.id_token = (
          await emulator.mintIdToken('google', {
            sub: person.google,
            aud,
            azp,
            nonce: tokenNonce,
            email: `${person.google}@gmail.com`,
            email_verified: true,
          })
        ).id_token;
        break;
      }
      case 'apple': {
        const clientId = flow.audience === 'services_id' ? servicesId(flow) : APPLE_BUNDLE;
        if (flow.app_gets.includes('code')) {
          const minted = await emulator.mintAppleCode({
            client_id: clientId,
            ...(person.apple ? { sub: person.apple } : { name: 'Ada Lovelace' }),
            nonce: tokenNonce,
            // A web flow's code is bound to the redirect URI of its authorization request.
            ...(flow.code_redirect_uri ? { redirect_uri: flow.code_redirect_uri } : {}),
          });
          person.apple = minted.sub;
          Object.assign(got, { id_token: minted.id_token, code: minted.code, user: minted.user });
        } else {
          const minted = await emulator.mintIdToken('apple', {
            aud: clientId,
            ...(person.apple ? { sub: person.apple } : {}),
            nonce: tokenNonce,
          });
          person.apple = minted.sub;
          got.id_token = minted.id_token;
        }
        break;
      }
      case 'facebook': {
        expect(flow.audience).toBe('app_id');
        if (flow.sends.fields.includes('id_token')) {
          got.id_token = (
            await emulator.mintIdToken('facebook', {
              sub: person.facebook,
              aud: apps.facebook.appId,
              nonce: tokenNonce,
            })
          ).id_token;
        } else {
          got.access_token = (
            await emulator.mintFacebookToken({ app_id: apps.facebook.appId, user: { id: person.facebook } })
          ).access_token;
        }
        break;
      }
      case 'line': {
        expect(flow.audience).toBe('channel_id');
        const minted = await emulator.mintLineToken({
          channel_id: apps.line.channelId,
          user: { userId: person.line },
          nonce: tokenNonce,
        });
        Object.assign(got, { id_token: minted.id_token, access_token: minted.access_token });
        break;
      }
      case 'twitter': {
        if (flow.audience === 'consumer_key') {
          const minted = await emulator.mintTwitterToken({
            consumer_key: apps.twitter.consumerKey,
            user: { id: person.twitter },
          });
          Object.assign(got, { access_token: minted.access_token, access_token_secret: minted.access_token_secret });
        } else {
          got.access_token = (await emulator.mintTwitterOAuth2Token({ user: { id: person.twitter } })).access_token;
        }
        break;
      }
      case 'github': {
        got.access_token = (
          await emulator.mintGithubToken({ client_id: apps.github.clientId, user: { id: person.github } })
        ).access_token;
        break;
      }
    }
    const body: Record<string, string> = {};
    for (const field of flow.sends.fields) {
      const value = got[field];
      // `user` comes with Apple's first authorization only; every other field the flow sends must be there.
      if (value === undefined) {
        expect(field, `${flow.flow}: the SDK gave no ${field}`).toBe('user');
        continue;
      }
      body[field] = value;
    }
    return body;
  }

  it.each(flows.map((flow) => [flow.flow, flow] as const))(
    '%s: first launch links the account, next launch signs in again',
    async (_name, flow) => {
      const person = newPerson();
      const provider = flow.provider;

      // First launch: a guest links the account the SDK signed in.
      const first = await signInWithSdk(flow, person);
      const user = await guest(stack.api);
      const linked = await call(stack.api, 'POST', `/api/associate/${provider}/`, {
        token: user.access_token,
        body: first,
        headers: { 'user-agent': `${flow.flow}/1 (first launch)` },
      });
      expect(linked.status, `first launch (associate): ${JSON.stringify(linked.body)}`).toBe(200);
      expect(linked.body.association).toMatchObject({ provider, created: true });
      if (flow.sends.fields.includes('user'))
        expect(first.user, 'Apple gives the name on the first authorization').toBeDefined();
      // The code was redeemed (for a web flow: with the redirect_uri its authorization used): its grant is kept.
      if (first.code)
        expect(await keptGrant(provider, linked.body.association.uid), 'the code was redeemed').toMatch(/^v1\./);

      // Next launch: the cached token again (with the nonce the app kept with it), or a new one for the same account.
      const next = flow.next_launch === 'cached_token' ? first : await signInWithSdk(flow, person);
      if (flow.next_launch === 'new_token') {
        expect(next).not.toEqual(first);
        expect(next.user, 'no name after the first authorization').toBeUndefined();
      }
      const signedIn = await call(stack.api, 'POST', `/api/auth/${provider}/`, {
        body: next,
        headers: { 'user-agent': `${flow.flow}/1 (next launch)` },
      });
      expect(signedIn.status, `next launch (${flow.next_launch}): ${JSON.stringify(signedIn.body)}`).toBe(200);
      expect(signedIn.body.id).toBe(user.id);
      expect(typeof signedIn.body.access_token).toBe('string');
    },
  );

  it.each(appleWebFlows.map((flow) => [flow.flow, flow] as const))(
    '%s: a code bound to another redirect_uri is not redeemed (Apple refuses it): the link keeps no grant',
    async (_name, flow) => {
      const minted = await stack.emulator.mintAppleCode({
        client_id: servicesId(flow),
        redirect_uri: 'https://elsewhere.example.com/callback',
      });
      const user = await guest(stack.api);
      const answer = await call(stack.api, 'POST', '/api/associate/apple/', {
        token: user.access_token,
        body: { id_token: minted.id_token, code: minted.code },
      });
      // The identity token still proves the account; only the grant to revoke later is lost.
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(await keptGrant('apple', answer.body.association.uid)).toBeNull();
    },
  );
});
