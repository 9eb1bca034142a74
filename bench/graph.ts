// The Graph API calls of the bare baselines (baseline.ts, baseline-c.ts), made as social-link's ProviderHttp makes
// them (src/providers/http.ts): one keep-alive undici pool, a hard deadline on every call. Configured by
// BENCH_FACEBOOK_API_URL, BENCH_FACEBOOK_API_VERSION, BENCH_FACEBOOK_APP_ID, BENCH_FACEBOOK_APP_SECRET and
// BENCH_PROVIDER_TIMEOUT_MS (bench/run.ts sets them).
import { createHmac } from 'node:crypto';
import { Agent, request } from 'undici';

export interface GraphAnswer {
  status: number;
  body: Record<string, unknown>;
}

export class Graph {
  readonly appId = required('BENCH_FACEBOOK_APP_ID');
  private readonly appSecret = required('BENCH_FACEBOOK_APP_SECRET');
  private readonly base = `${required('BENCH_FACEBOOK_API_URL')}/${process.env.BENCH_FACEBOOK_API_VERSION ?? 'v23.0'}`;
  private readonly timeoutMs = Number(process.env.BENCH_PROVIDER_TIMEOUT_MS ?? 5000);
  private readonly agent = new Agent({
    keepAliveTimeout: 30_000,
    connect: { timeout: this.timeoutMs },
    headersTimeout: this.timeoutMs,
    bodyTimeout: this.timeoutMs,
  });

  /** GET /me with appsecret_proof: the profile a link reads. */
  me(token: string): Promise<GraphAnswer> {
    const proof = createHmac('sha256', this.appSecret).update(token).digest('hex');
    const query = new URLSearchParams({
      fields: 'id,name,email,first_name,last_name',
      access_token: token,
      appsecret_proof: proof,
    });
    return this.get(`${this.base}/me?${query}`);
  }

  /** GET /debug_token with the app's token: whether the token is valid, whose, and for which app. */
  debugToken(token: string): Promise<GraphAnswer> {
    const query = new URLSearchParams({ input_token: token, access_token: `${this.appId}|${this.appSecret}` });
    return this.get(`${this.base}/debug_token?${query}`);
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private async get(url: string): Promise<GraphAnswer> {
    const response = await request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      dispatcher: this.agent,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    return { status: response.statusCode, body: JSON.parse(await response.body.text()) as Record<string, unknown> };
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}
