import { randomInt, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { providerFaultHook } from './faults.js';
import {
  compactClaims,
  hostOrigin,
  idTokenTimes,
  InvalidRequestError,
  sendJwks,
  type MintIdTokenInput,
  type MintedIdToken,
} from './id-tokens.js';
import { OidcIssuer, type FirstKeyPairs } from './oidc-issuer.js';
import { randomBytesBase64Url, randomDigits, randomPersonName } from './random.js';
import type { EmulatorState, FacebookUser } from './state.js';

// Emulates Facebook Limited Login (iOS): its OIDC "authentication token", the keys at
// https://limited.facebook.com/.well-known/oauth/openid/jwks/ and the discovery document beside them.

export const FACEBOOK_LIMITED_ISSUER = 'https://www.facebook.com';

export class FacebookLimitedProvider {
  readonly issuer: OidcIssuer;

  constructor(keyPairs: FirstKeyPairs) {
    this.issuer = new OidcIssuer(keyPairs);
  }

  reset(): void {
    this.issuer.reset();
  }
}

/**
 * The Graph emulator's user with this id, so that Limited Login and Graph describe the same person;
 * a new id gets a new user there too. Fields given change the profile.
 */
function facebookUser(state: EmulatorState, input: MintIdTokenInput): FacebookUser {
  const id = input.sub ?? randomDigits(randomInt(15, 18));
  const known = state.facebookUsers.get(id);
  const random = randomPersonName();
  const name = input.name ?? known?.name ?? `${random.first} ${random.last}`;
  const [first = name, ...rest] = name.split(' ');
  const user: FacebookUser = {
    id,
    name,
    first_name: input.name === undefined && known ? known.first_name : first,
    last_name: input.name === undefined && known ? known.last_name : rest.join(' '),
    email: input.email ?? known?.email ?? `${first}.${id.slice(-4)}@example.com`.toLowerCase(),
  };
  state.facebookUsers.set(id, user);
  return user;
}

export async function mintFacebookLimitedToken(
  state: EmulatorState,
  limited: FacebookLimitedProvider,
  input: MintIdTokenInput,
): Promise<MintedIdToken> {
  const aud = input.aud ?? state.clients.facebook.keys().next().value;
  if (aud === undefined) throw new InvalidRequestError('no Facebook app is configured: pass aud');
  const user = facebookUser(state, input);
  const times = idTokenTimes(input);
  const claims = {
    ...compactClaims({
      iss: input.iss ?? FACEBOOK_LIMITED_ISSUER,
      aud,
      azp: input.azp,
      sub: user.id,
      iat: times.iat,
      exp: times.exp,
      jti: randomUUID(),
      nonce: input.nonce,
      email: user.email,
      email_verified: input.email_verified,
      given_name: user.first_name,
      family_name: user.last_name,
      name: user.name,
      picture: `https://platform-lookaside.fbsbx.com/platform/profilepic/?asid=${user.id}&height=100&width=100&ext=${times.iat}&hash=${randomBytesBase64Url(12)}`,
    }),
    ...input.claims,
  };
  return { id_token: await limited.issuer.mint(claims, input.forge), sub: user.id, claims };
}

function facebookServerError() {
  return {
    error: {
      message: 'An unexpected error has occurred. Please retry your request later.',
      type: 'OAuthException',
      is_transient: true,
      code: 2,
    },
  };
}

export function facebookLimitedRoutes(state: EmulatorState, limited: FacebookLimitedProvider) {
  return async function facebookLimitedPlugin(app: FastifyInstance): Promise<void> {
    // Limited Login is Facebook: the facebook fault and request counter apply.
    app.addHook('onRequest', providerFaultHook(state, 'facebook', { serverError: facebookServerError }));

    const jwks = async (_request: FastifyRequest, reply: FastifyReply) =>
      sendJwks(reply, await limited.issuer.jwks(), limited.issuer.jwksMaxAgeSeconds);
    // The real URLs end with a slash; answer without it too.
    app.get('/.well-known/oauth/openid/jwks/', jwks);
    app.get('/.well-known/oauth/openid/jwks', jwks);

    const discovery = async (request: FastifyRequest) => {
      const base = `${hostOrigin(request)}/facebook-limited`;
      return {
        issuer: FACEBOOK_LIMITED_ISSUER,
        authorization_endpoint: `${base}/dialog/oauth/`, // listed, not emulated: sign-in happens in the app
        jwks_uri: `${base}/.well-known/oauth/openid/jwks/`,
        response_types_supported: ['id_token', 'token id_token'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        claims_supported: [
          'iss',
          'aud',
          'sub',
          'iat',
          'exp',
          'jti',
          'nonce',
          'at_hash',
          'name',
          'given_name',
          'family_name',
          'email',
          'picture',
        ],
      };
    };
    app.get('/.well-known/openid-configuration/', discovery);
    app.get('/.well-known/openid-configuration', discovery);
  };
}
