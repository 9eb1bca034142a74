import { ConfigError, type Settings } from '../lib/settings.js';
import { ProviderHttp, type ProviderHttpOptions } from './http.js';
import { apple } from './apple.js';
import { clockToleranceOf } from './id-token.js';
import { facebook } from './facebook.js';
import { github } from './github.js';
import { google } from './google.js';
import { line } from './line.js';
import { configureOidcProviders, createOidcProvider, isMultiTenantIssuer } from './oidc.js';
import { twitter } from './twitter.js';
import type { EmailTrust, Provider, ProviderModule } from './types.js';

/** Every provider module social-link ships. Adding a provider = one module here, no route change. */
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

export function loadProviderConfigs(settings: Settings): ProviderConfigs {
  const enabled: EnabledProvider[] = [];
  const clockToleranceSeconds = clockToleranceOf(settings);
  for (const module of providerModules) {
    const config: unknown = module.configure(settings);
    if (config === undefined) continue;
    enabled.push({
      name: module.name,
      emailTrust: emailTrustOf(settings, `SOCIAL_AUTH_${module.name.toUpperCase()}_EMAIL_TRUST`, module.emailTrust),
      create(options) {
        const http = new ProviderHttp(module.name, options);
        return { provider: module.create(config, { http, clockToleranceSeconds }), http };
      },
    });
  }
  for (const config of configureOidcProviders(settings)) {
    const name = `oidc:${config.name}`;
    enabled.push({
      name,
      // OpenID Connect Core 5.1: email_verified true says the provider verified the e-mail; a multi-tenant
      // issuer's tenants each say it of their own accounts, so it needs the operator's opt-in.
      emailTrust: emailTrustOf(
        settings,
        `SOCIAL_AUTH_OIDC_${config.name.toUpperCase()}_EMAIL_TRUST`,
        isMultiTenantIssuer(config.issuer) ? 'never' : 'verified',
      ),
      create(options) {
        const http = new ProviderHttp(name, options);
        return { provider: createOidcProvider(config, { http, clockToleranceSeconds }), http };
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
