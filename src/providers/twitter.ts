import { ConfigError } from '../settings.js';
import { InvalidTokenError, ProviderUnavailableError } from '../errors.js';
import { isObject, stringField } from './http.js';
import { requireField } from './fields.js';
import { authorizationHeader } from './oauth1.js';
import type { ProviderModule } from './types.js';

export interface TwitterConfig {
  consumerKey: string;
  consumerSecret: string;
  apiUrl: string;
}

/**
 * Twitter / X with an OAuth 1.0a user token and secret from the native SDK. The request is signed
 * with OUR consumer key and secret, so X itself refuses a token issued to another app (error 89).
 */
export const twitter: ProviderModule<TwitterConfig> = {
  name: 'twitter',

  configure(settings) {
    const consumerKey = settings.string('SOCIAL_AUTH_TWITTER_KEY');
    const consumerSecret = settings.string('SOCIAL_AUTH_TWITTER_SECRET');
    if (!consumerKey && !consumerSecret) return undefined;
    if (!consumerKey || !consumerSecret) {
      throw new ConfigError('SOCIAL_AUTH_TWITTER_KEY and SOCIAL_AUTH_TWITTER_SECRET must be set together');
    }
    return { consumerKey, consumerSecret, apiUrl: settings.url('SOCIAL_AUTH_TWITTER_API_URL', 'https://api.twitter.com') };
  },

  create(config, { http }) {
    const verifyCredentials = `${config.apiUrl}/1.1/account/verify_credentials.json?include_email=true&skip_status=true`;

    return {
      name: 'twitter',
      async verify(input) {
        const token = requireField(input, 'access_token', 'twitter');
        const tokenSecret = requireField(input, 'access_token_secret', 'twitter');
        const { status, body } = await http.json(verifyCredentials, {
          headers: {
            authorization: authorizationHeader('GET', verifyCredentials, {
              consumerKey: config.consumerKey,
              consumerSecret: config.consumerSecret,
              token,
              tokenSecret,
            }),
          },
        });
        if (status !== 200) {
          if (status >= 400 && status < 500 && isObject(body) && Array.isArray(body.errors)) {
            throw new InvalidTokenError('the token is invalid, expired, or was issued to another app');
          }
          throw new ProviderUnavailableError('twitter', `answered HTTP ${status} and an unexpected body`);
        }
        const uid = isObject(body) ? stringField(body, 'id_str') : undefined;
        if (!isObject(body) || !uid) throw new ProviderUnavailableError('twitter', 'answered without an id_str');
        return {
          uid,
          details: {
            username: stringField(body, 'screen_name'),
            email: stringField(body, 'email'),
            fullname: stringField(body, 'name'),
          },
          extraData: {
            id: uid,
            screen_name: stringField(body, 'screen_name') ?? null,
            name: stringField(body, 'name') ?? null,
            email: stringField(body, 'email') ?? null,
          },
        };
      },
    };
  },
};
