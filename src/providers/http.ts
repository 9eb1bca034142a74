import type { Agent, request as undiciRequest } from 'undici';
import { USER_AGENT } from '../lib/version.js';
import { ProviderUnavailableError, providerRateLimited } from '../lib/errors.js';
import type * as Undici from 'undici';
/** How a provider call ended, for the metrics. */
export type ProviderOutcome =
  'ok' | 'refused' | 'rate_limited' | 'server_error' | 'timeout' | 'network_error' | 'invalid_response';

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

/** A form-encoded POST (an OAuth 2 token endpoint, LINE's ID token check). */
export const formPost = (fields: Record<string, string>): RequestOptions => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

/** A call with the user's access token as its Bearer (after any other headers). */
export const bearer = (token: string, headers: Record<string, string> = {}): RequestOptions => ({
  headers: { ...headers, authorization: `Bearer ${token}` },
});

// undici is loaded on the first provider call (or JWKS fetch), not at start-up: it costs ~100 ms to load.
let undici: Promise<typeof Undici> | undefined;
const loadUndici = () => (undici ??= import('undici'));

export interface ProviderHttpOptions {
  timeoutMs: number;
  /** The largest answer read (default 1 MiB): a provider's answer is a few kilobytes; more is hostile or broken. */
  maxAnswerBytes?: number;
  observe?: ProviderCallObserver;
}

/**
 * The HTTP client of one provider: a keep-alive connection pool, a hard deadline on every call, and one
 * retry of a GET whose connection failed (a pooled connection the provider had closed), so that a slow
 * or dead provider costs a bounded wait and never a stuck request. (The circuit breaker is one level
 * up, around a whole verification: see circuit-breaker.ts.)
 * Errors never carry the URL: provider URLs may hold tokens in their query.
 */
export class ProviderHttp {
  readonly timeoutMs: number;
  readonly maxAnswerBytes: number;
  private client?: Promise<{ request: typeof undiciRequest; agent: Agent }>;
  private closed = false;
  private readonly observe: ProviderCallObserver;

  constructor(
    readonly provider: string,
    options: ProviderHttpOptions,
  ) {
    this.timeoutMs = options.timeoutMs;
    this.maxAnswerBytes = options.maxAnswerBytes ?? 1024 * 1024;
    this.observe = options.observe ?? (() => {});
  }

  /** The keep-alive pool, made on first use. */
  private connection() {
    // After close, no new pool (its keep-alive sockets would hold the process open).
    if (this.closed && !this.client) return Promise.reject(new ProviderUnavailableError(this.provider, 'is closed'));
    return (this.client ??= loadUndici().then(({ Agent, request }) => ({
      request,
      agent: new Agent({
        keepAliveTimeout: 30_000,
        connect: { timeout: this.timeoutMs },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      }),
    })));
  }

  /**
   * Calls the provider and parses its JSON answer (an empty body is `undefined`); 5xx, non-JSON and
   * network errors become 502, 429 a rate limit (503).
   */
  async json(url: string, options: RequestOptions = {}): Promise<JsonResponse> {
    const started = performance.now();
    const finish = (outcome: ProviderOutcome) =>
      this.observe(this.provider, outcome, (performance.now() - started) / 1000);
    const retryable = (options.method ?? 'GET') === 'GET';
    const { request, agent } = await this.connection();
    for (let attempt = 1; ; attempt++) {
      let response: Awaited<ReturnType<typeof request>>;
      let text: string;
      // The deadline of the whole call, answer read included. Not AbortSignal.timeout: its timer cannot be cleared, so
      // every call's would fire (an exception made, an event sent) long after the answer.
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(), this.timeoutMs).unref();
      try {
        response = await request(url, {
          method: options.method ?? 'GET',
          // Every call names us: GitHub's REST API refuses a request without a User-Agent (fixtures/provider-requests).
          headers: { accept: 'application/json', 'user-agent': USER_AGENT, ...options.headers },
          body: options.body,
          dispatcher: agent,
          signal: deadline.signal,
        });
        text = await readCapped(response, this.maxAnswerBytes);
      } catch (error) {
        if (error instanceof AnswerTooLarge) {
          finish('invalid_response');
          throw new ProviderUnavailableError(this.provider, `answered more than ${this.maxAnswerBytes} bytes`);
        }
        const timedOut = isTimeout(error);
        // A connection that failed before any answer is safe to try once more, for a GET only.
        if (retryable && !timedOut && attempt === 1) continue;
        finish(timedOut ? 'timeout' : 'network_error');
        throw new ProviderUnavailableError(
          this.provider,
          timedOut
            ? `did not answer within ${this.timeoutMs} ms`
            : `could not be reached (${(error as { code?: string }).code ?? 'network error'})`,
        );
      } finally {
        clearTimeout(timer);
      }
      if (response.statusCode === 429) {
        finish('rate_limited');
        throw providerRateLimited(this.provider, 'HTTP 429', retryAfterSeconds(response.headers));
      }
      if (response.statusCode >= 500) {
        finish('server_error');
        throw new ProviderUnavailableError(this.provider, `answered HTTP ${response.statusCode}`);
      }
      let body: unknown;
      try {
        body = text === '' ? undefined : (JSON.parse(text) as unknown);
      } catch {
        finish('invalid_response');
        throw new ProviderUnavailableError(
          this.provider,
          `answered HTTP ${response.statusCode} with a body that is not JSON`,
        );
      }
      finish(response.statusCode < 400 ? 'ok' : 'refused');
      return { status: response.statusCode, body, headers: response.headers };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await (await this.client)?.agent.close();
  }
}

export class AnswerTooLarge extends Error {}

/**
 * The body as text, refused (and the connection dropped) past `max` bytes, before it is all in memory. A body whose
 * Content-Length is given (most answers) is read in one go, or refused unread; the framing stops it at that length.
 */
export async function readCapped(
  response: {
    body: AsyncIterable<Uint8Array> & { destroy(): unknown; text(): Promise<string> };
    headers: Record<string, string | string[] | undefined>;
  },
  max: number,
): Promise<string> {
  const { body } = response;
  const declared = response.headers['content-length'];
  if (typeof declared === 'string' && /^\d+$/.test(declared)) {
    if (Number(declared) > max) {
      body.destroy();
      throw new AnswerTooLarge();
    }
    return body.text();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) {
      body.destroy();
      throw new AnswerTooLarge();
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  // As undici's body.text() (the path above): a leading byte order mark is not part of the answer.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

export function isTimeout(error: unknown): boolean {
  const err = error as { name?: string; code?: string };
  return err.name === 'TimeoutError' || err.name === 'AbortError' || /TIMEOUT/.test(err.code ?? '');
}

/**
 * Seconds to wait, when the provider said: a Retry-After header in seconds, or the Unix time its window
 * resets (x-ratelimit-reset on GitHub, x-rate-limit-reset on X).
 */
export function retryAfterSeconds(headers: JsonResponse['headers']): number | undefined {
  const inRange = (value: number) => (Number.isInteger(value) && value >= 0 && value <= 86_400 ? value : undefined);
  const retryAfter = headers['retry-after'];
  if (retryAfter !== undefined) return inRange(Number(retryAfter));
  const reset = Number(headers['x-ratelimit-reset'] ?? headers['x-rate-limit-reset']);
  return reset > 0 ? inRange(Math.max(0, Math.ceil(reset - Date.now() / 1000))) : undefined;
}
