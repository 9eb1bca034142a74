import type { FastifyBaseLogger } from 'fastify';
import type { SecretBox } from '../auth/secret-box.js';
import type { Provider } from './types.js';

/**
 * Revokes the provider tokens kept for a removed link (Sign in with Apple's refresh token), so that
 * unlinking and account deletion also end the grant at the provider. A failure is logged, never thrown:
 * the link is already gone and must not come back.
 */
export async function revokeKeptTokens(
  link: { provider: string; uid: string; sealedTokens: string | null } | undefined,
  providers: ReadonlyMap<string, Provider>,
  secrets: SecretBox,
  log: FastifyBaseLogger,
): Promise<void> {
  const provider = link?.sealedTokens ? providers.get(link.provider) : undefined;
  if (!link?.sealedTokens || !provider?.revoke) return;
  const opened = secrets.open(link.sealedTokens, `${link.provider}:${link.uid}`);
  if (!opened) return log.warn({ provider: link.provider }, 'kept provider tokens could not be decrypted; not revoked');
  await provider.revoke(JSON.parse(opened) as Record<string, string>).catch((error: unknown) =>
    log.warn({ provider: link.provider, reason: (error as Error).message }, 'revoking provider tokens failed'),
  );
}
