import type { FaultInput } from './control.js';
import type { MintFacebookTokenInput, MintedFacebookToken } from './facebook.js';
import type { MintTwitterTokenInput, MintedTwitterToken } from './twitter.js';

/** Typed access to a running emulator's control API, over HTTP, for tests and dev tooling. */
export class EmulatorClient {
  private readonly baseUrl: string;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  mintFacebookToken(input: MintFacebookTokenInput = {}): Promise<MintedFacebookToken> {
    return this.call('POST', '/_emulator/facebook/tokens', input);
  }

  mintTwitterToken(input: MintTwitterTokenInput = {}): Promise<MintedTwitterToken> {
    return this.call('POST', '/_emulator/twitter/tokens', input);
  }

  async expireToken(accessToken: string): Promise<void> {
    await this.call('POST', '/_emulator/tokens/expire', { access_token: accessToken });
  }

  async setFault(provider: string, fault: FaultInput): Promise<void> {
    await this.call('PUT', `/_emulator/faults/${encodeURIComponent(provider)}`, fault);
  }

  async clearFaults(): Promise<void> {
    await this.call('DELETE', '/_emulator/faults');
  }

  stats(): Promise<{ requests: Record<string, number> }> {
    return this.call('GET', '/_emulator/stats');
  }

  async reset(): Promise<void> {
    await this.call('POST', '/_emulator/reset');
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      // No content-type without a body: Fastify refuses an empty JSON body.
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`emulator ${method} ${path} answered HTTP ${response.status}: ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
