import Fastify from 'fastify';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { describe, expect, it } from 'vitest';
import { sharedSerializers } from './serializers.js';

const error = {
  $id: 'Error',
  type: 'object',
  properties: { code: { type: 'string' }, message: { type: 'string' } },
  required: ['code', 'message'],
};
const user = { type: 'object', properties: { id: { type: 'integer' } } };

describe('sharedSerializers', () => {
  it('compiles one serializer per distinct schema of a scope, whatever the route; another scope gets its own', async () => {
    let compilations = 0;
    const select = SerializerSelector();
    const counting: typeof select = (external, options) => {
      const compile = select(external, options);
      return (route) => (compilations++, compile(route));
    };
    const buildSerializer = sharedSerializers(counting);
    const app = Fastify({ schemaController: { compilersFactory: { buildSerializer } } });
    // As http/openapi.ts does: shared schemas on the root, then every route answers its errors by reference.
    app.addSchema(error);
    const schema = (ok: unknown) => ({ response: { 200: ok, 400: { $ref: 'Error#' }, 409: { $ref: 'Error#' } } });
    app.get('/user', { schema: schema(user) }, async () => ({ id: 1, password: 'p' }));
    app.get('/again', { schema: schema(structuredClone(user)) }, async () => ({ id: 2, password: 'p' }));
    app.get('/name', { schema: schema({ type: 'object', properties: { name: { type: 'string' } } }) }, async () => ({
      name: 'n',
      id: 2,
    }));
    app.get('/refused', { schema: schema(user) }, async (_request, reply) =>
      reply.code(409).send({ code: 'nope', message: 'no', stack: 'x' }),
    );
    await app.ready();
    // 12 serializers asked for (4 routes × 3 statuses): 3 distinct schemas.
    expect(compilations).toBe(3);
    expect((await app.inject('/user')).body).toBe('{"id":1}');
    expect((await app.inject('/again')).body).toBe('{"id":2}');
    expect((await app.inject('/name')).body).toBe('{"name":"n"}');
    expect((await app.inject('/refused')).body).toBe('{"code":"nope","message":"no"}');
    await app.close();

    // Another scope (here another app) whose Error schema says otherwise: its answers by its own, compiled anew.
    const other = Fastify({ schemaController: { compilersFactory: { buildSerializer } } });
    other.addSchema({ $id: 'Error', type: 'object', properties: { code: { type: 'string' } } });
    other.get('/refused', { schema: schema(user) }, async (_request, reply) =>
      reply.code(409).send({ code: 'c', message: 'not in this schema' }),
    );
    expect((await other.inject('/refused')).body).toBe('{"code":"c"}');
    expect(compilations).toBe(5);
    await other.close();
  });
});
