import { Agent, request } from 'undici';
import { ApiError, ProviderUnavailableError } from '../errors.js';
import type { ProviderOutcome } from '../metrics.js';

export type ProviderCallObserver = (provider: string, outcome: ProviderOutcome, seconds: number) => void;

export interface JsonResponse {
  status: number;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

/**
 * The HTTP client of one provider: a keep-alive connection pool, and a hard deadline on every call,
 * so that a slow provider costs a bounded wait and never a stuck request.
 * Errors never carry the URL: provider URLs may hold tokens in their query.
 */
export class ProviderHttp {
  private readonly agent: Agent;

  constructor(
    readonly provider: string,
    readonly timeoutMs: number,
    private readonly observe: ProviderCallObserver = () => {},
  ) {
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      connect: { timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  }

  /** Calls the provider and parses its JSON answer; 5xx, 429, non-JSON and network errors become 502. */
  async json(url: string, options: RequestOptions = {}): Promise<JsonResponse> {
    const started = performance.now();
    const { status, text, headers } = await this.call(url, options, started);
    try {
      const body = JSON.parse(text) as unknown;
      this.observe(this.provider, status < 400 ? 'ok' : 'refused', (performance.now() - started) / 1000);
      return { status, body, headers };
    } catch {
      this.observe(this.provider, 'invalid_response', (performance.now() - started) / 1000);
      throw new ProviderUnavailableError(this.provider, `answered HTTP ${status} with a body that is not JSON`);
    }
  }

  /** Calls the provider for its status alone (endpoints that answer an empty body). */
  async send(url: string, options: RequestOptions = {}): Promise<number> {
    const started = performance.now();
    const { status } = await this.call(url, options, started);
    this.observe(this.provider, status < 400 ? 'ok' : 'refused', (performance.now() - started) / 1000);
    return status;
  }

  private async call(url: string, options: RequestOptions, started: number) {
    const failed = (outcome: ProviderOutcome) => this.observe(this.provider, outcome, (performance.now() - started) / 1000);
    try {
      const response = await request(url, {
        method: options.method ?? 'GET',
        headers: { accept: 'application/json', ...options.headers },
        body: options.body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await response.body.text();
      if (response.statusCode >= 500 || response.statusCode === 429) {
        failed('server_error');
        throw new ProviderUnavailableError(this.provider, `answered HTTP ${response.statusCode}`);
      }
      return { status: response.statusCode, text, headers: response.headers };
    } catch (error) {
      if (error instanceof ApiError) throw error;
      const reason = describeNetworkError(error, this.timeoutMs);
      failed(reason.startsWith('did not answer') ? 'timeout' : 'network_error');
      throw new ProviderUnavailableError(this.provider, reason);
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

function describeNetworkError(error: unknown, timeoutMs: number): string {
  const err = error as { name?: string; code?: string };
  if (err.name === 'TimeoutError' || err.name === 'AbortError' || /TIMEOUT/.test(err.code ?? '')) {
    return `did not answer within ${timeoutMs} ms`;
  }
  return `could not be reached (${err.code ?? err.name ?? 'network error'})`;
}

/** Narrowing helpers for provider answers, which are untrusted JSON. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function stringField(value: Record<string, unknown>, key: string): string | undefined {
  const field = value[key];
  return typeof field === 'string' && field !== '' ? field : undefined;
}
