import type { FastifyInstance, FastifyRequest } from 'fastify';
import { apiError } from '../../lib/errors.js';
import { psaProviderName } from '../../import/psa-backends.js';
import type { TokenInput } from '../../providers/types.js';
import type { ProviderOfParams } from '../metrics.js';
import { authenticator, clientOf } from '../request.js';
import { socialTokenBody } from '../schemas.js';
import { tokenBody, type RouteContext } from './context.js';

/**
 * The original design's two routes, for app versions already in the stores (SOCIAL_LINK_COMPAT_PREFIX=/myapp):
 * `POST /myapp/api/associate/<backend>/` answers `{"success": true}` and `POST /myapp/api/auth/<backend>/`
 * `{"id", "username"}` (with our tokens added), errors `{"errors": …}` at the statuses they had. Backends keep
 * python-social-auth's names (google-oauth2, apple-id…); bodies may be JSON or a form post, as Django REST
 * framework took them; credentials are our Bearer tokens or HTTP Basic (username and password, rate-limited as a
 * password sign-in). Django's session cookies cannot be honoured. Not in the API document: new apps use /api/.
 */
export function compatRoutes(
  app: FastifyInstance,
  { services, tokens, limits, accounts, social }: RouteContext,
  prefix: string,
): void {
  const bearer = authenticator(tokens, services.storage);

  /** The signed-in user: our Bearer token, or HTTP Basic as the original design's clients send it. */
  const signedIn = async (request: FastifyRequest) => {
    const header = request.headers.authorization ?? '';
    if (!/^basic /i.test(header)) return (await bearer(request)).user;
    await limits.checkPassword(request);
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const [username, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
    // The bounds of POST /api/token/'s body.
    if (colon < 0 || username.length > 150 || password.length > 1024)
      throw apiError('invalid_credentials', {
        detail: 'Invalid basic header. Credentials not correctly base64 encoded.',
      });
    const user = await accounts.checkPassword(username, password, clientOf(request));
    request.userId = user.id;
    return user;
  };

  const provider = (backend: string) => psaProviderName(backend) ?? backend;
  // Counted under our provider names, with the /api/ routes' requests (social_link_social_requests_total).
  const providerOfPath: ProviderOfParams = (params) => params.backend && provider(params.backend);
  const schema = {
    hide: true,
    params: { type: 'object', properties: { backend: { type: 'string', maxLength: 64 } }, required: ['backend'] },
    body: socialTokenBody,
  };
  type CompatRequest = { Params: { backend: string }; Body: TokenInput };

  void app.register(
    async (scope) => {
      // Django REST framework's clients may post forms.
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 65_536 },
        (_request, body, done) => {
          done(null, Object.fromEntries(new URLSearchParams(String(body))));
        },
      );

      scope.post<CompatRequest>(
        '/api/associate/:backend/',
        { config: { ...limits.perIp, socialRequest: { action: 'associate', provider: providerOfPath } }, schema },
        async (request) => {
          const client = clientOf(request);
          const user = await signedIn(request);
          await limits.checkUser(request);
          await social.associate(user, provider(request.params.backend), request.body, client);
          return { success: true };
        },
      );

      scope.post<CompatRequest>(
        '/api/auth/:backend/',
        { config: { ...limits.perIp, socialRequest: { action: 'auth', provider: providerOfPath } }, schema },
        async (request) => {
          const client = clientOf(request);
          const { user, session } = await social.signIn(provider(request.params.backend), request.body, client);
          return tokenBody({ user, pair: tokens.pairOf(user, session) });
        },
      );
    },
    { prefix },
  );
}
