import type { SigningKeys } from '../../auth/keys.js';
import type { TokenService } from '../../core/tokens.js';
import type { Accounts, SignedIn } from '../../core/accounts.js';
import type { Services } from '../../core/services.js';
import type { SocialAccounts } from '../../core/social.js';
import type { Association } from '../../store/storage.js';
import type { RateLimits } from '../rate-limits.js';

/** What the routes stand on: the use cases, and the HTTP pieces (tokens to authenticate, rate limits). */
export interface RouteContext {
  services: Services;
  tokens: TokenService;
  signingKeys: SigningKeys;
  limits: RateLimits;
  accounts: Accounts;
  social: SocialAccounts;
}

/** The answer of every sign-in: the user and its new token pair. */
export const tokenBody = ({ user, pair }: SignedIn) => ({ id: user.id, username: user.username, ...pair });

export const associationBody = (association: Association) => ({
  provider: association.provider,
  uid: association.uid,
  extra_data: association.extraData,
  created_at: association.createdAt,
  updated_at: association.updatedAt,
});
