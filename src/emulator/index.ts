import { isIP } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { controlRoutes } from './control.js';
import { facebookRoutes } from './facebook.js';
import { EmulatorState } from './state.js';
import { twitterRoutes } from './twitter.js';

export { EmulatorClient } from './client.js';
export type { FaultInput } from './control.js';
export type { FacebookUserInput, MintFacebookTokenInput, MintedFacebookToken } from './facebook.js';
export type { FaultMode, FaultSettings, Provider } from './state.js';
export type { MintTwitterTokenInput, MintedTwitterToken, TwitterUserInput } from './twitter.js';

export interface EmulatorOptions {
  /** Default 127.0.0.1. Only loopback addresses are accepted: the emulator must never listen publicly. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** App id -> app secret. */
  facebook?: { apps: Record<string, string> };
  /** Consumer key -> consumer secret. */
  twitter?: { consumers: Record<string, string> };
  /** Default false. */
  logger?: boolean;
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
  app.register(facebookRoutes(state), { prefix: '/facebook' });
  app.register(twitterRoutes(state), { prefix: '/twitter' });
  app.register(controlRoutes(state), { prefix: '/_emulator' });
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
