import {
  createLocalJWKSet,
  errors,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
} from 'jose';
import { ProviderUnavailableError } from '../lib/errors.js';
import { isObject } from '../lib/narrowing.js';
import type { ProviderHttp } from './http.js';

export interface JwksCacheOptions {
  /** On a token with an unknown `kid`, refetch at most once per this interval (no refetch storm from forged kids). */
  unknownKidRefetchMs?: number;
  /** Bounds on how long the provider's Cache-Control max-age keeps the keys fresh. */
  minMaxAgeMs?: number;
  maxMaxAgeMs?: number;
  /** Freshness when the provider sends no max-age. */
  defaultMaxAgeMs?: number;
}

type KeyResolver = ReturnType<typeof createLocalJWKSet>;

/**
 * A provider's published signing keys (JWKS), kept in memory so that verifying an ID token needs no
 * network call. Keys are refreshed in the background once their Cache-Control max-age has passed
 * (stale-while-revalidate); during a provider outage the last good keys keep working.
 */
export class JwksCache {
  private resolver: KeyResolver | undefined;
  /** The published keys as fetched, for members jose does not read (Microsoft's per-key `issuer`). */
  private keys: JWK[] = [];
  private freshUntil = 0;
  private lastFetchStartedAt = -Infinity;
  private inflight: Promise<void> | undefined;
  private readonly options: Required<JwksCacheOptions>;

  constructor(
    private readonly http: ProviderHttp,
    readonly url: string,
    options: JwksCacheOptions = {},
  ) {
    this.options = {
      unknownKidRefetchMs: options.unknownKidRefetchMs ?? 30_000,
      minMaxAgeMs: options.minMaxAgeMs ?? 60_000,
      maxMaxAgeMs: options.maxMaxAgeMs ?? 86_400_000,
      defaultMaxAgeMs: options.defaultMaxAgeMs ?? 3_600_000,
    };
  }

  /** A jose key resolver: pass `(header, token) => cache.getKey(header, token)` to jwtVerify. */
  getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
    if (!this.resolver) await this.refresh();
    else if (Date.now() > this.freshUntil) this.refresh().catch(() => {}); // in the background; old keys meanwhile
    try {
      return await this.resolver!(header, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
      // Maybe the provider rotated its keys. A fetch under way (the stale keys' background refresh, or another
      // token's) may bring the new key: wait for it. Otherwise look once, unless we looked a moment ago.
      const looking =
        this.inflight ??
        (Date.now() - this.lastFetchStartedAt >= this.options.unknownKidRefetchMs ? this.refresh() : undefined);
      if (!looking) throw error;
      await looking.catch(() => {});
      return this.resolver!(header, token);
    }
  };

  /** The published keys, as fetched. */
  get published(): readonly JWK[] {
    return this.keys;
  }

  /** The published key of this kid, as fetched. */
  keyOf(kid: string | undefined): JWK | undefined {
    return kid === undefined ? undefined : this.keys.find((key) => key.kid === kid);
  }

  /** Fetches the keys now (deduplicated); on failure keeps the previous keys, and throws only when it has none. */
  refresh(): Promise<void> {
    this.inflight ??= this.fetchKeys().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Starts a fetch without waiting, so the first sign-in does not pay for it. */
  warmUp(): void {
    this.refresh().catch(() => {});
  }

  private async fetchKeys(): Promise<void> {
    this.lastFetchStartedAt = Date.now();
    try {
      const { status, body, headers } = await this.http.json(this.url);
      if (status !== 200 || !isObject(body) || !Array.isArray(body.keys)) {
        throw new ProviderUnavailableError(this.http.provider, `answered its JWKS with HTTP ${status} and no key set`);
      }
      this.resolver = createLocalJWKSet(body as unknown as JSONWebKeySet);
      this.keys = body.keys as JWK[];
      this.freshUntil = Date.now() + this.maxAge(headers['cache-control'], headers.age);
    } catch (error) {
      if (this.resolver) {
        // Outage: keep serving the keys we have; try again after the unknown-kid interval.
        this.freshUntil = Date.now() + this.options.unknownKidRefetchMs;
        return;
      }
      throw error;
    }
  }

  /** How long the keys stay fresh: max-age less the Age a cache in front of the provider says they have (RFC 9111 4.2). */
  private maxAge(cacheControl: string | string[] | undefined, age: string | string[] | undefined): number {
    const match = /(?:^|[,\s])max-age=(\d+)/i.exec(String(cacheControl ?? ''));
    const ageSeconds = Number(age);
    const ms = match
      ? (Number(match[1]) - (Number.isFinite(ageSeconds) && ageSeconds > 0 ? ageSeconds : 0)) * 1000
      : this.options.defaultMaxAgeMs;
    return Math.min(Math.max(ms, this.options.minMaxAgeMs), this.options.maxMaxAgeMs);
  }
}
