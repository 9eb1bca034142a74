import { isIP } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import { controlRestRoutes } from './control-rest.js';
import { controlRoutes } from './control.js';
import { appleRoutes } from './apple.js';
import { oidcControlRoutes } from './control-oidc.js';
import { facebookLimitedRoutes } from './facebook-limited.js';
import { googleRoutes, type GoogleOptions } from './google.js';
import { IdProviders } from './id-providers.js';
import { microsoftRoutes } from './microsoft.js';
import { oidcRoutes } from './oidc.js';
import { facebookRoutes } from './facebook.js';
import { githubRoutes } from './github.js';
import { lineRoutes } from './line.js';
import { checkRequestRequirements } from './request-checks.js';
import { EmulatorState } from './state.js';
import { twitterOAuth2Routes } from './twitter-oauth2.js';
import { twitterRoutes } from './twitter.js';

export { EmulatorClient } from './client.js';
export type { FaultInput } from './control.js';
export type {
  AppleRevocation,
  Forgery,
  MintAppleCodeInput,
  MintedAppleCode,
  MintedGoogleAccessToken,
  MintedIdToken,
  MintGoogleAccessTokenInput,
  MintIdTokenInput,
  RotatedKeys,
  RotateKeysInput,
} from './control-oidc.js';
export type { IdTokenProvider } from './client.js';
export type { MintMicrosoftIdTokenInput } from './microsoft.js';
export type { FacebookUserInput, MintFacebookTokenInput, MintedFacebookToken } from './facebook.js';
export type { GithubUserInput, MintGithubTokenInput, MintedGithubToken } from './github.js';
export type { LineUserInput, MintLineTokenInput, MintedLineToken } from './line.js';
export type { FaultMode, FaultSettings, Provider } from './state.js';
export type { RequestRequirement } from './request-checks.js';
export type { MintTwitterOAuth2TokenInput, MintedTwitterOAuth2Token } from './twitter-oauth2.js';
export type { MintTwitterTokenInput, MintedTwitterToken } from './twitter.js';
export type { TwitterUserInput } from './twitter-users.js';

export interface EmulatorOptions {
  /** Default 127.0.0.1. Only loopback addresses are accepted: the emulator must never listen publicly. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** App id -> app secret. */
  facebook?: { apps: Record<string, string> };
  /** Consumer key -> consumer secret. */
  twitter?: { consumers: Record<string, string> };
  /** LINE Login channel id -> channel secret. */
  line?: { channels: Record<string, string> };
  /** GitHub OAuth app client id -> client secret. */
  github?: { apps: Record<string, string> };
  /** Google: the server's OAuth client ids (the first, the web id, is the default audience) and the Android app's client id (the default azp). */
  google?: GoogleOptions;
  /** Sign in with Apple: bundle/services ids, team id, and the public ES256 JWK of each of our keys (by key id) to check client secrets. */
  apple?: { clientIds: string[]; teamId: string; keys: Record<string, JWK> };
  /** The Microsoft identity platform (multi-tenant: …/common/v2.0), with our app's client ids. */
  microsoft?: { clientIds: string[] };
  /** Generic OpenID Connect issuers by name (served under /oidc/<name>), each with our client ids. */
  oidc?: Record<string, { clientIds: string[] }>;
  /** Default false. */
  logger?: boolean;
  /**
   * Default false: every issuer makes RSA keys of its own. True: the issuers' first key pairs are those the
   * emulators this process started before made (new kids; one emulator's issuers never share a pair), for test
   * suites that start hundreds of emulators — an RSA-2048 pair costs about 150 ms of CPU. A verifier that tries
   * every key of a set whatever the kid could then accept another emulator's token: not for tests of that.
   */
  reuseKeyPairs?: boolean;
}

export interface RunningEmulator {
  /** e.g. http://127.0.0.1:43210 */
  url: string;
  close(): Promise<void>;
}

/** The emulator as a Fastify instance, not listening yet. */
export function buildEmulator(options: EmulatorOptions): FastifyInstance {
  const state = new EmulatorState({
    facebook: options.facebook?.apps ?? {},
    twitter: options.twitter?.consumers ?? {},
  });
  const app = Fastify({
    logger: options.logger ?? false,
    // close() must also end requests left hanging by the "hang" fault.
    forceCloseConnections: true,
    // Control inputs are checked as sent: no silently dropped unknown fields, no "3600" taken for 3600.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  // What each provider requires of a request (declared per route): a request missing it is refused as the provider refuses it.
  app.addHook('preHandler', checkRequestRequirements(state));
  app.register(facebookRoutes(state), { prefix: '/facebook' });
  app.register(twitterRoutes(state), { prefix: '/twitter' });
  app.register(twitterOAuth2Routes(state), { prefix: '/twitter' });
  app.register(lineRoutes(state, options.line?.channels ?? {}), { prefix: '/line' });
  app.register(githubRoutes(state, options.github?.apps ?? {}), { prefix: '/github' });
  // ID-token providers: Google, Apple, Facebook Limited Login, generic OpenID Connect issuers.
  const ids = new IdProviders(state, options);
  app.register(googleRoutes(state, ids.google), { prefix: '/google' });
  app.register(appleRoutes(state, ids.apple), { prefix: '/apple' });
  app.register(facebookLimitedRoutes(state, ids.facebookLimited), { prefix: '/facebook-limited' });
  app.register(oidcRoutes(state, ids.oidc), { prefix: '/oidc' });
  app.register(microsoftRoutes(state, ids.microsoft), { prefix: '/microsoft' });
  app.register(oidcControlRoutes(state, ids), { prefix: '/_emulator' });
  app.register(controlRoutes(state), { prefix: '/_emulator' });
  app.register(controlRestRoutes(state), { prefix: '/_emulator' });
  return app;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

export async function startEmulator(options: EmulatorOptions): Promise<RunningEmulator> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`the emulator only listens on a loopback address, not "${host}"`);
  const app = buildEmulator(options);
  await app.listen({ host, port: options.port ?? 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the emulator is not listening on a TCP port');
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${urlHost}:${address.port}`, close: () => app.close() };
}
