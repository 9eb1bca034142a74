import { ConfigError } from '../../lib/settings.js';
import type { ProviderSettings } from '../define.js';
import type { NonceRule } from '../types.js';
import type { AppleSigning } from './api.js';

/** What `apple.configure` reads (the apple CLI redeems and revokes with it too). */
export interface AppleConfig {
  /** Bundle ids (native apps) and services ids (web): the accepted audiences. */
  clientIds: string[];
  jwksUrl: string;
  apiUrl: string;
  /** For redeeming codes and revoking tokens: the team's Sign in with Apple key. */
  signing?: AppleSigning;
  /** Services ID -> the redirect URIs registered for its web flow (SOCIAL_AUTH_APPLE_REDIRECT_URIS); the first is the default. */
  redirectUris: Record<string, string[]>;
  nonceRule: NonceRule;
}

/** The team key settings (_TEAM_ID, _KEY_ID, _PRIVATE_KEY): all three, or none (then codes cannot be redeemed). */
export function signingOf(s: ProviderSettings): AppleSigning | undefined {
  const teamId = s.string('TEAM_ID');
  const keyId = s.string('KEY_ID');
  // A PEM in an environment variable often arrives with literal "\n".
  const privateKeyPem = s.string('PRIVATE_KEY')?.replace(/\\n/g, '\n');
  if (!teamId && !keyId && !privateKeyPem) return undefined;
  if (!teamId || !keyId || !privateKeyPem) {
    throw new ConfigError(
      `${s.variable('TEAM_ID')}, ${s.variable('KEY_ID')} and ${s.variable('PRIVATE_KEY')} must be set together`,
    );
  }
  if (!privateKeyPem.includes('BEGIN PRIVATE KEY'))
    throw new ConfigError(`${s.variable('PRIVATE_KEY')} must be the PKCS#8 PEM of the .p8 key file`);
  return { teamId, keyId, privateKeyPem };
}

/**
 * SOCIAL_AUTH_APPLE_REDIRECT_URIS: `services.id=https://…` pairs, comma-separated; a Services ID may have several.
 * Apple requires https with a domain name for a web flow's redirect URI.
 */
export function redirectUrisOf(s: ProviderSettings, clientIds: readonly string[]): Record<string, string[]> {
  const name = s.variable('REDIRECT_URIS');
  const uris: Record<string, string[]> = {};
  for (const pair of s.list('REDIRECT_URIS')) {
    const at = pair.indexOf('=');
    const clientId = pair.slice(0, at).trim();
    const uri = pair.slice(at + 1).trim();
    if (at <= 0 || !clientIds.includes(clientId))
      throw new ConfigError(
        `${name}: "${pair}" must be <client id>=<redirect URI>, with a client id of ${s.variable('KEY')}`,
      );
    let parsed: URL | undefined;
    try {
      parsed = new URL(uri);
    } catch {
      parsed = undefined;
    }
    if (parsed?.protocol !== 'https:')
      throw new ConfigError(
        `${name}: the redirect URI of ${clientId} must be an https URL, as Apple requires, got "${uri}"`,
      );
    (uris[clientId] ??= []).push(uri);
  }
  return uris;
}
