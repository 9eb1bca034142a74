import type { Config } from '../config/config.js';
import type { TokenService } from '../auth/tokens.js';
import type { PipelineStep } from './pipeline.js';
import type { Provider } from '../providers/types.js';
import type { Association, Storage } from '../store/storage.js';
import type { SigningKeys } from '../auth/keys.js';
import type { SecretBox } from '../auth/secret-box.js';
import type { RateLimits } from '../http/rate-limits.js';

/** What the routes need, built once at start-up. */
export interface Services {
  config: Config;
  storage: Storage;
  tokens: TokenService;
  signingKeys: SigningKeys;
  secrets: SecretBox;
  providers: ReadonlyMap<string, Provider>;
  pipeline: readonly PipelineStep[];
  limits: RateLimits;
  /** Revokes the provider tokens kept for a removed link; failures are logged, never thrown. */
  revokeProviderTokens(link: Association | undefined): Promise<void>;
}
