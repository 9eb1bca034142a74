import { AppleProvider, type AppleOptions } from './apple.js';
import { FacebookLimitedProvider } from './facebook-limited.js';
import { GoogleProvider, type GoogleOptions } from './google.js';
import { MicrosoftProvider, type MicrosoftOptions } from './microsoft.js';
import { FirstKeyPairs } from './oidc-issuer.js';
import { OidcProviders, type OidcIssuerOptions } from './oidc.js';
import type { EmulatorState } from './state.js';

// The ID-token providers' own state (keys, users, codes), kept beside the shared EmulatorState.

export interface IdProviderOptions {
  google?: GoogleOptions;
  apple?: AppleOptions;
  oidc?: Record<string, OidcIssuerOptions>;
  microsoft?: MicrosoftOptions;
  /** EmulatorOptions.reuseKeyPairs. */
  reuseKeyPairs?: boolean;
}

/** Found again from the EmulatorState, for the control API's description (GET /_emulator). */
const byState = new WeakMap<EmulatorState, IdProviders>();

export class IdProviders {
  readonly google: GoogleProvider;
  readonly apple: AppleProvider;
  readonly facebookLimited: FacebookLimitedProvider;
  readonly oidc: OidcProviders;
  readonly microsoft: MicrosoftProvider;

  constructor(state: EmulatorState, options: IdProviderOptions) {
    const keyPairs = new FirstKeyPairs(options.reuseKeyPairs === true);
    this.google = new GoogleProvider(keyPairs, options.google?.clientIds ?? [], options.google?.androidClientId);
    this.apple = new AppleProvider(options.apple ?? { clientIds: [], teamId: '', keys: {} }, keyPairs);
    this.facebookLimited = new FacebookLimitedProvider(keyPairs);
    this.oidc = new OidcProviders(options.oidc ?? {}, keyPairs);
    this.microsoft = new MicrosoftProvider(options.microsoft?.clientIds ?? [], keyPairs);
    state.onReset.push(() => {
      this.google.reset();
      this.apple.reset();
      this.facebookLimited.reset();
      this.oidc.reset();
      this.microsoft.reset();
    });
    byState.set(state, this);
  }
}

/** The ID-token providers' entries of GET /_emulator's `providers`. */
export function describeIdProviders(state: EmulatorState, origin: string): Record<string, unknown> {
  const ids = byState.get(state);
  if (!ids) return {};
  return {
    google: { base_url: `${origin}/google`, client_ids: [...ids.google.clientIds] },
    apple: { base_url: `${origin}/apple`, client_ids: [...ids.apple.clientIds], team_id: ids.apple.teamId },
    'facebook-limited': { base_url: `${origin}/facebook-limited`, app_ids: [...state.clients.facebook.keys()] },
    microsoft: { issuer: `${origin}/microsoft/common/v2.0`, client_ids: [...ids.microsoft.clientIds] },
    oidc: Object.fromEntries(
      ids.oidc
        .names()
        .map((name) => [
          name,
          { issuer: `${origin}/oidc/${name}`, client_ids: [...(ids.oidc.get(name)?.clientIds ?? [])] },
        ]),
    ),
  };
}
