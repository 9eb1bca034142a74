import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { devSecret } from '../auth/keys.js';
import { SecretBox } from '../auth/secret-box.js';
import type { Config } from '../config/config.js';
import type { ProviderCallObserver } from '../providers/http.js';
import { ProviderRegistry } from '../providers/registry.js';
import { openDatabase, type Database } from '../store/database.js';
import { Storage, type Association } from '../store/storage.js';
import { DatabaseHealth, isDatabaseUnavailable } from '../store/database-health.js';
import type { Log } from '../lib/log.js';
import { defaultPipeline } from './pipeline.js';
import { BlockingHooks, type HookObserver } from './blocking-hooks.js';
import type { PipelineStep } from './pipeline-step.js';
import { revokeUnlinkedGrants } from './email-linking.js';
import { CALLBACK_MAX_AGE_SECONDS } from './provider-callbacks.js';

/**
 * What social-link is made of, built once from the configuration: storage, the secret box, the providers
 * and the pipeline. The server (src/server/app.ts) and the embedding plugin (src/embed.ts) both stand on it.
 */
export interface Services {
  config: Config;
  storage: Storage;
  secrets: SecretBox;
  providers: ProviderRegistry;
  pipeline: readonly PipelineStep[];
  /** The app's backend, asked during sign-ins and links (SOCIAL_LINK_HOOK_*). */
  hooks: BlockingHooks;
  log: Log;
  /** Revokes the provider tokens kept for a removed link; failures are logged, never thrown. */
  revokeKept(link: Pick<Association, 'provider' | 'uid' | 'sealedTokens'> | undefined): Promise<void>;
  /** Forgets what has expired (used nonces and ID tokens, link tokens); runs every minute by itself. */
  sweep(): Promise<void>;
  /** Closes the providers' connections, and the database when these services opened it. */
  close(): Promise<void>;
}

export interface ServicesOptions {
  config: Config;
  log: Log;
  /** An open database; by default one is opened from config.databaseUrl (and closed with the services). */
  db?: Kysely<Database>;
  /** Close `db` too with the services (its opener hands it over). */
  closeDatabase?: boolean;
  pipeline?: readonly PipelineStep[];
  /** Where a dev setup keeps the encryption key it generates when none is configured (else: in memory). */
  devSecretsDir?: string;
  observeProviderCall?: ProviderCallObserver;
  observeBlockingHook?: HookObserver;
}

export function createServices(options: ServicesOptions): Services {
  const { config, log } = options;
  const db = options.db ?? openDatabase(config.databaseUrl, { queryTimeoutMs: config.databaseQueryTimeoutMs });
  const dev = options.devSecretsDir;
  const devKeyFile = dev && join(dev, 'dev-encryption-key');
  const secrets = SecretBox.fromSetting(config.encryptionKeys ?? devSecret(devKeyFile, SecretBox.generateKey));
  if (!config.encryptionKeys && !devKeyFile && !config.production) {
    log.warn(
      {},
      'SOCIAL_LINK_ENCRYPTION_KEYS is not set: provider tokens are sealed with a key kept in memory only, which a restart loses (pass devSecretsDir, or set the keys)',
    );
  }
  const providers = new ProviderRegistry(config.providers, {
    timeoutMs: config.providerTimeoutMs,
    circuitBreaker: config.circuitBreaker,
    observe: options.observeProviderCall,
  });
  const storage = new Storage(
    db,
    false,
    config.webhooks.map((endpoint) => endpoint.url),
    new DatabaseHealth(log),
  );
  const hooks = new BlockingHooks(config.blockingHooks, log, options.observeBlockingHook);
  const revokeKept: Services['revokeKept'] = (link) => providers.revokeKept(link, secrets, log);
  // Used nonces and ID tokens are kept until they expire, then forgotten; expired link tokens too, and the
  // provider grants they kept are ended (every instance sweeps; it is cheap).
  // A database that is away is logged once for all (DatabaseHealth), not by every chore that met it.
  const couldNot = (what: string) => (error: unknown) =>
    isDatabaseUnavailable(error)
      ? storage.health.fault(error)
      : log.warn({ reason: (error as Error).message }, `could not ${what}`);
  const sweepOnce = async () => {
    await storage.proofs.purge().catch(couldNot('forget expired nonces and ID tokens'));
    await storage.mergeTokens.purge().catch(couldNot('forget expired merge tokens'));
    await storage.outbox
      .purgeDelivered(new Date(Date.now() - config.webhookRetentionDays * 86_400_000).toISOString())
      .catch(couldNot('forget delivered webhook events'));
    await storage.staff.purgeSessions().catch(couldNot('forget ended console sessions'));
    await storage.sessions
      .purgeEnded(new Date(Date.now() - config.sessionRetentionDays * 86_400_000).toISOString())
      .catch(couldNot('forget ended sessions and expired refresh tokens'));
    await storage.db
      .deleteFrom('provider_callbacks_seen')
      .where('seen_at', '<', new Date(Date.now() - CALLBACK_MAX_AGE_SECONDS * 1000).toISOString())
      .execute()
      .catch(couldNot('forget old provider callbacks'));
    await storage.linkTokens
      .takeExpired()
      .then((expired) => revokeUnlinkedGrants({ storage, revokeKept }, expired))
      .catch(couldNot('forget expired link tokens'));
  };
  // One sweep at a time: one that outlasts the minute (a large first purge after an upgrade) is not joined by the next.
  let sweeping: Promise<void> | undefined;
  const sweep = (): Promise<void> => (sweeping ??= sweepOnce().finally(() => (sweeping = undefined)));
  const timer = setInterval(() => void sweep(), 60_000).unref();
  return {
    config,
    storage,
    secrets,
    providers,
    pipeline: options.pipeline ?? defaultPipeline,
    hooks,
    log,
    revokeKept,
    sweep,
    async close() {
      clearInterval(timer);
      await providers.close();
      await hooks.close();
      if (!options.db || options.closeDatabase) await db.destroy();
    },
  };
}
