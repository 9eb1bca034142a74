/** https, or plain http to this machine only (a local proxy, the emulator). */
export function isSafeTransport(url: URL): boolean {
  if (url.protocol === 'https:') return true;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return url.protocol === 'http:' && (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}

/** Reads typed settings from the environment; every error names the variable at fault. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

export class Settings {
  constructor(readonly env: Env) {}

  /** NODE_ENV=production: provider URLs must then be https (but on loopback). */
  get production(): boolean {
    return this.env.NODE_ENV === 'production';
  }

  string(name: string): string | undefined;
  string(name: string, fallback: string): string;
  string(name: string, fallback?: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === undefined || value === '' ? fallback : value;
  }

  int(name: string, fallback: number, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || value < min || value > max) {
      throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
    }
    return value;
  }

  bool(name: string, fallback: boolean): boolean {
    const raw = this.string(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    throw new ConfigError(`${name} must be true or false, got "${raw}"`);
  }

  /**
   * An http(s) URL without a trailing slash. In production an https one, but on loopback: a provider's keys
   * or answers fetched over plain http could be swapped by anyone on the network path.
   */
  url(name: string, fallback: string): string {
    const raw = this.string(name, fallback);
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ConfigError(`${name} must be an absolute http(s) URL, got "${raw}"`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`);
    }
    if (this.production && !isSafeTransport(url))
      throw new ConfigError(`${name} must be an https URL in production (plain http on loopback only), got "${raw}"`);
    return raw.replace(/\/+$/, '');
  }

  /**
   * A provider's app credentials, SOCIAL_AUTH_<NAME>_KEY and _SECRET: both, or neither (the provider is
   * then off: undefined); one alone is a configuration error.
   */
  credentials(name: string): { key: string; secret: string } | undefined {
    const key = this.string(`SOCIAL_AUTH_${name}_KEY`);
    const secret = this.string(`SOCIAL_AUTH_${name}_SECRET`);
    if (!key && !secret) return undefined;
    if (!key || !secret)
      throw new ConfigError(`SOCIAL_AUTH_${name}_KEY and SOCIAL_AUTH_${name}_SECRET must be set together`);
    return { key, secret };
  }

  /** A comma-separated list; empty items are dropped. */
  list(name: string): string[] {
    return (this.string(name) ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean);
  }
}
