import type { FastifyInstance } from 'fastify';
import { ProviderCallbacks } from '../../core/provider-callbacks.js';
import type { RouteContext } from './context.js';

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The providers' callbacks (core/provider-callbacks.ts): called by the providers, not by apps (not in the API
 * document). Register their URLs in each provider's console (README "Provider callbacks").
 */
export function callbackRoutes(app: FastifyInstance, { services, limits }: RouteContext): void {
  const callbacks = new ProviderCallbacks(services);
  void app.register(
    async (scope) => {
      // Facebook posts forms.
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 16_384 },
        (_request, body, done) => {
          done(null, Object.fromEntries(new URLSearchParams(String(body))));
        },
      );
      // Google posts security event tokens as they are (RFC 8935).
      scope.addContentTypeParser(
        'application/secevent+jwt',
        { parseAs: 'string', bodyLimit: 16_384 },
        (_request, body, done) => done(null, String(body)),
      );
      // Per client IP, before the body is read: a forger's calls cost a signature check each (rate-limits.ts).
      scope.addHook('onRequest', limits.checkCallback);
      const schema = { hide: true };
      // Each answer is counted by provider and outcome (social_link_provider_callbacks_total); refusals are not audited.
      const from = (provider: string) => ({ schema, config: { providerCallback: provider } });
      type Form = { Body: { signed_request?: unknown } | undefined };

      scope.post<Form>('/facebook/data-deletion', from('facebook'), async (request) => {
        const { confirmationCode } = await callbacks.facebookDataDeletion(request.body?.signed_request);
        return {
          url: `${services.config.publicUrl}/api/providers/facebook/data-deletion/${confirmationCode}`,
          confirmation_code: confirmationCode,
        };
      });

      scope.post<Form>('/facebook/deauthorize', from('facebook'), async (request, reply) => {
        await callbacks.facebookDeauthorized(request.body?.signed_request);
        return reply.code(200).send();
      });

      // Sign in with Apple's server-to-server notifications: {"payload": "<JWT signed by Apple>"}.
      scope.post<{ Body: { payload?: unknown } | undefined }>(
        '/apple/notifications',
        from('apple'),
        async (request, reply) => {
          await callbacks.appleNotification(request.body?.payload);
          return reply.code(200).send();
        },
      );

      // Google Cross-Account Protection (RISC): 202 once the event is taken.
      scope.post<{ Body: unknown }>('/google/risc', from('google'), async (request, reply) => {
        // An event for another client id of the Google project is acknowledged all the same (Google would count a refusal as a failed delivery).
        if ((await callbacks.googleSecurityEvent(request.body)) === 'ignored')
          request.log.info('a Google security event for another client id of the project: acknowledged, not acted on');
        return reply.code(202).send();
      });

      // The page Facebook shows the person: what became of the request (no sign-in needed).
      scope.get<{ Params: { code: string } }>(
        '/facebook/data-deletion/:code',
        {
          schema: {
            ...schema,
            params: { type: 'object', properties: { code: { type: 'string', pattern: '^[0-9a-f]{24}$' } } },
          },
        },
        async (request, reply) => {
          const status = await callbacks.deletionStatus(request.params.code);
          const done = status.status === 'done';
          return reply
            .type('text/html; charset=utf-8')
            .send(
              `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Data deletion request</title></head><body><h1>Data deletion request ${escapeHtml(status.confirmationCode)}</h1>` +
                `<p>Received ${escapeHtml(status.requestedAt)} from Facebook.</p><p>${done ? 'Done: the link to your Facebook account and everything Facebook shared with us through it are deleted.' : 'In progress.'}</p></body></html>`,
            );
        },
      );
    },
    { prefix: '/api/providers' },
  );
}
