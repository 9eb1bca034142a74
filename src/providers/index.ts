import { ConfigError, type Settings } from '../lib/settings.js';
import { ProviderHttp, type ProviderHttpOptions } from './http.js';
import { apple } from './apple/apple.js';
import { variableOf } from './answers.js';
import { clockToleranceOf } from './id-token.js';
import { facebook } from './facebook/facebook.js';
import { github } from './github/github.js';
import { google } from './google/google.js';
import { line } from './line/line.js';
import { oidcProviders } from './oidc/oidc.js';
import { twitter } from './twitter/twitter.js';
import type { EmailTrust, Provider, ProviderModule } from './types.js';

/**
 * Every provider social-link ships, each a value (providers/define.ts) declared in its folder's <name>/<name>.ts,
 * what it needs beside it (refusals.ts: what its error answers mean). Adding a provider = one folder and one entry
 * here, no route change; an OpenID Connect issuer = settings only (oidc/config.ts).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const providerModules: ReadonlyArray<ProviderModule<any>> = [facebook, twitter, google, apple, line, github];

/** A provider whose settings are present, ready to be built. */
export interface EnabledProvider {
  name: string;
  /** SOCIAL_AUTH_<P>_EMAIL_TRUST, or the module's default. */
  emailTrust: EmailTrust;
  create(options: ProviderHttpOptions): { provider: Provider; http: ProviderHttp };
}

export type ProviderConfigs = EnabledProvider[];

/** The one registration loop: the shipped providers, then each configured OpenID Connect issuer. */
export function loadProviderConfigs(settings: Settings): ProviderConfigs {
  const enabled: EnabledProvider[] = [];
  const clockToleranceSeconds = clockToleranceOf(settings);
  for (const module of [...providerModules, ...oidcProviders(settings)]) {
    const config: unknown = module.configure(settings);
    if (config === undefined) continue;
    const trust = variableOf(module.name, 'EMAIL_TRUST');
    enabled.push({
      name: module.name,
      emailTrust: emailTrustOf(settings, trust, module.emailTrustFor?.(config) ?? module.emailTrust),
      create(options) {
        const http = new ProviderHttp(module.name, options);
        return { provider: module.create(config, { http, clockToleranceSeconds }), http };
      },
    });
  }
  return enabled;
}

function emailTrustOf(settings: Settings, name: string, fallback: EmailTrust): EmailTrust {
  const value = settings.string(name, fallback);
  if (value !== 'verified' && value !== 'never')
    throw new ConfigError(`${name} must be verified or never, got "${value}"`);
  return value;
}

export type { EmailTrust, Provider, ProviderModule, SocialIdentity, TokenInput } from './types.js';
