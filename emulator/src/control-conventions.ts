import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';

export function sendInvalidRequest(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(400).send({ code: 'invalid_request', message });
}

/** Shared by every control plugin: the caller's mistakes (schema, bad JSON, InvalidRequestError) answer 400 {code, message}; a missing body counts as {} so that `curl -X POST .../tokens` mints with every default. */
export function controlConventions(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error.validation || (error.statusCode !== undefined && error.statusCode < 500)) {
      return sendInvalidRequest(reply, error.message);
    }
    return reply.send(error);
  });
  app.addHook('preValidation', async (request) => {
    request.body ??= {};
  });
}
