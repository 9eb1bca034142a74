import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadProviderConfigs, providerModules } from '../src/providers/index.js';
import { Settings } from '../src/lib/settings.js';
import { google } from '../src/providers/google/google.js';
import { verifiedEmailOfKeptFacts0011 as verifiedEmailOfKeptFacts } from '../src/store/migrations.js';

// Each provider's default e-mail trust, pinned to the cited sources of test/fixtures/providers/email-trust.json.

interface TrustFixture {
  providers: Record<
    string,
    {
      default: 'verified' | 'never';
      rule: string;
      sources: Array<{ url?: string; repo?: string; path?: string; says: string }>;
    }
  >;
  prior_art: Array<{ project: string; says: string }>;
}
const fixture = JSON.parse(
  readFileSync(new URL('./fixtures/providers/email-trust.json', import.meta.url), 'utf8'),
) as TrustFixture;

describe('e-mail trust defaults', () => {
  it('every provider has a cited rule', () => {
    for (const name of [...providerModules.map((module) => module.name), 'oidc']) {
      const entry = fixture.providers[name];
      expect(entry, name).toBeDefined();
      expect(entry!.sources.length, name).toBeGreaterThan(0);
      for (const source of entry!.sources)
        expect(
          source.says && (source.url || (source.repo && source.path)),
          `${name}: ${JSON.stringify(source)}`,
        ).toBeTruthy();
    }
  });

  it("each module's default is the one its sources support", () => {
    for (const module of providerModules)
      expect(`${module.name}: ${module.emailTrust}`).toBe(`${module.name}: ${fixture.providers[module.name]!.default}`);
    const oidc = loadProviderConfigs(
      new Settings({ SOCIAL_AUTH_OIDC_CORP_ISSUER: 'https://id.example.com', SOCIAL_AUTH_OIDC_CORP_KEY: 'app' }),
    );
    expect(oidc.find((enabled) => enabled.name === 'oidc:corp')?.emailTrust).toBe(fixture.providers.oidc!.default);
    // A multi-tenant issuer: each tenant vouches for its own accounts; the operator must opt in.
    const microsoft = loadProviderConfigs(
      new Settings({
        SOCIAL_AUTH_OIDC_MS_ISSUER: 'https://login.microsoftonline.com/common/v2.0',
        SOCIAL_AUTH_OIDC_MS_KEY: 'app',
      }),
    );
    expect(microsoft[0]!.emailTrust).toBe('never');
  });

  it('SOCIAL_AUTH_<P>_EMAIL_TRUST overrides a default, and anything but verified|never is refused', () => {
    const base = { SOCIAL_AUTH_FACEBOOK_KEY: 'id', SOCIAL_AUTH_FACEBOOK_SECRET: 'secret' };
    expect(
      loadProviderConfigs(new Settings({ ...base, SOCIAL_AUTH_FACEBOOK_EMAIL_TRUST: 'verified' }))[0]!.emailTrust,
    ).toBe('verified');
    expect(() => loadProviderConfigs(new Settings({ ...base, SOCIAL_AUTH_FACEBOOK_EMAIL_TRUST: 'always' }))).toThrow(
      /SOCIAL_AUTH_FACEBOOK_EMAIL_TRUST must be verified or never/,
    );
  });

  it('kept facts of links made before migration 0011 follow the same rules', () => {
    expect(verifiedEmailOfKeptFacts('google', { email: 'A@gmail.com', email_verified: true })).toBe('a@gmail.com');
    expect(verifiedEmailOfKeptFacts('google', { email: 'a@example.org', email_verified: true })).toBeUndefined();
    expect(
      verifiedEmailOfKeptFacts('google', { email: 'a@corp.example', email_verified: true, hd: 'corp.example' }),
    ).toBe('a@corp.example');
    expect(verifiedEmailOfKeptFacts('google', { email: 'a@gmail.com', email_verified: false })).toBeUndefined();
    expect(verifiedEmailOfKeptFacts('apple', { email: 'x@privaterelay.appleid.com', email_verified: 'true' })).toBe(
      'x@privaterelay.appleid.com',
    );
    expect(verifiedEmailOfKeptFacts('facebook', { email: 'a@gmail.com' })).toBeUndefined();
    expect(verifiedEmailOfKeptFacts('line', { email: 'a@gmail.com' })).toBeUndefined();
    expect(verifiedEmailOfKeptFacts('github', { email: 'a@example.org' })).toBe('a@example.org');
  });

  it("Google's own rule: Gmail addresses and Workspace accounts (hd) only", () => {
    expect(google.vouchesFor!('Someone@GMAIL.com', {})).toBe(true);
    expect(google.vouchesFor!('a@corp.example', { hd: 'corp.example' })).toBe(true);
    expect(google.vouchesFor!('a@example.org', { hd: null })).toBe(false);
    expect(google.vouchesFor!('a@example.org', { hd: '' })).toBe(false);
  });
});
